"""hydra/launcher=vectorized: the jobs that differ only in numbers (seeds, learning rates, the
optimizer's and the schedule's other numbers, l2) trained as one batched model per group
(gradexp/vector). Importing this module costs nothing but Hydra: Hydra's plugin scan imports it
on every start."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.gradexp_launchers.inprocess import ComposedOnce


class VectorizedLauncher(Launcher):
    def __init__(self, max_members: int | None = None, submitit: dict | None = None) -> None:
        from omegaconf import OmegaConf

        self.max_members = max_members
        # None: groups train in this process; else each group is one submitit task
        self.submitit = (OmegaConf.to_container(submitit, resolve=True)
                         if OmegaConf.is_config(submitit) else submitit)  # fmt: skip
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:  # fmt: skip
        from gradexp.startup import import_settled
        from gradexp.vector.jobs import Deriving  # Hydra and OmegaConf only: cheap to import

        if self.submitit is None:  # torch, before the sweeper composes any job
            import_settled("gradexp.vector.groups")

        loader = hydra_context.config_loader
        while isinstance(loader, ComposedOnce | Deriving):
            loader = loader.loader
        hydra_context.config_loader = Deriving(loader)
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:  # fmt: skip
        from gradexp.vector.groups import launch  # torch: only once jobs are launched

        return launch(self, job_overrides, initial_job_idx)
