"""Presets: conf/experiment/<name>.yaml runs (a single run or a sweep) that reproduce a known
result and end with a verdict computed from what the runs measured, against a closed form or
the published figure: one line, and verdict.json in the run or sweep dir.

This module is what Hydra instantiates at start-up (the Verdict callback): it imports Hydra
only; the judges (gradexp/presets/judge.py and one module per preset) load at the end."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

NO_RUN = {
    "-c",
    "--cfg",
    "-i",
    "--info",
    "-h",
    "--help",
    "--hydra-help",
    "--shell-completion",
    "-sc",
}  # Hydra's flags that print instead of running: a preset adds nothing to them


def preset_file(argv: list[str]) -> Path | None:
    from gradexp import CONF_DIR

    for arg in argv:
        key, _, name = arg.partition("=")
        if key.lstrip("+") == "experiment" and name:
            file = CONF_DIR / "experiment" / f"{name}.yaml"
            return file if file.is_file() else None
    return None


def command_line(argv: list[str]) -> list[str]:
    """What a preset's file asks of the command line, for the run to be what it says: `-m` for
    a preset that sweeps (hydra.sweeper.params; Hydra 1.4 refuses hydra.mode set by a config
    group) and its launcher (`override /hydra/launcher: X` in a group's defaults loses to the
    primary config's own launcher override; on the command line it wins). Nothing the user
    gave is overridden, and nothing is added to --cfg, --info or --help."""
    import yaml

    file = preset_file(argv)
    flags = {a.split("=")[0] for a in argv if a.startswith("-")}
    short = {f[:2] for f in flags if not f.startswith("--")}  # -cjob is -c job
    printing = bool(flags & (NO_RUN | {"-r", "--run"}) or short & {"-c", "-i", "-r"})
    if file is None or printing:
        return []
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []  # Hydra reports it in its own words
    extra = []
    sweeper = ((data.get("hydra") or {}).get("sweeper") or {}) if isinstance(data, dict) else {}
    if isinstance(sweeper, dict) and sweeper.get("params") and not {"-m", "--multirun"} & set(argv):
        extra.append("-m")
    for entry in data.get("defaults") or [] if isinstance(data, dict) else []:
        if isinstance(entry, dict):
            for key, value in entry.items():
                if str(key).replace(" ", "") == "override/hydra/launcher" and not any(
                        a.startswith("hydra/launcher=") for a in argv):  # fmt: skip
                    extra.append(f"hydra/launcher={value}")
    return extra


def check_spec(spec) -> str | None:
    """A preset's verdict settings beside its name and claim are numbers (tolerances, factors,
    bands): the first bad one as `verdict.key=value: …`, or None."""
    for key, value in spec.items():
        if key in ("name", "claim"):
            continue
        items = (
            list(value) if hasattr(value, "__iter__") and not isinstance(value, str) else [value]
        )
        for v in items:
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not v > 0
                or v == float("inf")
            ):
                return f"verdict.{key}={value}: must be a finite number > 0 (or a list of them)"
    return None


class Verdict(Callback):
    """At the end of a preset's run or sweep: its judge's verdict, printed and saved. An unknown
    judge is refused in one line before anything runs."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config)

    @staticmethod
    def _check(config: DictConfig) -> None:
        spec = config.get("verdict")
        if not spec:
            return
        from gradexp.presets.judge import PRESETS

        name = spec.get("name") if isinstance(spec, DictConfig) else None
        if name not in PRESETS:
            print(f"gradexp: error: verdict.name={name}: no such judge; choose one of "
                  f"{', '.join(PRESETS)} (gradexp/presets/<name>.py)", file=sys.stderr)  # fmt: skip
            raise SystemExit(2)
        bad = check_spec(OmegaConf.to_container(spec, resolve=True))
        if bad:
            print(f"gradexp: error: {bad}", file=sys.stderr)
            raise SystemExit(2)

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        self._judge(config, Path(str(config.hydra.run.dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from gradexp.durable.outdir import accepted

        sweep_dir = Path(str(config.hydra.sweep.dir))
        if accepted(sweep_dir):  # Hydra 1.4 calls it after a refused start too
            self._judge(config, sweep_dir)

    @staticmethod
    def _judge(config: DictConfig, root: Path) -> None:
        spec = config.get("verdict")
        if not spec or not root.is_dir():
            return
        from gradexp.presets.judge import judge, line

        if not any(d.is_dir() and (d / ".hydra").is_dir() for d in root.iterdir()) and not (
            root / "summary.json").exists():  # fmt: skip
            return  # nothing was launched (a launcher refused its settings)

        try:
            result = judge(root, OmegaConf.to_container(spec, resolve=True))
        except Exception as e:  # a judge that fails says so in one line; the runs stay
            print(f"gradexp: verdict: {spec.get('name')}: not computed ({type(e).__name__}: "
                  f"{e})", file=sys.stderr, flush=True)  # fmt: skip
            return
        print(line(result), file=sys.stderr, flush=True)
