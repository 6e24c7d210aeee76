"""A sweep's job directories, named by what the sweep varies, in the order it was given:
`3_optimizer=adam,lr=0.1,seed=1` rather than every override sorted
(`3_epochs=10,optimizer.lr=0.1,optimizer=adam,seed=1`). The swept keys are the sweeper's own
params (a preset's grid, Optuna's search space) and the command line's sweep overrides
(comma lists, range(...)); each is shown by its last part (`lr`) unless two would read alike.
The overrides that stay constant are written once, to <sweep dir>/sweep.yaml.

With resume=true a job finds its directory by its configuration (its overrides, less those that
only steer the run: resume, overwrite, checkpoint_every), not its number: a sweep rerun with its
values reordered or new values added re-runs nothing that finished."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

PARSER = OverridesParser.create()


@functools.lru_cache(maxsize=8192)
def _parsed(overrides: tuple[str, ...]) -> tuple:
    return tuple(PARSER.parse_overrides(list(overrides)))


def parsed(overrides) -> tuple:
    """Hydra's parse of a job's overrides, once per distinct list (ANTLR takes ~3 ms a job,
    and a vectorised sweep reads each job's overrides five times)."""
    return _parsed(tuple(overrides))


def swept_keys(params: dict, command_line: list[str], exclude: list[str]) -> list[str]:
    keys = list(params or {})
    for o in parsed(command_line):
        if o.is_sweep_override() and not o.is_hydra_override():
            keys.append(o.get_key_element())
    return [k for k in dict.fromkeys(keys) if k.lstrip("+~") not in exclude]


def short_names(keys: list[str]) -> dict[str, str]:
    """Each key by its last part, unless two keys share it (then in full)."""
    last = {k: k.lstrip("+~").rpartition(".")[2] for k in keys}
    counts = {v: list(last.values()).count(v) for v in last.values()}
    return {k: last[k] if counts[last[k]] == 1 else k.lstrip("+~") for k in keys}


def values(overrides: list[str]) -> dict[str, str]:
    return {o.get_key_element(): o.get_value_element_as_str()
            for o in parsed(overrides)}  # fmt: skip


def configuration(overrides: list[str], exclude: list[str]) -> frozenset:
    """What a job computes: its overrides as key=value, less the keys that only steer the run."""
    return frozenset(f"{k}={v}" for k, v in values(overrides).items()
                     if k.lstrip("+~") not in exclude and not k.startswith("hydra."))  # fmt: skip


def existing(sweep_dir: Path, exclude: list[str]) -> dict[frozenset, list[str]]:
    """The job dirs already in a sweep dir, by their configuration (.hydra/overrides.yaml): a
    sweep that ran one configuration twice has two dirs for it."""
    found = {}
    for d in sorted(p for p in sweep_dir.iterdir() if p.is_dir()) if sweep_dir.is_dir() else []:
        file = d / ".hydra" / "overrides.yaml"
        try:
            overrides = yaml.safe_load(file.read_text()) if file.is_file() else None
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(overrides, list):
            found.setdefault(configuration([str(x) for x in overrides], exclude), []).append(d.name)
    return found


def names(jobs: list[list[str]], first_idx: int, keys: list[str], sweep_dir: Path,
          resume: bool, exclude: list[str]) -> list[str | None]:  # fmt: skip
    """Each job's subdir name; None where nothing is swept (Hydra's own naming then)."""
    short = short_names(keys)
    known = existing(sweep_dir, exclude) if resume else {}
    entries = [p.name for p in sweep_dir.iterdir()] if resume and sweep_dir.is_dir() else []
    taken = {int(n.split("_")[0]) for n in entries if n.split("_")[0].isdigit()}
    fresh = max(taken, default=first_idx - 1) + 1  # a resumed sweep's new jobs: numbered on
    out: list[str | None] = []
    for i, overrides in enumerate(jobs):
        olds = known.get(configuration(overrides, exclude)) or []
        mine = olds.pop(0) if olds else None  # each old dir goes to one job only
        if mine is not None:
            out.append(mine)
            continue
        if not keys:
            out.append(None)
            continue
        given = values(overrides)
        parts = [f"{short[k]}={given[k]}".replace("/", "%2F") for k in keys if k in given]
        number = fresh if taken else first_idx + i
        fresh += 1
        out.append(f"{number}_{','.join(parts)}")
    return out


def write_constants(sweep_dir: Path, keys: list[str], command_line: list[str]) -> None:
    """<sweep dir>/sweep.yaml: what the sweep varies, and the overrides every job shares."""
    constant = [o.input_line for o in parsed(command_line)
                if not o.is_sweep_override() and o.get_key_element() not in keys]  # fmt: skip
    sweep_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"swept": keys, "constant": constant}, sort_keys=False,
                          allow_unicode=True)  # fmt: skip
    (sweep_dir / "sweep.yaml").write_text(text)


def job_dirs(master, job_overrides, first_idx: int, command_line: list[str] | None = None
             ) -> list[str | None]:  # fmt: skip
    """The subdir names of a batch of jobs from the sweep's master config (its sweeper params,
    its command line: hydra.overrides.task unless given, resume and the excluded keys); writes
    sweep.yaml."""
    line = list(master.hydra.overrides.task) if command_line is None else list(command_line)
    exclude = list(master.hydra.job.config.override_dirname.exclude_keys)
    keys = swept_keys(master.hydra.sweeper.get("params") or {}, line, exclude)
    sweep_dir = Path(str(master.hydra.sweep.dir))
    dirs = names([list(o) for o in job_overrides], first_idx, keys, sweep_dir,
                 master.get("resume") is True, exclude)  # fmt: skip
    if keys:  # the latest command's: a resumed sweep may have added values
        write_constants(sweep_dir, keys, line)
    return dirs
