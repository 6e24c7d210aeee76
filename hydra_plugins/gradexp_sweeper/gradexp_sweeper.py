"""Hydra's basic sweeper, composing each job's config once instead of twice.

The basic sweeper composes every job's config to check the batch before launching it, and then
the basic launcher composes it again to run it: 0.15–0.3 s per composition here, a large share of
a short job. When the launcher runs the jobs in this process, this sweeper keeps the configs it
composed while checking and hands each one to the launcher, which would have composed the same
config from the same inputs. Other launchers (joblib, submitit) compose in their own way.
gradexp's main() installs it in place of hydra/sweeper=basic (see gradexp/__main__.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class ComposedOnce:
    """A config loader that returns a checked job's config once, then composes as usual."""

    def __init__(self, loader):
        self.loader = loader
        self.kept: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def keep(self, master: DictConfig, overrides: Sequence[str]) -> None:
        key = (id(master), tuple(overrides))
        self.kept[key] = self.loader.load_sweep_config(master, list(overrides))

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]):
        kept = self.kept.pop((id(master_config), tuple(sweep_overrides)), None)
        return kept if kept is not None else self.loader.load_sweep_config(
            master_config, sweep_overrides
        )  # fmt: skip

    def __getattr__(self, name):  # everything else: the real loader
        return getattr(self.loader, name)


class GradexpSweeper(BasicSweeper):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if type(self.launcher) is BasicLauncher:  # same process: the checked config can be reused
            hydra_context.config_loader = ComposedOnce(hydra_context.config_loader)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        loader = self.hydra_context.config_loader
        if not isinstance(loader, ComposedOnce):
            return super().validate_batch_is_legal(batch)
        for overrides in batch:
            loader.keep(self.config, overrides)
