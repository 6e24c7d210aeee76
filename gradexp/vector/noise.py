"""The gradient-noise probe measured on a vectorised group: every member's per-sample gradient
norms from one batched forward and backward (the hooks route of gradexp.probes.persample, with a
member axis: the weight gradient of sample i is δ_i a_iᵀ, so ‖δ_i a_iᵀ‖² = ‖δ_i‖²‖a_i‖²), its
full-batch gradient G by one more backward over the training set, and the run's own statistics
(gradexp.probes.noise.noise_stats) vmapped over the members."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import vmap

from gradexp.probes.noise import Noise, noise_stats
from gradexp.vector.stack import forward, losses

ROWS_ELEMENTS = 2**25  # the full-batch gradient's activations: members × rows × width per chunk


def sample_norms(g, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """([K, n] ‖∇J_i‖² of every member's samples, [K, P] each member's batch gradient ∇J),
    J_i = loss_i + λ_k‖θ_k‖², as gradexp.probes.persample.linear_sample_norms per member."""
    kept = []
    out = forward(g.model, g.stack, x, kept)
    j = torch.where(g.alive[:, 0], losses(g.loss_fn, out, y), 0)  # a frozen NaN stays its own
    deltas = torch.autograd.grad(j.sum(), [z for _, _, z in kept])
    n = x.shape[1]
    lam = None if g.l2 is None else g.l2[:, None, None]
    sq, mean = 0, {}
    for (name, a, _), d in zip(kept, deltas):
        d = d * n  # the mean loss scales each sample's output gradient by 1/n
        d2 = d.square().sum(2)
        sq = sq + d2 * a.square().sum(2)
        mean[f"{name}.weight"] = torch.matmul(d.transpose(1, 2), a) / n  # a: [K or 1, n, in]
        bias = g.stack.params.get(f"{name}.bias")
        if bias is not None:
            sq, mean[f"{name}.bias"] = sq + d2, d.mean(1)
        if lam is not None:  # ‖g_i + c‖² = ‖g_i‖² + 2⟨g_i, c⟩ + ‖c‖², c = 2λθ for every i
            cw = 2 * lam * g.stack.params[f"{name}.weight"].detach()
            sq = (
                sq
                + 2 * (torch.matmul(a, cw.transpose(1, 2)) * d).sum(2)
                + cw.square().sum((1, 2))[:, None]
            )
            mean[f"{name}.weight"] = mean[f"{name}.weight"] + cw
            if bias is not None:
                cb = 2 * lam[:, :, 0] * bias.detach()
                sq = sq + 2 * (d * cb[:, None]).sum(2) + cb.square().sum(1)[:, None]
                mean[f"{name}.bias"] = mean[f"{name}.bias"] + cb
    return sq.detach(), torch.cat([mean[p].detach().flatten(1) for p in g.stack.names], dim=1)


def full_gradient(g, x: Tensor, y: Tensor) -> Tensor:
    """[K, P]: each member's ∇J over the whole training set (x: [n, …], shared), in chunks of
    rows whose activations stay near ROWS_ELEMENTS, each weighted by its share of the mean."""
    params = list(g.stack.params.values())
    n, k = x.shape[0], g.stack.members
    size = max(1, ROWS_ELEMENTS // max(k * max(g.widest, 1), 1))
    total = None
    for a in range(0, n, size):
        out = forward(g.model, g.stack, x[None, a : a + size])
        j = losses(g.loss_fn, out, y[None, a : a + size]) * (min(n, a + size) - a) / n
        if g.l2 is not None and a == 0:
            j = j + g.l2 * sum(p.square().flatten(1).sum(1) for p in params)
        j = torch.where(g.alive[:, 0], j, 0)
        grads = torch.autograd.grad(j.sum(), params)
        part = torch.cat([gr.flatten(1) for gr in grads], dim=1)
        total = part if total is None else total + part
    return total


class StackedNoise:
    """gradexp.probes.noise.Noise for K members: the same schedule, batch, refresh of G every
    `full_every` steps and tags. Any method (hooks, vmap, auto) is measured by the hooks route
    here: the stack is nn.Linear layers only, and vmap's per-sample gradients have the same
    norms in another rounding."""

    def __init__(self, probe: Noise, k: int, device):
        self.probe, self.k, self.device = probe, k, device
        self.full: Tensor | None = None  # [K, P]: each member's latest G
        self.step = 0

    def due(self, step: int) -> bool:
        self.step = step
        return self.probe.due(step)

    def member_state(self, k: int) -> dict:
        """Member k's G and step, as its own run's Noise.state_dict() holds them."""
        return {"full": None if self.full is None else self.full[k].clone(), "step": self.step}

    def load_member(self, k: int, state: dict) -> None:
        self.step = state.get("step", 0)
        full = state.get("full")
        if full is None:
            return
        if self.full is None:  # rows not restored yet are overwritten by their own states
            self.full = torch.zeros(self.k, full.numel(), dtype=full.dtype, device=self.device)
        self.full[k] = full.to(self.full)

    def __call__(self, g, micro, lrs) -> dict[str, Tensor]:
        if len(micro) == 1:
            x, y = micro[0]
        else:  # the update's micro-batches as one batch, as gradexp.probes.objective.whole_batch
            x, y = torch.cat([x for x, _ in micro], dim=1), torch.cat([y for _, y in micro], dim=1)
        sq, mean = sample_norms(g, x, y)
        every = self.probe.full_every
        fresh = every is not None and (self.full is None or self.step % every == 0)
        if fresh:
            self.full = full_gradient(g, *g.train_set[:2]).detach()
        if self.full is None:
            out = vmap(lambda s, m: noise_stats(s, m, None))(sq, mean)
        else:
            out = vmap(noise_stats)(sq, mean, self.full)
        if not fresh:
            out.pop("noise/cosine_to_full", None)
        return out
