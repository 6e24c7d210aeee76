"""torch.optim's SGD (momentum, Nesterov), Adam, AdamW, RMSprop and Adagrad for K members held in
one [K, P] buffer, each member with its own hyperparameters: the single-tensor update torch runs
on the CPU, written out over rows (tested against torch.optim member by member).

torch.optim takes a tensor lr only as one 0-d tensor (pytorch#145461), so per-member numbers need
an update of their own. Scalars torch computes in Python floats (bias corrections, step sizes)
are computed here in float64 per member and cast to the parameters' dtype, as torch's kernels
cast a Python float."""

from __future__ import annotations

import torch
from torch import Tensor

# The hyperparameters each class reads, with torch's defaults; flags must agree across members.
NUMBERS = {
    "sgd": {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "rmsprop": {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0},
    "adagrad": {"lr_decay": 0.0, "weight_decay": 0.0, "eps": 1e-10,
                "initial_accumulator_value": 0.0},
}  # fmt: skip
FLAGS = {"sgd": ("nesterov", "maximize"), "adam": ("amsgrad", "maximize"),
         "rmsprop": ("centered", "maximize"), "adagrad": ("maximize",)}  # fmt: skip
KINDS = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adam",
         torch.optim.RMSprop: "rmsprop", torch.optim.Adagrad: "adagrad"}  # fmt: skip


def kind_of(optimizer: torch.optim.Optimizer) -> str | None:
    """The update this class runs ('adam' for Adam and AdamW), None if not one of ours."""
    return KINDS.get(type(optimizer))


