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
# torch's fused Adam kernel (CPU since torch 2.4, CUDA before): used where the members allow it.
FUSED = hasattr(torch, "_fused_adam_")
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
        self.same: dict[str, float] = {}  # the hyperparameters every member shares
        for name, default in NUMBERS[self.kind].items():
            values = [g.get(name, default) for g in groups]
            parts = {"beta1": [v[0] for v in values], "beta2": [v[1] for v in values]} if (
                name == "betas") else {name: values}  # fmt: skip
            for part, column in parts.items():
                self.h[part] = self._column(column)
                self.used[part] = any(float(v) != 0 for v in column)  # known here: no sync
                if len({float(v) for v in column}) == 1:
                    self.same[part] = float(column[0])
        self.steps = torch.zeros(param.shape[0], 1, dtype=torch.float64, device=self.device)
        self.taken = 0  # steps of the members still training (all of them take every step)
        self.state: dict[str, Tensor] = {}
        self.scratch: Tensor | None = None
        self.views: dict[str, tuple[Tensor, list[Tensor]]] = {}  # a buffer's rows, made once
        self.fused = FUSED and self.kind == "adam" and {"beta1", "beta2", "eps"} <= set(self.same)
        if self.kind == "adagrad":
            self.state["sum"] = (torch.ones_like(param) * self.h["initial_accumulator_value"]
                                 .to(self.dtype))  # fmt: skip

    def buffer(self, name: str, like: Tensor) -> Tensor:
        """The state buffer `name`, zeros the first time."""
        if name not in self.state:
            self.state[name] = torch.zeros_like(like)
        return self.state[name]

    def rows(self, name: str, t: Tensor) -> list[Tensor]:
        """t's rows as views, made once per buffer (unbinding 5 buffers of 32 members every step
        took ~15 % of the fused update's time); made anew when the buffer is another tensor."""
        hit = self.views.get(name)
        if hit is None or hit[0] is not t:
            hit = self.views[name] = (t, list(t.unbind(0)))
        return hit[1]

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
        self.taken += 1
        g = -grad if self.flags.get("maximize") else grad
        self.grad = grad  # the persistent gradient buffer (its rows are cached, not a copy's)
        update = "_adam_fused" if self.fused else f"_{self.kind}"
        getattr(self, update)(param, g, lr * on, on)

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

    def _adam_fused(self, param: Tensor, g: Tensor, lr: Tensor, on: Tensor) -> None:
        """Adam when the members share betas and eps (an lr sweep): torch's fused kernel, one
        pass over the buffers instead of ten (5× faster on the digits MLP's [32, 9610]), run
        with lr = 1 on a scratch buffer it first zeroes, which then holds -m̂/(√v̂ + ε); each
        member's lr scales it onto its own parameters. A frozen member's parameters stay (lr 0)
        while its moments keep decaying: it never trains again, its sequential run having
        ended."""
        if self.decoupled:
            param.mul_((1 - lr * self.h["weight_decay"]).to(self.dtype))
        else:
            g = self._decay(param, g)
        m, v = self.buffer("exp_avg", param), self.buffer("exp_avg_sq", param)
        most = [self.buffer("max_exp_avg_sq", param)] if self.flags["amsgrad"] else []
        if self.scratch is None:
            self.scratch = torch.zeros_like(param)
            self.count = torch.zeros((), dtype=torch.float32, device=self.device)
        self.count.fill_(self.taken)
        # Row by row (one call): a member's numbers then never depend on where its row starts
        # in the buffer, the kernel's vector loop and its tail being rounded differently.
        names = ["scratch", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
        rows = [self.rows(n, t) if t is not g or g is self.grad else list(t.unbind(0))
                for n, t in zip(names, (self.scratch, g, m, v, *most))]  # fmt: skip
        # AdamW's decay at lr = 1, weight_decay = 1 first sets the scratch to θ − 1·θ = 0 (NaN
        # where it held NaN or ±inf: that member's moments already are), so it needs no zero_()
        # pass of its own; the rest of the kernel is Adam's (the same bits, tested).
        torch._fused_adamw_(*rows[:4], rows[4] if most else [], [self.count] * len(rows[0]),
                            lr=1.0,
                            beta1=self.same["beta1"], beta2=self.same["beta2"],
                            weight_decay=1.0, eps=self.same["eps"],
                            amsgrad=self.flags["amsgrad"], maximize=False)  # fmt: skip
        param.addcmul_(self.scratch, lr.to(self.dtype))

    def _adam(self, param: Tensor, g: Tensor, lr: Tensor, on: Tensor) -> None:
        if self.decoupled:
            param.mul_((1 - lr * self.h["weight_decay"]).to(self.dtype))
        else:
            g = self._decay(param, g)
        b1, b2 = self.h["beta1"], self.h["beta2"]
        m = self.buffer("exp_avg", param)
        v = self.buffer("exp_avg_sq", param)
        m.lerp_(g, ((1 - b1) * on).to(self.dtype))
        v.mul_(self._keep("beta2", on)).add_(((1 - b2) * on).to(self.dtype) * g * g)
        if self.flags["amsgrad"]:
            v = torch.maximum(self.buffer("max_exp_avg_sq", v), v,
                              out=self.state["max_exp_avg_sq"])  # fmt: skip
        step = torch.clamp(self.steps, min=1)
        size = (lr / (1 - b1**step)).to(self.dtype)
        denom = v.sqrt().div_(((1 - b2**step) ** 0.5).to(self.dtype)).add_(self.cast("eps"))
        param.sub_(size * (m / denom))

    def _rmsprop(self, param: Tensor, g: Tensor, lr: Tensor, on: Tensor) -> None:
        g = self._decay(param, g)
        a = self.h["alpha"]
        sq = self.buffer("square_avg", param)
        sq.mul_(self._keep("alpha", on)).add_(((1 - a) * on).to(self.dtype) * g * g)
        if self.flags["centered"]:
            ga = self.buffer("grad_avg", g)
            ga.lerp_(g, ((1 - a) * on).to(self.dtype))
            avg = (sq - ga * ga).sqrt_().add_(self.cast("eps"))
        else:
            avg = sq.sqrt().add_(self.cast("eps"))
        step = g / avg
        if self.used["momentum"]:
            buf = self.buffer("momentum_buffer", param)
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
        self.taken = int(self.steps.max()) if self.steps.numel() else 0
        self.state = {k: v.to(device=self.device, dtype=self.dtype)
                      for k, v in saved["state"].items()}  # fmt: skip

    def member(self, k: int) -> dict:
        """Member k's rows of the state (its checkpoint)."""
        return {"steps": float(self.steps[k, 0]),
                "state": {n: v[k].detach().clone() for n, v in self.state.items()}}  # fmt: skip

    def load_member(self, k: int, saved: dict) -> None:
        self.steps[k, 0] = saved["steps"]
        self.taken = max(self.taken, int(saved["steps"]))
        for name, row in saved["state"].items():
            if name not in self.state:
                self.state[name] = torch.zeros(self.steps.shape[0], row.numel(),
                                               dtype=self.dtype, device=self.device)  # fmt: skip
            self.state[name][k] = row.to(device=self.device, dtype=self.dtype)
