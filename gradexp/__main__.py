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


def sweeping_preset(argv: list[str]) -> bool:
    """Whether the command names a preset that sweeps (conf/experiment/<name>.yaml with
    hydra.sweeper.params): `python -m gradexp experiment=stability` then runs as a multirun
    without -m. (A config setting hydra.mode would do it on Hydra 1.3; 1.4 refuses that.)"""
    import yaml

    for arg in argv:
        key, _, name = arg.partition("=")
        if key.lstrip("+") == "experiment" and name:
            file = CONF_DIR / "experiment" / f"{name}.yaml"
            try:
                data = yaml.safe_load(file.read_text()) if file.is_file() else None
            except (OSError, yaml.YAMLError):
                return False  # Hydra reports it in its own words
            sweeper = ((data or {}).get("hydra") or {}).get("sweeper") or {}
            return isinstance(sweeper, dict) and bool(sweeper.get("params"))
    return False


def main() -> None:
    """Hydra reports its own errors (an unknown option, a misspelt key) in a few lines of its
    own and exits 1; here they become gradexp's one line and exit status 2, like every other
    config error. HYDRA_FULL_ERROR=1 keeps Hydra's traceback."""
    argv = sys.argv[1:]
    if sweeping_preset(argv) and not {"-m", "--multirun"} & set(argv):
        sys.argv.insert(1, "-m")
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
