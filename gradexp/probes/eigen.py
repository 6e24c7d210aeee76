"""Curvature from Hessian-vector products: top eigenvalue by power iteration or Lanczos, trace by
Hutchinson's estimator. Everything stays on the device: fixed iteration counts, no host sync."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

HVP = Callable[[Tensor], Tensor]


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v).clamp_min(torch.finfo(v.dtype).tiny)


def power_iteration(
    hvp: HVP, start: Tensor, iters: int, tol: float = 0.0
) -> tuple[Tensor, Tensor, int]:
    """(λ, v, products used): the eigenvalue of largest magnitude and its unit eigenvector, as
    the Rayleigh quotient vᵀHv, after `iters` products, or fewer once successive estimates
    agree within a relative `tol` (tol > 0 reads each estimate on the host: a sync per product,
    on a probe that runs every K steps). Warm-start `start` from the previous v: the top
    eigenvector moves slowly during training, so a few products then suffice."""
    v = _unit(start)
    value = previous = torch.zeros((), dtype=v.dtype, device=v.device)
    for k in range(1, iters + 1):
        hv = hvp(v)
        value = torch.dot(v, hv)
        v = _unit(hv)
        if tol and k > 1 and abs(value - previous).item() <= tol * abs(value).item():
            return value, v, k
        previous = value
    return value, v, iters


def lanczos(hvp: HVP, start: Tensor, iters: int) -> tuple[Tensor, Tensor]:
    """(Ritz values ascending, top Ritz vector) after `iters` Lanczos steps (at most the
    dimension) with full re-orthogonalisation: both ends of the spectrum converge, and faster
    than power iteration."""
    q = _unit(start)
    iters = min(iters, start.numel())
    basis, alphas, betas = [q], [], []
    for k in range(iters):
        w = hvp(q)
        alpha = torch.dot(q, w)
        w = w - alpha * q - (betas[-1] * basis[-2] if betas else 0)
        stacked = torch.stack(basis)
        for _ in range(2):  # full re-orthogonalisation, twice: the basis stays orthonormal
            w = w - stacked.T @ (stacked @ w)
        alphas.append(alpha)
        if k == iters - 1:
            break
        beta = torch.linalg.vector_norm(w)
        betas.append(beta)
        q = w / beta.clamp_min(torch.finfo(w.dtype).tiny)
        basis.append(q)
    t = torch.diag(torch.stack(alphas))
    if betas:
        off = torch.stack(betas)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    values, vectors = torch.linalg.eigh(t)
    top = torch.stack(basis).T @ vectors[:, -1]
    return values, _unit(top)


def hutchinson_trace(
    hvp: HVP,
    dim: int,
    samples: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """tr H ≈ mean of vᵀHv over Rademacher v (E[vvᵀ] = I); each vᵀHv has variance 2Σ_{i≠j} H_ij²."""
    total = torch.zeros((), dtype=dtype, device=device)
    for _ in range(samples):
        v = torch.randint(0, 2, (dim,), generator=generator, device=device).to(dtype) * 2 - 1
        total = total + torch.dot(v, hvp(v))
    return total / samples
