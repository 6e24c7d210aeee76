"""Curvature probes: sharpness (top Hessian eigenvalue) beside the stability threshold 2/η, and
the Hessian trace (Hutchinson) or, for small models, the exact Hessian's spectrum."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradexp.errors import ConfigError, check_choice, check_number
from gradexp.probes.eigen import hutchinson_trace, lanczos, power_iteration
from gradexp.probes.objective import exact_hessian, hvp_operator, jacobian, whole_batch
from gradexp.probes.schedule import Scheduled


def threshold(optimizer) -> float | None:
    """The largest sharpness at which the optimizer is stable on a quadratic: 2/η for gradient
    descent, (2+2β)/η with heavy-ball momentum β, (2+2β)/((1+2β)η) with Nesterov's (Cohen et
    al. 2021, appendix). None for optimizers without one (Adam's concerns its preconditioner)."""
    if not isinstance(optimizer, torch.optim.SGD):
        return None
    group = optimizer.param_groups[0]
    lr, beta = group["lr"], group.get("momentum", 0.0)
    if lr <= 0:
        return None
    if group.get("nesterov"):
        return (2 + 2 * beta) / ((1 + 2 * beta) * lr)
    return (2 + 2 * beta) / lr


class FixedBatch(Scheduled):
    """Curvature is measured on a fixed batch, so successive values compare: the first `batch`
    training samples, all of them (null), or the update's own mini-batch ('current')."""

    def __init__(self, every, batch, data, l2, per_decade=10):
        super().__init__(every, per_decade)
        if batch not in (None, "current") and (not isinstance(batch, int) or batch < 1):
            want = "must be null (the whole training set), 'current' or an integer ≥ 1"
            raise ConfigError("batch", batch, want)
        self.batch, self.l2 = batch, l2
        if batch != "current" and data is not None:
            self.fixed = tuple(t[:batch] for t in data) if batch else data

    def operator(self, model, micro, loss_fn):
        x, y = whole_batch(micro) if self.batch == "current" else self.fixed
        return hvp_operator(model, loss_fn, x, y, self.l2)


class Sharpness(FixedBatch):
    """curvature/sharpness (λ_max of the Hessian of J) by power iteration or Lanczos, warm-started
    from the last eigenvector, and curvature/threshold: GD is unstable where sharpness > 2/η.
    Power iteration finds the eigenvalue largest in magnitude, which in training is λ_max in
    practice (negative curvature is far smaller); Lanczos finds λ_max itself."""

    STATE = ("vector",)  # the warm start

    def __init__(
        self,
        every: int | str = 50,
        iters: int = 20,
        tol: float = 0.0,
        method: str = "power",
        batch: int | str | None = "current",
        per_decade: int = 10,
        *,
        data=None,
        l2=0.0,
    ):
        super().__init__(every, batch, data, l2, per_decade)
        check_choice("method", method, ("power", "lanczos"))
        check_number("iters", iters, low=1, integer=True, strict=False)
        check_number("tol", tol, low=0, strict=False)  # 0: always `iters` products
        self.iters, self.tol, self.method, self.vector = iters, tol, method, None

    def __call__(self, *, model: nn.Module, micro, loss_fn, optimizer) -> dict[str, Tensor]:
        grad, hvp = self.operator(model, micro, loss_fn)
        if self.vector is None:  # a seeded random start: the same run gives the same estimates
            g = torch.Generator(device=grad.device).manual_seed(0)
            self.vector = torch.randn(grad.shape, generator=g, device=grad.device, dtype=grad.dtype)
        if self.method == "power":
            value, self.vector, used = power_iteration(hvp, self.vector, self.iters, self.tol)
        else:
            values, self.vector = lanczos(hvp, self.vector, self.iters)
            value = values[-1]
        out = {"curvature/sharpness": value.detach()}
        if self.tol and self.method == "power":
            out["curvature/sharpness_iters"] = torch.tensor(float(used), device=value.device)
        limit = threshold(optimizer)
        if limit is not None:
            out["curvature/threshold"] = torch.tensor(limit, dtype=value.dtype, device=value.device)
        return out


class Hessian(FixedBatch):
    """curvature/trace by Hutchinson's estimator (method=hutchinson), or the exact Hessian by
    torch.func (method=exact; small models): its trace and extreme eigenvalues, and the largest
    singular value of the Jacobian of the model's outputs (curvature/jacobian_sv_max)."""

    STATE = ("generator",)  # Hutchinson's Rademacher vectors

    def __init__(
        self,
        every: int | str = 100,
        samples: int = 10,
        method: str = "hutchinson",
        batch: int | str | None = "current",
        max_params: int = 5000,
        per_decade: int = 10,
        *,
        data=None,
        l2=0.0,
    ):
        super().__init__(every, batch, data, l2, per_decade)
        check_choice("method", method, ("hutchinson", "exact"))
        check_number("samples", samples, low=1, integer=True, strict=False)
        check_number("max_params", max_params, low=1, integer=True, strict=False)
        self.samples, self.method, self.max_params = samples, method, max_params
        self.generator = None

    def check(self, model: nn.Module) -> None:
        """Before the first step: the exact Hessian is P×P."""
        size = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if self.method == "exact" and size > self.max_params:
            why = f"the model has {size} parameters > max_params={self.max_params}"
            raise ConfigError("method", "exact", f"{why}; use hutchinson or raise max_params")

    def __call__(self, *, model: nn.Module, micro, loss_fn, optimizer) -> dict[str, Tensor]:
        if self.method == "exact":
            x, y = whole_batch(micro) if self.batch == "current" else self.fixed
            h = exact_hessian(model, loss_fn, x, y, self.l2).detach()
            eig = torch.linalg.eigvalsh(h)
            # The Jacobian of the outputs: its top singular value² is the NTK's top eigenvalue.
            sv = torch.linalg.svdvals(jacobian(model, x).detach())
            return {
                "curvature/trace": eig.sum(),
                "curvature/eig_max": eig[-1],
                "curvature/eig_min": eig[0],
                "curvature/jacobian_sv_max": sv[0],
            }
        grad, hvp = self.operator(model, micro, loss_fn)
        if self.generator is None:
            self.generator = torch.Generator(device=grad.device).manual_seed(0)
        trace = hutchinson_trace(
            hvp, grad.numel(), self.samples, self.generator, grad.dtype, grad.device
        )
        return {"curvature/trace": trace.detach()}
