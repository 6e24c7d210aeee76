"""hydra/launcher=vectorized's launch: the sweeper's batch run group by group (compose one job,
derive its group's others, write every job's .hydra/, size the groups to the memory, train each
as one model)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from hydra.core.utils import JobReturn, configure_log, setup_globals

from gradexp.durable.jobdirs import job_dirs
from gradexp.errors import ConfigError
from gradexp.study.lines import job_line, sweep_size, written_before
from gradexp.vector.jobs import console_logging, job_return, members, plan, save
from gradexp.vector.run import Job, run_group

log = logging.getLogger("gradexp")


def launch(launcher, job_overrides, initial_job_idx: int) -> list[JobReturn]:
    """Hydra's Launcher.launch: one JobReturn per job, in the sweeper's order."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    if launcher.max_members is not None and (
        isinstance(launcher.max_members, bool) or not isinstance(launcher.max_members, int)
        or launcher.max_members < 1):  # fmt: skip
        fail(ConfigError("hydra.launcher.max_members", launcher.max_members,
                         "must be an integer ≥ 1, or null to size groups by memory"))  # fmt: skip
    try:
        return run_groups(launcher, list(job_overrides), initial_job_idx)
    except ConfigError as e:
        fail(e)


def fail(error: ConfigError):
    print(f"gradexp: error: {error}", file=sys.stderr)
    raise SystemExit(2)


def run_groups(launcher, job_overrides: list, first_idx: int) -> list:
    loader = launcher.hydra_context.config_loader
    if launcher.submitit is not None:
        from gradexp.vector.submit import check

        check(launcher.submitit)  # before a job dir is made
    returns = [None] * len(job_overrides)
    prepared, finished, started = [], 0, time.time()
    total = sweep_size(launcher.config, first_idx + len(job_overrides))
    dirs = job_dirs(launcher.config, job_overrides, first_idx)
    for idxs in plan(job_overrides):
        head = job_overrides[idxs[0]]
        base = loader.load_sweep_config(launcher.config, list(head))
        console_logging(base)
        group = members(base, [job_overrides[i] for i in idxs], [first_idx + i for i in idxs],
                        [dirs[i] for i in idxs])  # fmt: skip
        jobs = [Job(m.task, m.output_dir, m.choices, m.overrides, config_yaml=save(m))
                for m in group]  # fmt: skip
        if launcher.submitit is None:  # one group after another, here
            begun = time.time()
            done = run_group(jobs, max_members=launcher.max_members)
            for i, m, summary in zip(idxs, group, done):
                returns[i] = job_return(m, summary)
            say_groups(group, jobs)
            finished += len(idxs)
            left = total - first_idx - finished if total else 0
            eta = (time.time() - started) / finished * left
            for m, summary in zip(group, done):
                line = job_line(summary, m.idx + 1, total, eta,
                                skipped=written_before(m.output_dir, begun))  # fmt: skip
                print(line, file=sys.stderr, flush=True)
            stop_if_interrupted(jobs)
        else:
            prepared.append((idxs, group, jobs))
    if prepared:
        submitted(launcher, prepared, returns)
    # the sweeper's logging back (its closing lines: Optuna's best trial)
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return returns


def say_groups(group: list, jobs: list) -> None:
    """One console line per batched model, before its jobs' lines (a group split by memory
    or by L2 trains as several): which jobs trained together."""
    models: dict[int, list[int]] = {}
    for m, job in zip(group, jobs):
        if job.model is not None:
            models.setdefault(job.model, []).append(m.idx + 1)
    for numbers in models.values():
        which = ", ".join(map(str, numbers[:6])) + (", …" if len(numbers) > 6 else "")
        if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
            which = f"{numbers[0]}–{numbers[-1]}"
        print(f"gradexp: {len(numbers)} job{'s' if len(numbers) > 1 else ''} trained as one "
              f"batched model (job{'s' if len(numbers) > 1 else ''} {which})",
              file=sys.stderr, flush=True)  # fmt: skip


def submitted(launcher, prepared: list, returns: list) -> None:
    """Every group as one submitit task, all at once; the sweep fails in one line (after every
    task has ended) if a task left no result."""
    from gradexp.vector.submit import SubmitFailed, submit

    try:
        results = submit(launcher.submitit, [jobs for *_, jobs in prepared],
                         launcher.max_members)  # fmt: skip
    except SubmitFailed as e:
        print(f"gradexp: error: {e}", file=sys.stderr)
        for line in e.failed[1:]:
            print(f"gradexp:   also {line}", file=sys.stderr)
        raise SystemExit(1) from None
    for (idxs, group, jobs), summaries in zip(prepared, results):
        for i, m, job, summary in zip(idxs, group, jobs, summaries):
            job.summary = summary
            returns[i] = job_return(m, summary)
    stop_if_interrupted([job for *_, jobs in prepared for job in jobs])


def stop_if_interrupted(jobs: list) -> None:
    stopped = [j for j in jobs if j.summary.get("status") == "interrupted"]
    if stopped:  # the user asked everything to stop, as a single job's SIGTERM does
        raise SystemExit(stopped[0].summary.get("exit_code", 130))
