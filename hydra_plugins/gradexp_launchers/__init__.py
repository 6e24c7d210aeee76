"""gradexp's Hydra launchers (plugins must live in the hydra_plugins namespace package)."""
