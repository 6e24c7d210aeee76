"""hydra/launcher=gradexp (the default): every job in this process, each config composed once.

Hydra's basic sweeper composes every job's config to check the batch before launching it, and
its basic launcher then composes the same config again to run it (0.1–0.3 s per composition
here, a large share of a short job). This launcher does what the basic one does, through
hydra.core's public helpers, and keeps the configs the sweeper composed while checking: each
job is composed once. A sweeper that does not check (Optuna's) gets one composition per job too.
Selected in conf/config.yaml (conf/hydra/launcher/gradexp.yaml). Importing this module costs
nothing but Hydra: Hydra's plugin scan imports it on every start.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


class ComposedOnce:
    """A config loader that keeps what it composes, so the launcher can take it instead of
    composing the same job again. At most `keep` configs are held (a sweep of thousands of
    jobs then composes the rest twice, as Hydra would, rather than holding them all)."""

    def __init__(self, loader, keep: int):
        self.loader, self.keep = loader, keep
        self.kept: OrderedDict[tuple[int, tuple[str, ...]], DictConfig] = OrderedDict()

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]):
        composed = self.loader.load_sweep_config(master_config, list(sweep_overrides))
        if len(self.kept) < self.keep:
            self.kept[(id(master_config), tuple(sweep_overrides))] = composed
        return composed

    def take(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        kept = self.kept.pop((id(master_config), tuple(sweep_overrides)), None)
        return kept if kept is not None else self.loader.load_sweep_config(
            master_config, list(sweep_overrides)
        )  # fmt: skip

    def __getattr__(self, name):  # everything else: the real loader
        return getattr(self.loader, name)


def compose_job(hydra_context: HydraContext, master: DictConfig, overrides, idx: int):
    """A job's config, numbered: taken from the check if it was composed there."""
    loader = hydra_context.config_loader
    take = loader.take if isinstance(loader, ComposedOnce) else loader.load_sweep_config
    config = take(master, list(overrides))
    with open_dict(config):
        config.hydra.job.id = idx
        config.hydra.job.num = idx
    return config


class InProcessLauncher(Launcher):
    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:  # fmt: skip
        from gradexp.startup import import_settled

        import_settled("gradexp.run")  # torch, before the sweeper composes any job
        # The sweeper holds the same context: its check then composes through ComposedOnce.
        if not isinstance(hydra_context.config_loader, ComposedOnce):
            hydra_context.config_loader = ComposedOnce(hydra_context.config_loader, self.keep)
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:  # fmt: skip
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        from gradexp.durable.jobdirs import job_dirs
        from gradexp.study.lines import job_line, read_summary, sweep_size, written_before

        verbose = bool(self.config.hydra.verbose)
        if verbose:
            log.info(f"Launching {len(job_overrides)} jobs locally")
        runs, started = [], time.time()
        total = sweep_size(self.config, initial_job_idx + len(job_overrides))
        dirs = job_dirs(self.config, job_overrides, initial_job_idx)
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            if verbose:
                log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            config = quiet(compose_job(self.hydra_context, self.config, overrides, idx), verbose)
            if dirs[idx - initial_job_idx] is not None:  # named by what the sweep varies
                with open_dict(config):
                    config.hydra.sweep.subdir = dirs[idx - initial_job_idx]
            begun = time.time()
            runs.append(run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                                config=config, job_dir_key="hydra.sweep.dir",
                                job_subdir_key="hydra.sweep.subdir"))  # fmt: skip
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            job_dir = Path(str(config.hydra.runtime.output_dir))
            per_job = (time.time() - started) / (idx - initial_job_idx + 1)
            eta = per_job * (total - idx - 1) if total else None
            line = job_line(read_summary(job_dir), idx + 1, total, eta,
                            skipped=written_before(job_dir, begun))  # fmt: skip
            print(line, file=sys.stderr, flush=True)
        return runs


def quiet(config: DictConfig, verbose: bool) -> DictConfig:
    """A job of a sweep logs its lines to its own gradexp.log; on the console only warnings and
    errors (the launcher prints one line per job), unless hydra.verbose is set."""
    console = config.hydra.job_logging.get("handlers", {}).get("console")
    if not verbose and console is not None:
        with open_dict(config):
            console.level = "WARNING"
    return config
