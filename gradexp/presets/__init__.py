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
    """At the end of a preset's run or sweep: its judge's verdict, printed and saved."""

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        self._judge(config, Path(str(config.hydra.run.dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        self._judge(config, Path(str(config.hydra.sweep.dir)))

    @staticmethod
    def _judge(config: DictConfig, root: Path) -> None:
        spec = config.get("verdict")
        if not spec or not root.is_dir():
            return
        from gradexp.presets.judge import judge, line

        result = judge(root, OmegaConf.to_container(spec, resolve=True))
        print(line(result), file=sys.stderr, flush=True)
