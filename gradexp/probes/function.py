"""model=function: autograd, symbolic (SymPy) and finite-difference gradients side by side, the
path's coordinates every step, and the path over the contour plot at the end."""

from __future__ import annotations

import numpy as np
import sympy
import torch
from torch import Tensor, nn

from gradexp.errors import ConfigError, check_number
from gradexp.function import FunctionModel, evaluate
from gradexp.probes.schedule import Scheduled


class FunctionGradients(Scheduled):
    """function/value, function/<var>, function/grad_{autograd,symbolic,fd}/<var> and the largest
    differences function/grad_error_symbolic = max|autograd − symbolic| and
    function/grad_error_fd = max|autograd − finite difference|. The symbolic and difference
    gradients are of J = f + λ‖θ‖², in float64; differences are central with step h."""

    STATE = ("path", "step", "optimizer")  # the path since the start, for the plot

    def __init__(
        self,
        every: int | str = 1,
        h: float = 1e-6,
        plot: bool = True,
        per_decade: int = 10,
        *,
        data=None,
        l2: float = 0.0,
    ):
        super().__init__(every, per_decade)
        check_number("h", h, low=0)
        if not isinstance(plot, bool):
            raise ConfigError("plot", repr(plot), "must be true or false")
        self.h, self.plot, self.l2 = float(h), plot, l2
        self.model: FunctionModel | None = None
        self.path: list[tuple[int, Tensor]] = []  # (step, θ before that step's update)
        self.step, self.optimizer = 0, ""

    def due(self, step: int) -> bool:
        self.step = step  # the loop asks every step: the last one asked is the run's last step
        return super().due(step)

    def check(self, model: nn.Module) -> None:
        if not isinstance(model, FunctionModel):
            raise ConfigError("model", type(model).__name__, "not a formula: this probe needs "
                              "model=function (or parabola, quadratic, rosenbrock)")  # fmt: skip

    def __call__(self, *, model: nn.Module, micro, loss_fn, optimizer) -> dict[str, Tensor]:
        self.optimizer = f"{type(optimizer).__name__}(lr={optimizer.param_groups[0]['lr']:g})"
        if self.model is None:
            self.model = model
            self.partials = [sympy.diff(model.expression, s) for s in model.symbols]
        names = model.variables
        theta = torch.stack([getattr(model, n).detach() for n in names]).double()
        self.path.append((self.step, theta))
        at = dict(zip(model.symbols, theta))
        with torch.no_grad():
            value = evaluate(model.expression, at)
            symbolic = torch.stack([evaluate(d, at) for d in self.partials]) + 2 * self.l2 * theta
            fd = torch.stack([self._difference(model, theta, i) for i in range(len(names))])
        auto = torch.stack([getattr(model, n).grad for n in names]).double()
        out = {"function/value": value}
        for i, n in enumerate(names):
            out[f"function/{n}"] = theta[i]
            out[f"function/grad_autograd/{n}"] = auto[i]
            out[f"function/grad_symbolic/{n}"] = symbolic[i]
            out[f"function/grad_fd/{n}"] = fd[i]
        out["function/grad_error_symbolic"] = (auto - symbolic).abs().max()
        out["function/grad_error_fd"] = (auto - fd).abs().max()
        return out

    def _difference(self, model: FunctionModel, theta: Tensor, i: int) -> Tensor:
        def j(point: Tensor) -> Tensor:
            f = evaluate(model.expression, dict(zip(model.symbols, point)))
            return f + self.l2 * point.square().sum()

        e = torch.zeros_like(theta)
        e[i] = self.h
        return (j(theta + e) - j(theta - e)) / (2 * self.h)

    def finish(self, run_dir, logger, steps: int, model=None) -> dict:
        """The path over the contour plot: trajectory.png and an image. `steps` is where the run
        stopped (a diverged run may have gone on until the next flush noticed)."""
        if self.model is None and isinstance(model, FunctionModel) and self.path:
            self.model = model  # a run resumed at its last step: no call since the resume
        if not self.plot or self.model is None:
            return {}
        from gradexp.probes.contour import draw, to_rgb

        m = self.model
        points = [theta for s, theta in self.path if s <= steps + 1]  # + 1: θ after the last step
        if len(points) == len([s for s, _ in self.path if s <= steps]):
            points.append(torch.stack([getattr(m, n).detach() for n in m.variables]).double())
        path = torch.stack(points).cpu().numpy()
        with torch.no_grad():
            at = [dict(zip(m.symbols, torch.as_tensor(p))) for p in path]
            values = np.array([float(evaluate(m.expression, a)) for a in at])
        title = f"f = {sympy.sstr(m.expression)}\n{self.optimizer}, {steps} steps from ● to ★"
        fig = draw(m.expression, m.symbols, path, values, title)
        fig.savefig(run_dir / "trajectory.png")
        logger.image("function/trajectory", to_rgb(fig), steps)
        return {
            "function": {
                "start": dict(zip(m.variables, path[0].tolist())),
                "end": dict(zip(m.variables, path[-1].tolist())),
                "value": float(values[-1]),
                "plot": "trajectory.png",
            }
        }
