"""How noisy the stochastic gradient is: per-sample gradient statistics of the update's batch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradexp.errors import ConfigError, check_choice, check_number
from gradexp.probes.objective import gradient, whole_batch
from gradexp.probes.persample import linear_only, linear_sample_norms, per_sample_grads
from gradexp.probes.schedule import Scheduled


def noise_stats(sq_norms: Tensor, mean: Tensor, full: Tensor | None) -> dict[str, Tensor]:
    """From ‖g_i‖² (n of them) and the batch mean gradient ḡ, with G the full-batch gradient
    if given:
      grad_variance  tr Σ = Σ‖g_i − ḡ‖²/(n−1) = (Σ‖g_i‖² − n‖ḡ‖²)/(n−1), unbiased;
      noise_scale    B_simple = tr Σ / ‖G‖² (McCandlish et al. 2018): the batch size at which
                     the noise in the step is as large as its signal;
      snr            ‖G‖² / (tr Σ / n), the signal-to-noise ratio of this batch's gradient;
      cosine_to_full cos(ḡ, G), how far the step's direction is from the true one.
    Without G, ‖G‖² is estimated without bias as ‖ḡ‖² − tr Σ / n (noisy; may be ≤ 0)."""
    n = sq_norms.shape[0]
    mean_sq = mean.square().sum()
    out = {}
    if n > 1:
        var = ((sq_norms.sum() - n * mean_sq) / (n - 1)).clamp_min(0)
        signal = mean_sq - var / n if full is None else full.square().sum()
        out = {
            "noise/grad_variance": var,
            "noise/noise_scale": var / signal,
            "noise/snr": signal / (var / n),
        }
    if full is not None:
        out["noise/cosine_to_full"] = torch.dot(mean, full) / (
            torch.linalg.vector_norm(mean) * torch.linalg.vector_norm(full)
        )
    return out


class Noise(Scheduled):
    """noise/grad_variance, noise/noise_scale, noise/snr and noise/cosine_to_full on the update's
    batch. method=vmap computes every per-sample gradient (torch.func, any model); hooks only
    their norms (nn.Linear-only models, about one extra step); auto picks hooks where it can.

    G, the gradient of the whole training set, costs a full-batch pass: it is recomputed on
    every `full_every`-th step (and the first time the probe runs); cosine_to_full is logged on
    those steps, and noise_scale and snr use the latest ‖G‖² (it changes slowly). With
    full_every=null, G is never computed and ‖G‖² is the batch's unbiased estimate."""

    STATE = ("full", "step")  # G, refreshed every full_every steps

    def __init__(self, every: int | str = 1, method: str = "auto", full_every: int | None = 10,
                 per_decade: int = 10, *, data=None, l2: float = 0.0):  # fmt: skip
        super().__init__(every, per_decade)
        check_choice("method", method, ("auto", "vmap", "hooks"))
        if full_every is not None:
            check_number("full_every", full_every, low=1, integer=True, strict=False)
        self.method, self.full_every, self.data, self.l2 = method, full_every, data, l2
        self.step, self.full = 0, None

    def due(self, step: int) -> bool:
        self.step = step
        return super().due(step)

    def check(self, model: nn.Module) -> None:
        """hooks needs every parameter in an nn.Linear (auto falls back to vmap)."""
        if self.method == "hooks" and not linear_only(model):
            raise ConfigError("method", "hooks", f"needs a model of nn.Linear layers only, not "
                              f"{type(model).__name__}; use auto or vmap")  # fmt: skip

    def __call__(self, *, model: nn.Module, micro, loss_fn, optimizer) -> dict[str, Tensor]:
        x, y = whole_batch(micro)
        hooks = self.method == "hooks" or (
            self.method == "auto" and x.ndim == 2 and linear_only(model)
        )
        if hooks:
            sq, mean = linear_sample_norms(model, loss_fn, x, y, self.l2)
        else:
            rows = per_sample_grads(model, loss_fn, x, y, self.l2)
            sq, mean = rows.square().sum(1), rows.mean(0)
        fresh = self.full_every is not None and (
            self.full is None or self.step % self.full_every == 0
        )
        if fresh:
            self.full = gradient(model, loss_fn, *self.data, self.l2).detach()
        out = noise_stats(sq, mean, self.full)
        if not fresh:
            out.pop("noise/cosine_to_full", None)
        return {k: v.detach() for k, v in out.items()}
