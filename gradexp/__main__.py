"""Command line: python -m gradexp [overrides] (or the `gradexp` console script)."""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gradexp import CONF_DIR


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _task(cfg: DictConfig) -> float:
    from gradexp import run  # imports torch: not needed for --help or --cfg

    hc = HydraConfig.get()
    summary = run.main(
        cfg, Path(hc.runtime.output_dir), dict(hc.runtime.choices), list(hc.overrides.task)
    )
    if summary["status"] == "interrupted":  # in a sweep too: the user asked everything to stop
        sys.exit(summary.get("exit_code", 130))
    if hc.mode != RunMode.MULTIRUN and summary["status"] not in ("ok", "diverged"):
        sys.exit(2 if summary.get("stop_reason") == "config_error" else 1)
    return summary["objective"]  # for sweepers that minimise; a failed job gives inf, not an error


def main() -> None:
    _use_gradexp_sweeper()
    _task()


def _use_gradexp_sweeper() -> None:
    """hydra/sweeper=basic (the default) runs as gradexp's subclass, which composes each job's
    config once instead of twice (hydra_plugins/gradexp_sweeper). Swapped in Hydra's plugin
    registry rather than chosen in conf/config.yaml, where it would outrank the sweeper that
    +hparams_search=optuna selects; registered by hand because Hydra's plugin scan misses
    packages installed in editable mode (pip install -e)."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # scan first: it re-executes Hydra's own plugin modules
    from hydra_plugins.gradexp_sweeper.gradexp_sweeper import GradexpSweeper

    basic = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
    if basic in plugins.class_name_to_class:
        plugins.class_name_to_class[basic] = GradexpSweeper


if __name__ == "__main__":
    main()
