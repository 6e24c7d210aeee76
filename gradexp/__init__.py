"""gradexp: an experiment harness for studying gradients and gradient descent."""

import os
from importlib.metadata import version
from pathlib import Path

__version__ = "0.1.0"
# Hydra 1.3 needs version_base="1.3" (else 1.1's behaviour: chdir, warnings); 1.4 deprecates the
# parameter and warns when it is given. Passed to @hydra.main and to hydra.initialize_*().
HYDRA = tuple(int(part) for part in version("hydra-core").split(".")[:2])
VERSION_BASE = {"version_base": "1.3"} if HYDRA < (1, 4) else {}


def trusted_targets() -> list[str]:
    """The `_target_` prefixes gradexp instantiates from configs: its own, torch's optimizers
    and schedulers, and the packages named in GRADEXP_TRUSTED_TARGETS (comma-separated, e.g.
    mypackage.*). Hydra 1.4 refuses any other target (1.3 has no such check)."""
    extra = [t.strip() for t in os.environ.get("GRADEXP_TRUSTED_TARGETS", "").split(",")]
    return ["gradexp.*", "torch.optim.*", *filter(None, extra)]


def hydra_main_args() -> dict:
    """@hydra.main's keyword arguments for the Hydra that is installed."""
    return VERSION_BASE | ({"execution_whitelist": trusted_targets()} if HYDRA >= (1, 4) else {})


def _conf_dir() -> Path:
    # Installed wheels carry the configs as gradexp/conf; a source checkout keeps them in ../conf.
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"gradexp's Hydra configs (conf/config.yaml) not found beside {here}")


CONF_DIR = _conf_dir()


_API = ("experiment", "sweep", "load", "ExperimentError")


def __getattr__(name: str):
    """gradexp.experiment, .sweep, .load (gradexp/api.py): imported on first use, so that
    `python -m gradexp.report` and the dashboard never import Hydra's compose API or torch."""
    if name in _API:
        from gradexp import api

        return getattr(api, name)
    raise AttributeError(f"module 'gradexp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
