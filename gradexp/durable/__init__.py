"""What keeps a run alive across faults: checkpoints, resume, signals, writable output dirs."""
