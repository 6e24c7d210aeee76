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
    if hc.mode != RunMode.MULTIRUN and summary["status"] not in ("ok", "diverged"):
        sys.exit(2 if summary.get("stop_reason") == "config_error" else 1)
    return summary["objective"]  # for sweepers that minimise; a failed job gives inf, not an error


def main() -> None:
    # Hydra finds plugins by walking hydra_plugins/ on disk, which misses a package installed in
    # editable mode (pip install -e); registering gradexp's sweeper by hand works for both.
    # Scan first: the scan re-executes Hydra's own plugin modules, so import the subclass after.
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    from hydra_plugins.gradexp_sweeper.gradexp_sweeper import GradexpSweeper

    plugins.register(GradexpSweeper)
    _task()


if __name__ == "__main__":
    main()
