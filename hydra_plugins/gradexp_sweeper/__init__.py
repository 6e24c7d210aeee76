"""gradexp's sweeper, a Hydra plugin (plugins must live in the hydra_plugins namespace)."""
