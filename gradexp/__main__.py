"""Command line: python -m gradexp [overrides] (or the `gradexp` console script)."""

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from gradexp import CONF_DIR, hydra_main_args


@hydra.main(config_path=str(CONF_DIR), config_name="config", **hydra_main_args())
def task(cfg: DictConfig) -> float:
    from gradexp.startup import import_settled

    import_settled("gradexp.run")  # imports torch: not needed for --help or --cfg
    from gradexp import run

    hc = HydraConfig.get()
    key = "hydra.sweep.dir" if hc.mode == RunMode.MULTIRUN else "hydra.run.dir"
    summary = run.main(cfg, Path(hc.runtime.output_dir), dict(hc.runtime.choices),
                       list(hc.overrides.task), dir_key=key)  # fmt: skip
    if summary["status"] == "interrupted":  # in a sweep too: the user asked everything to stop
        sys.exit(summary.get("exit_code", 130))
    if hc.mode != RunMode.MULTIRUN and summary["status"] not in ("ok", "diverged"):
        sys.exit(2 if summary.get("stop_reason") == "config_error" else 1)
    return summary["objective"]  # for sweepers that minimise; a failed job gives inf, not an error


def main() -> None:
    """Hydra reports its own errors (an unknown option, a misspelt key) in a few lines of its
    own and exits 1; here they become gradexp's one line and exit status 2, like every other
    config error. HYDRA_FULL_ERROR=1 keeps Hydra's traceback."""
    from gradexp.presets import command_line  # Hydra and YAML only

    sys.argv[1:1] = command_line(sys.argv[1:])  # a preset's -m and launcher
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return task()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its report
    try:
        task()
    except (HydraException, OmegaConfBaseException) as e:
        from gradexp.hydra_errors import one_line

        overrides = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
        print(f"gradexp: error: {one_line(e, overrides, CONF_DIR)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
