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
