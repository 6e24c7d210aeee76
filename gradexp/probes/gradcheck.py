"""Gradient check on a real model: autograd against central finite differences, in float64."""

from __future__ import annotations

import copy
import logging

import torch
from torch import Tensor, nn

from gradexp.errors import check_number
from gradexp.probes.objective import flat, objective, trainable, unflat, whole_batch
from gradexp.probes.schedule import Scheduled

log = logging.getLogger("gradexp")


class GradCheck(Scheduled):
    """gradcheck/max_rel_error and gradcheck/max_abs_error over `coords` coordinates of θ drawn
    at random (seeded) each time: |a − f| / (max(|a|, |f|) + atol) with a the autograd and f the
    central-difference derivative (J(θ + h·e) − J(θ − h·e)) / 2h of a float64 copy of the model
    (float32 differences err by up to 0.58 here). At the end of the run the worst error is
    checked against `tol`, and a failure is logged loudly and put in summary.json."""

    STATE = ("generator", "at", "step")  # the coordinates drawn next, and every error so far

    def __init__(
        self,
        every: int | str = 100,
        coords: int = 20,
        h: float = 1e-6,
        tol: float = 1e-4,
        atol: float = 1e-10,
        per_decade: int = 10,
        *,
        data=None,
        l2=0.0,
    ):
        super().__init__(every, per_decade)
        check_number("coords", coords, low=1, integer=True, strict=False)
        for key, value in (("h", h), ("tol", tol)):
            check_number(key, value, low=0)
        check_number("atol", atol, low=0, strict=False)
        self.coords, self.h, self.tol, self.atol, self.l2 = coords, h, tol, atol, l2
        self.generator, self.worst, self.step, self.at = None, None, 0, []

    def due(self, step: int) -> bool:
        self.step = step
        return super().due(step)

    def __call__(self, *, model: nn.Module, micro, loss_fn, optimizer) -> dict[str, Tensor]:
        x, y = (t.double() if t.is_floating_point() else t for t in whole_batch(micro))
        twin = copy.deepcopy(model).double()
        loss64 = copy.deepcopy(loss_fn).double()
        params = trainable(twin)
        shapes = [p.shape for p in params.values()]
        theta = flat(p.detach() for p in params.values())
        loss = objective(twin, loss64, x, y, self.l2)
        auto = flat(torch.autograd.grad(loss, list(params.values())))
        if self.generator is None:  # on the host: the indices are ours, not the device's
            self.generator = torch.Generator().manual_seed(0)
        pick = torch.randperm(theta.numel(), generator=self.generator)[: self.coords]
        fd = torch.empty(len(pick), dtype=theta.dtype, device=theta.device)
        with torch.no_grad():
            for k, j in enumerate(pick.tolist()):
                values = []
                for sign in (1, -1):
                    shifted = theta.clone()
                    shifted[j] += sign * self.h
                    point = dict(zip(params, unflat(shifted, shapes)))
                    values.append(objective(twin, loss64, x, y, self.l2, point))
                fd[k] = (values[0] - values[1]) / (2 * self.h)
        a = auto[pick.to(theta.device)]
        abs_err = (a - fd).abs()
        rel = abs_err / (torch.maximum(a.abs(), fd.abs()) + self.atol)
        worst = rel.max()
        self.at.append((self.step, worst))
        h = torch.tensor(self.h, dtype=worst.dtype, device=worst.device)
        return {
            "gradcheck/max_rel_error": worst,
            "gradcheck/max_abs_error": abs_err.max(),
            "gradcheck/h": h,
        }

    def finish(self, run_dir, logger, steps: int, model=None) -> dict:
        """One host copy at the end: did autograd and finite differences agree throughout?"""
        self.at = [(s, e) for s, e in self.at if s <= steps]
        if not self.at:
            return {}
        errors = torch.stack([e for _, e in self.at]).cpu().tolist()
        i = max(range(len(errors)), key=errors.__getitem__)
        passed = errors[i] <= self.tol
        if not passed:
            log.warning(
                "gradexp: GRADIENT CHECK FAILED: autograd and finite differences differ by "
                "a relative %.3g > tol=%g at step %d (h=%g)",
                errors[i],
                self.tol,
                self.at[i][0],
                self.h,
            )
        return {
            "gradcheck": {
                "passed": passed,
                "max_rel_error": errors[i],
                "step": self.at[i][0],
                "tol": self.tol,
                "h": self.h,
            }
        }
