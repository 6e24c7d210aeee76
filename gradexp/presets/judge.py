"""A preset's verdict: its runs read back from disk, judged by the preset's own module,
written as verdict.json: {experiment, claim, reproduced, measured, expected, figures}."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

from gradexp.study.runs import find, load

# One judge per preset: gradexp/presets/<name>.py with verdict(runs, spec, root) -> dict.
PRESETS = sorted(p.stem for p in Path(__file__).parent.glob("*.py")
                 if p.stem not in ("__init__", "judge", "common"))  # fmt: skip


def runs_under(root: Path) -> list:
    found, _ = find([root])
    return [r for r in map(load, found) if r is not None]


def judge(root: Path, spec: dict) -> dict:
    """The verdict of the preset `spec["name"]` over the runs under root (also verdict.json)."""
    name = spec.get("name")
    if name not in PRESETS:
        raise ValueError(f"verdict.name={name}: no such preset judge; one of {', '.join(PRESETS)}")
    module = importlib.import_module(f"gradexp.presets.{name}")
    runs = runs_under(root)
    failed = [r for r in runs if r.summary.get("status") not in ("ok", "diverged")]
    if not runs or failed:
        what = f"{len(failed)} of {len(runs)} runs failed" if runs else "no finished runs"
        result = {"claim": spec.get("claim", ""), "reproduced": False, "measured": {},
                  "expected": {}, "figures": [], "why": what}  # fmt: skip
    else:
        result = module.verdict(runs, spec, root)
    result = {"experiment": name, "claim": spec.get("claim", ""), **result}
    (root / "verdict.json").write_text(json.dumps(clean(result), indent=2) + "\n")
    return result


def clean(value):
    """JSON without NaN tokens: non-finite floats as the strings the logs use."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # a numpy or torch scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def line(result: dict) -> str:
    verdict = "reproduced" if result["reproduced"] else "NOT reproduced"
    summary = result.get("why") or result.get("said", "")
    return f"gradexp: verdict: {result['experiment']}: {verdict} · {summary}"
