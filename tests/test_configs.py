"""Every option of every config group composes through Hydra and runs a few steps."""

import math

import numpy as np
import pytest
from conftest import CONF_DIR, run_experiment, scalars

REGRESSION = {"diabetes", "regression"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compatible(group: str, option: str, csv_path) -> list[str]:
    """Overrides that make `group=option` runnable: regression data needs mse, files a path."""
    args = [f"{group}={option}"]
    if group == "data" and option in REGRESSION:
        args.append("loss=mse")
    if group == "data" and option == "file":
        args += [f"data.path={csv_path}", "data.target=label"]
    if group == "model" and option == "rosenbrock":  # λ_max ≈ 1200 at its start: lr < 2/1200
        args.append("optimizer.lr=0.001")
    return args


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3))
    label = (x[:, 0] + x[:, 1] > 0).astype(int)
    path = tmp_path_factory.mktemp("data") / "points.csv"
    rows = ["a,b,c,label"] + [f"{a},{b},{c},{y}" for (a, b, c), y in zip(x, label)]
    path.write_text("\n".join(rows) + "\n")
    return path


CASES = [
    (g, o) for g in ("data", "model", "loss", "optimizer", "batch", "schedule") for o in options(g)
]


def test_every_group_has_its_options():
    assert len(options("optimizer")) >= 7 and len(options("data")) >= 9
    assert {"full", "stochastic", "minibatch"} == set(options("batch"))


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_runs(tmp_path, csv_path, group, option):
    s = run_experiment(tmp_path, *compatible(group, option, csv_path), "max_steps=3", "log_every=1")
    assert s["status"] == "ok", s.get("error")
    assert s["steps"] == 3 and math.isfinite(s["final"]["train/loss"])
    assert s["choices"][group] == option
    assert [step for step, _ in scalars(tmp_path)["train/loss"]] == [0, 1, 2, 3]  # 0: J(θ₀)


def test_a_partial_with_a_nested_target_is_made_anew_for_each_member(monkeypatch):
    """parts.make caches a `_partial_` by its resolved node (a vectorised group's members
    share it), but not one that holds a `_target_` below its top: the nested object (here a
    module with parameters) would be the same one in every member."""
    from omegaconf import OmegaConf

    from gradexp import parts
    from gradexp.parts import make

    if parts.WHITELIST:  # Hydra 1.4: torch.nn is trusted for this test (as a user may add it)
        trusted = [*parts.WHITELIST["_execution_whitelist_"], "torch.nn.*"]
        monkeypatch.setattr(parts, "WHITELIST", {"_execution_whitelist_": trusted})

    node = OmegaConf.create({"_target_": "torch.nn.Sequential", "_partial_": True,
                             "_args_": [{"_target_": "torch.nn.PReLU"}]})  # fmt: skip
    values = OmegaConf.to_container(node, resolve=True)
    first, second = (make("model", node, values=values) for _ in range(2))
    assert first[0] is not second[0]
    flat = OmegaConf.create({"_target_": "torch.nn.PReLU", "_partial_": True})
    plain = OmegaConf.to_container(flat, resolve=True)
    assert make("model", flat, values=plain) is not make("model", flat, values=plain)
