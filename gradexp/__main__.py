"""Command line: python -m gradexp [overrides] (or the `gradexp` console script)."""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gradexp import CONF_DIR, hydra_main_args


@hydra.main(config_path=str(CONF_DIR), config_name="config", **hydra_main_args())
def main(cfg: DictConfig) -> float:
    from gradexp import run  # imports torch: not needed for --help or --cfg

    hc = HydraConfig.get()
    key = "hydra.sweep.dir" if hc.mode == RunMode.MULTIRUN else "hydra.run.dir"
    summary = run.main(cfg, Path(hc.runtime.output_dir), dict(hc.runtime.choices),
                       list(hc.overrides.task), dir_key=key)  # fmt: skip
    if summary["status"] == "interrupted":  # in a sweep too: the user asked everything to stop
        sys.exit(summary.get("exit_code", 130))
    if hc.mode != RunMode.MULTIRUN and summary["status"] not in ("ok", "diverged"):
        sys.exit(2 if summary.get("stop_reason") == "config_error" else 1)
    return summary["objective"]  # for sweepers that minimise; a failed job gives inf, not an error


if __name__ == "__main__":
    main()
