"""Property: whatever numbers a user puts in the config, the run completes (ok or diverged) or
fails with one line naming the key; never an uncaught exception from torch, numpy or sklearn."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from conftest import run_experiment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

numbers = st.one_of(
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0, 1, -1, 0.5, 1e30, -1e-30]),
)
KEYS = ("optimizer.lr", "batch.size", "batch.accumulate", "epochs", "max_steps", "l2",
        "log_every", "eval_every", "data.eval_fraction", "optimizer.momentum",
        "checkpoint_every", "explode.factor", "explode.window", "seed",
        "stop.grad_tol")  # fmt: skip


def literal(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), numbers, min_size=1, max_size=4))
def test_numbers_never_crash(values):
    overrides = ["data=iris", "model.hidden=[4]", "optimizer=momentum", "max_steps=4"]
    overrides += [f"{key}={literal(value)}" for key, value in values.items()]
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_experiment(Path(tmp) / "run", *overrides)
    assert summary["stop_reason"] != "error", summary.get("error")  # an uncaught exception
    if summary["status"] == "failed":
        error = summary["error"]
        assert summary["stop_reason"] == "config_error" and "\n" not in error
        key = error.split("=")[0]
        assert key in values or key == "batch.size", (error, values)  # names the culprit
    else:
        assert summary["status"] in ("ok", "diverged"), summary
