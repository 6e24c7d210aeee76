"""Checks of group values that torch, numpy or sklearn would reject with a traceback (or worse,
accept): each names the key, the value and what is allowed. Plain dicts in, nothing out."""

from __future__ import annotations

from gradexp.errors import ConfigError, check_number

# Optimizer hyper-parameters torch requires to be ≥ 0 (it raises "Invalid ... value" otherwise).
NON_NEGATIVE = ("momentum", "dampening", "weight_decay", "eps", "lr_decay",
                "initial_accumulator_value")  # fmt: skip
FLAGS = ("nesterov", "amsgrad", "maximize", "centered")


def check_bool(key: str, value: object) -> None:
    if not isinstance(value, bool):
        shown = repr(value) if isinstance(value, str) else value
        raise ConfigError(key, shown, "must be true or false")


def check_optimizer(node: dict) -> None:
    for key in NON_NEGATIVE:
        if key in node:
            check_number(f"optimizer.{key}", node[key], low=0, strict=False)
    if "alpha" in node:
        check_number("optimizer.alpha", node["alpha"], low=0, high=1, strict=False)
    for key in FLAGS:
        if key in node:
            check_bool(f"optimizer.{key}", node[key])
    if "betas" in node:
        betas = node["betas"]
        want = "must be two numbers in [0, 1), e.g. [0.9,0.999]"
        if not isinstance(betas, list) or len(betas) != 2:
            raise ConfigError("optimizer.betas", betas, want)
        for beta in betas:
            check_number("optimizer.betas", beta, low=0, strict=False)
            if beta >= 1:
                raise ConfigError("optimizer.betas", betas, want)
    if node.get("nesterov") and (node.get("momentum", 0) <= 0 or node.get("dampening", 0) != 0):
        raise ConfigError("optimizer.nesterov", True, "needs optimizer.momentum > 0 and "
                          "optimizer.dampening = 0")  # fmt: skip


def check_schedule(node: dict) -> None:
    if "warmup_steps" in node:
        check_number("schedule.warmup_steps", node["warmup_steps"], low=0, integer=True,
                     strict=False)  # fmt: skip
    if "step_size" in node:
        check_number("schedule.step_size", node["step_size"], low=1, integer=True, strict=False)
    if "gamma" in node:
        check_number("schedule.gamma", node["gamma"], low=0)
    if "min_factor" in node:
        check_number("schedule.min_factor", node["min_factor"], low=0, high=1, strict=False)


def check_model(node: dict) -> None:
    hidden = node.get("hidden", [])
    if not isinstance(hidden, list):
        raise ConfigError("model.hidden", repr(hidden), "must be a list of widths, e.g. [128,64]")
    for width in hidden:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ConfigError("model.hidden", hidden, "every width must be an integer ≥ 1")
    if "bias" in node:
        check_bool("model.bias", node["bias"])


def check_data(node: dict) -> None:
    for key, low in (("n", 1), ("features", 1), ("classes", 2), ("seed", 0), ("split_seed", 0)):
        if key in node:
            check_number(f"data.{key}", node[key], low=low, integer=True, strict=False)
    for key in ("noise", "spread"):
        if key in node:
            check_number(f"data.{key}", node[key], low=0, strict=False)
    check_bool("data.standardize", node["standardize"])
    for key in ("path", "name"):
        if key in node and not isinstance(node[key], str):
            raise ConfigError(f"data.{key}", node[key], "must be a string")


def check_batch(node: dict) -> None:
    for key in ("shuffle", "drop_last"):
        check_bool(f"batch.{key}", node[key])


def check_groups(cfg: dict) -> None:
    """Every group's values, as a plain dict (OmegaConf.to_container of the run's config)."""
    check_optimizer(cfg["optimizer"])
    check_schedule(cfg["schedule"])
    check_model(cfg["model"])
    check_data(cfg["data"])
    check_batch(cfg["batch"])
    for key in ("progress", "resume", "overwrite", "deterministic"):
        check_bool(key, cfg[key])
    check_number("checkpoint_every", cfg["checkpoint_every"], low=0, integer=True, strict=False)
    if cfg["diverge"]["factor"] is not None:
        check_number("diverge.factor", cfg["diverge"]["factor"], low=1)
    explode = cfg["explode"]
    if explode["factor"] is not None:
        check_number("explode.factor", explode["factor"], low=1)
    check_number("explode.window", explode["window"], low=1, integer=True, strict=False)
