"""gradexp: an experiment harness for studying gradients and gradient descent."""

from pathlib import Path

__version__ = "0.1.0"


def _conf_dir() -> Path:
    # Installed wheels carry the configs as gradexp/conf; a source checkout keeps them in ../conf.
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"gradexp's Hydra configs (conf/config.yaml) not found beside {here}")


CONF_DIR = _conf_dir()