class VectorOptimizer:
    """One step for all members: `param` and `grad` are [K, P]; `lr` and `alive` are [K, 1]
    (a frozen member's parameters and state stay as they are)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], param: Tensor):
        self.kind = kind_of(optimizers[0])
        groups = [o.param_groups[0] for o in optimizers]
        self.flags = {f: bool(groups[0].get(f, False)) for f in FLAGS[self.kind]}
        for f in self.flags:
            if any(bool(g.get(f, False)) != self.flags[f] for g in groups):
                raise ValueError(f"members differ in {f}")
        self.decoupled = isinstance(optimizers[0], torch.optim.AdamW) or bool(
            groups[0].get("decoupled_weight_decay", False))  # fmt: skip
        self.dtype, self.device = param.dtype, param.device
        self.h, self.used = {}, {}  # [K, 1] float64 values; whether any member's is nonzero
        for name, default in NUMBERS[self.kind].items():
            values = [g.get(name, default) for g in groups]
            parts = {"beta1": [v[0] for v in values], "beta2": [v[1] for v in values]} if (
                name == "betas") else {name: values}  # fmt: skip
            for part, column in parts.items():
                self.h[part] = self._column(column)
                self.used[part] = any(float(v) != 0 for v in column)  # known here: no sync
        self.steps = torch.zeros(param.shape[0], 1, dtype=torch.float64, device=self.device)
        self.state: dict[str, Tensor] = {}
        if self.kind == "adagrad":
            self.state["sum"] = (torch.ones_like(param) * self.h["initial_accumulator_value"]
                                 .to(self.dtype))  # fmt: skip

    def _column(self, values) -> Tensor:
        return torch.tensor([float(v) for v in values], dtype=torch.float64,
                            device=self.device).unsqueeze(1)  # fmt: skip

    def cast(self, name: str) -> Tensor:
        return self.h[name].to(self.dtype)

    @torch.no_grad()
    def step(self, param: Tensor, grad: Tensor, lr: Tensor, alive: Tensor) -> None:
        """lr: [K, 1] float64, this step's learning rates; alive: [K, 1] bool."""
        self.steps += alive.to(torch.float64)
        g = -grad if self.flags.get("maximize") else grad
        new = getattr(self, f"_{self.kind}")(param, g, lr)
        for name, value in new.items():
            old = param if name == "param" else self.state.get(name)
            if old is None:  # a state buffer's first step (SGD momentum)
                self.state[name] = torch.where(alive, value, torch.zeros_like(value))
            else:
                old.copy_(torch.where(alive, value, old))

    def _decay(self, param: Tensor, g: Tensor) -> Tensor:
        return g + self.cast("weight_decay") * param if self.used["weight_decay"] else g

    def _sgd(self, param: Tensor, g: Tensor, lr: Tensor) -> dict[str, Tensor]:
        g = self._decay(param, g)
        out = {}
        if self.used["momentum"]:
            buf = self.state.get("momentum_buffer")
            m = self.cast("momentum")
            buf = g.clone() if buf is None else buf * m + (1 - self.h["dampening"]).to(
                self.dtype) * g  # fmt: skip
            out["momentum_buffer"] = buf
            d = g + m * buf if self.flags["nesterov"] else buf
            g = torch.where(self.h["momentum"] != 0, d, g)
        return out | {"param": param - lr.to(self.dtype) * g}

    def _adam(self, param: Tensor, g: Tensor, lr: Tensor) -> dict[str, Tensor]:
        if self.decoupled:
            param = param * (1 - lr * self.h["weight_decay"]).to(self.dtype)
        else:
            g = self._decay(param, g)
        b1, b2 = self.h["beta1"], self.h["beta2"]
        m = self.state.get("exp_avg", torch.zeros_like(param))
        v = self.state.get("exp_avg_sq", torch.zeros_like(param))
        m = torch.lerp(m, g, (1 - b1).to(self.dtype))
        v = v * b2.to(self.dtype) + (1 - b2).to(self.dtype) * g * g
        out = {"exp_avg": m, "exp_avg_sq": v}
        if self.flags["amsgrad"]:
            out["max_exp_avg_sq"] = v = torch.maximum(
                self.state.get("max_exp_avg_sq", torch.zeros_like(v)), v)  # fmt: skip
        step = torch.clamp(self.steps, min=1)
        size = (lr / (1 - b1**step)).to(self.dtype)
        denom = v.sqrt() / ((1 - b2**step) ** 0.5).to(self.dtype) + self.cast("eps")
        return out | {"param": param - size * (m / denom)}

    def _rmsprop(self, param: Tensor, g: Tensor, lr: Tensor) -> dict[str, Tensor]:
        g = self._decay(param, g)
        a = self.h["alpha"]
        sq = self.state.get("square_avg", torch.zeros_like(param))
        sq = sq * a.to(self.dtype) + (1 - a).to(self.dtype) * g * g
        out = {"square_avg": sq}
        if self.flags["centered"]:
            ga = torch.lerp(self.state.get("grad_avg", torch.zeros_like(g)), g,
                            (1 - a).to(self.dtype))  # fmt: skip
            out["grad_avg"] = ga
            avg = (sq - ga * ga).sqrt() + self.cast("eps")
        else:
            avg = sq.sqrt() + self.cast("eps")
        step = g / avg
        if self.used["momentum"]:
            buf = self.state.get("momentum_buffer", torch.zeros_like(param))
            buf = buf * self.cast("momentum") + step
            out["momentum_buffer"] = buf
            step = torch.where(self.h["momentum"] > 0, buf, step)
        return out | {"param": param - lr.to(self.dtype) * step}

    def _adagrad(self, param: Tensor, g: Tensor, lr: Tensor) -> dict[str, Tensor]:
        g = self._decay(param, g)
        clr = lr / (1 + (torch.clamp(self.steps, min=1) - 1) * self.h["lr_decay"])
        total = self.state["sum"] + g * g
        std = total.sqrt() + self.cast("eps")
        return {"sum": total, "param": param - clr.to(self.dtype) * (g / std)}

    def state_dict(self) -> dict:
        return {"steps": self.steps.clone(), "state": {k: v.clone() for k, v in self.state.items()}}

    def load_state_dict(self, saved: dict) -> None:
        self.steps = saved["steps"].to(self.device)
        self.state = {k: v.to(device=self.device, dtype=self.dtype)
                      for k, v in saved["state"].items()}  # fmt: skip

    def member(self, k: int) -> dict:
        """Member k's rows of the state (its checkpoint)."""
        return {"steps": float(self.steps[k, 0]),
                "state": {n: v[k].detach().clone() for n, v in self.state.items()}}  # fmt: skip

    def load_member(self, k: int, saved: dict) -> None:
        self.steps[k, 0] = saved["steps"]
        for name, row in saved["state"].items():
            if name not in self.state:
                self.state[name] = torch.zeros(self.steps.shape[0], row.numel(),
                                               dtype=self.dtype, device=self.device)  # fmt: skip
            self.state[name][k] = row.to(device=self.device, dtype=self.dtype)
