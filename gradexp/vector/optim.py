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
        """A hyperparameter column in the parameters' dtype (cast once)."""
        key = f"{name}:cast"
        if key not in self.h:
            self.h[key] = self.h[name].to(self.dtype)
        return self.h[key]

    @torch.no_grad()
    def step(self, param: Tensor, grad: Tensor, lr: Tensor, alive: Tensor) -> None:
        """lr: [K, 1] float64, this step's learning rates; alive: [K, 1] bool. A frozen member
        is held by zero coefficients (its gradient is 0: its loss was left out of the backward
        pass), so every buffer is updated in place, with no copy per step."""
        on = alive.to(torch.float64)
        self.steps += on
        g = -grad if self.flags.get("maximize") else grad
        getattr(self, f"_{self.kind}")(param, g, lr * on, on)

    def _decay(self, param: Tensor, g: Tensor) -> Tensor:
        return g + self.cast("weight_decay") * param if self.used["weight_decay"] else g

    def _keep(self, name: str, on: Tensor) -> Tensor:
        """The factor an old buffer is multiplied by: its own, 1 for a frozen member."""
        return torch.where(on > 0, self.h[name], 1.0).to(self.dtype)

    def _sgd(self, param: Tensor, g: Tensor, lr: Tensor, on: Tensor) -> None:
        g = self._decay(param, g)
        if self.used["momentum"]:
            buf = self.state.get("momentum_buffer")
            if buf is None:
                buf = self.state["momentum_buffer"] = g * on.to(self.dtype)
            else:
                buf.mul_(self._keep("momentum", on)).add_(((1 - self.h["dampening"]) * on)
                                                          .to(self.dtype) * g)  # fmt: skip
            m = self.cast("momentum")
            d = g + m * buf if self.flags["nesterov"] else buf
            g = torch.where(self.h["momentum"] != 0, d, g)
        param.sub_(lr.to(self.dtype) * g)

    def _adam(self, param: Tensor, g: Tensor, lr: Tensor, on: Tensor) -> None:
        if self.decoupled:
            param.mul_((1 - lr * self.h["weight_decay"]).to(self.dtype))
        else:
            g = self._decay(param, g)
        b1, b2 = self.h["beta1"], self.h["beta2"]
        m = self.state.setdefault("exp_avg", torch.zeros_like(param))
        v = self.state.setdefault("exp_avg_sq", torch.zeros_like(param))
        m.lerp_(g, ((1 - b1) * on).to(self.dtype))
        v.mul_(self._keep("beta2", on)).add_(((1 - b2) * on).to(self.dtype) * g * g)
        if self.flags["amsgrad"]:
            v = torch.maximum(self.state.setdefault("max_exp_avg_sq", torch.zeros_like(v)), v,
                              out=self.state["max_exp_avg_sq"])  # fmt: skip
        step = torch.clamp(self.steps, min=1)
        size = (lr / (1 - b1**step)).to(self.dtype)
        denom = v.sqrt().div_(((1 - b2**step) ** 0.5).to(self.dtype)).add_(self.cast("eps"))
        param.sub_(size * (m / denom))

    def _rmsprop(self, param: Tensor, g: Tensor, lr: Tensor, on: Tensor) -> None:
        g = self._decay(param, g)
        a = self.h["alpha"]
        sq = self.state.setdefault("square_avg", torch.zeros_like(param))
        sq.mul_(self._keep("alpha", on)).add_(((1 - a) * on).to(self.dtype) * g * g)
        if self.flags["centered"]:
            ga = self.state.setdefault("grad_avg", torch.zeros_like(g))
            ga.lerp_(g, ((1 - a) * on).to(self.dtype))
            avg = (sq - ga * ga).sqrt_().add_(self.cast("eps"))
        else:
            avg = sq.sqrt().add_(self.cast("eps"))
        step = g / avg
        if self.used["momentum"]:
            buf = self.state.setdefault("momentum_buffer", torch.zeros_like(param))
            buf.mul_(self._keep("momentum", on)).add_(step * on.to(self.dtype))
            step = torch.where(self.h["momentum"] > 0, buf, step)
        param.sub_(lr.to(self.dtype) * step)

    def _adagrad(self, param: Tensor, g: Tensor, lr: Tensor, on: Tensor) -> None:
        g = self._decay(param, g)
        clr = lr / (1 + (torch.clamp(self.steps, min=1) - 1) * self.h["lr_decay"])
        total = self.state["sum"]
        total.add_(on.to(self.dtype) * g * g)
        std = total.sqrt().add_(self.cast("eps"))
        param.sub_(clr.to(self.dtype) * (g / std))

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
