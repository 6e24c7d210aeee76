"""Groups as the unit of work on a cluster: each group of a vectorised sweep is one submitit task
(one SLURM array task), which trains it as run_group does here and returns its summaries. The
jobs' .hydra/ files are written before submission, by the launcher; everything else by the task,
in the same directories, so the sweep's files are those of the in-process launch."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from gradexp.errors import ConfigError, nearest

log = logging.getLogger("gradexp")
# submitit's keys common to its executors; every other key is SLURM's own (slurm_<key>).
GENERIC = {"timeout_min", "mem_gb", "cpus_per_task", "gpus_per_node", "nodes", "tasks_per_node",
           "name", "stderr_to_stdout"}  # fmt: skip
CLUSTERS = ("slurm", "local")
PREFIX = "hydra.launcher.submitit"


def check(settings: dict) -> dict:
    """The submitit settings as submitit's AutoExecutor takes them, or a ConfigError naming the
    first key it would refuse (before anything is submitted or written)."""
    import submitit

    settings = dict(settings)
    cluster = settings.pop("cluster", "slurm")
    if cluster not in CLUSTERS:
        why = f"must be one of {', '.join(CLUSTERS)} (local: each group a local subprocess)"
        raise ConfigError(f"{PREFIX}.cluster", cluster, why)
    folder = settings.pop("folder", None)
    if not folder:
        raise ConfigError(f"{PREFIX}.folder", folder, "must name the folder for submitit's files")
    own = set(submitit.SlurmExecutor._valid_parameters()) - {"time", "mem", "job_name"}
    params = {}
    for key, value in settings.items():
        if key not in GENERIC and key not in own:
            hint = nearest(key, sorted(GENERIC | own))
            raise ConfigError(f"{PREFIX}.{key}", value, "no such submitit setting"
                              + (f"; did you mean {PREFIX}.{hint}?" if hint else ""))  # fmt: skip
        if value is not None:
            params[key if key in GENERIC else f"slurm_{key}"] = value
    return {"cluster": cluster, "folder": str(folder), "params": params}


def submit(settings: dict, groups: list[list], max_members: int | None) -> list[list[dict]]:
    """Every group's summaries, each group trained by one task; a task that ends without a
    result (cancelled, out of time, its node lost) is a SubmitFailed naming it."""
    import submitit

    checked = check(settings)
    executor = submitit.AutoExecutor(folder=checked["folder"], cluster=checked["cluster"])
    executor.update_parameters(**checked["params"])
    tasks = executor.map_array(run_task, groups, [max_members] * len(groups))
    print(
        f"gradexp: {len(groups)} groups submitted as {checked['cluster']} tasks "
        f"{', '.join(t.job_id for t in tasks)}",
        file=sys.stderr,
        flush=True,
    )  # always shown
    out, failed = [], []
    for task, jobs in zip(tasks, groups):
        try:
            out.append(task.result())
        except Exception as e:  # submitit's UncompletedJobError, or the task's own exception
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            failed.append(f"task {task.job_id} ({len(jobs)} jobs, {jobs[0].run_dir.name} …): "
                          f"{first}")  # fmt: skip
            out.append([None] * len(jobs))
    if failed:
        raise SubmitFailed(failed, out)
    return out


class SubmitFailed(Exception):
    """Tasks that left no result, with the summaries of those that did."""

    def __init__(self, failed: list[str], summaries: list[list]):
        super().__init__(f"{len(failed)} of {len(summaries)} group tasks failed: {failed[0]}")
        self.failed, self.summaries = failed, summaries


def run_task(jobs: list, max_members: int | None) -> list[dict]:
    """What one submitit task runs: the group, with gradexp's lines on the task's stderr."""
    from gradexp.startup import import_settled

    # torch came in with the pickled jobs: this freezes it (and the jobs, which live as long
    # as the task), so the group's collections do not walk it again
    import_settled("gradexp.vector.run")
    from gradexp.vector.run import run_group

    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    for job in jobs:
        Path(job.run_dir).mkdir(parents=True, exist_ok=True)
    return run_group(jobs, max_members=max_members)
