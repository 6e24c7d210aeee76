"""The training loop: zero_grad → forward → loss → backward → probes → step. Plain torch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from gradexp.batches import Batches, Micro
from gradexp.durable.checkpoint import Checkpointer, Position
from gradexp.durable.signals import StopSignals
from gradexp.probes import Probe
from gradexp.probes.norms import snapshot, step_row, update_stats
from gradexp.record.history import History
from gradexp.record.stops import blown_parameters


@dataclass
class Plan:
    """How long the loop runs and how it measures: the run-level knobs it reads."""

    epochs: int
    max_steps: float = math.inf
    log_every: int = 10
    eval_every: int | None = None  # None: evaluate at every epoch's end
    flush_secs: float = 2.0
    l2: float = 0.0
    time_limit: float | None = None
    sync_every_log: bool = False  # flush at every logged step (stop rules need the values)


@dataclass
class Outcome:
    status: str  # ok | diverged | interrupted
    stop_reason: str  # epochs | max_steps | time_limit | grad_tol | loss_tol | diverged | signal
    message: str
    steps: int
    examples: int


def forward_backward(
    model: nn.Module, loss_fn: nn.Module, micro: Micro, params: list[Tensor], l2: float
) -> tuple[Tensor, Tensor | None]:
    """Data loss and λ‖θ‖² for one update. Micro-batch losses are weighted by their share of the
    update, so the accumulated gradient is the gradient of the concatenated batch."""
    if len(micro) == 1:
        x, y = micro[0]
        loss = loss_fn(model(x), y)
        loss.backward()
        loss = loss.detach()
    else:
        n = sum(x.shape[0] for x, _ in micro)
        loss = 0.0
        for x, y in micro:
            part = loss_fn(model(x), y) * (x.shape[0] / n)
            part.backward()
            loss = loss + part.detach()
    penalty = None
    if l2:
        penalty = l2 * sum(p.square().sum() for p in params)
        penalty.backward()
        penalty = penalty.detach()
    return loss, penalty


@torch.no_grad()
def evaluate(
    model: nn.Module, loss_fn: nn.Module, x: Tensor, target: Tensor, labels: Tensor | None
) -> dict[str, Tensor]:
    """Loss (and accuracy, for class labels) on held-out data, as 0-d tensors."""
    model.eval()
    out = model(x)
    values = {"eval/loss": loss_fn(out, target)}
    if labels is not None:
        values["eval/accuracy"] = (out.argmax(1) == labels).double().mean()
    model.train()
    return values


def train(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    batches: Batches,
    history: History,
    plan: Plan,
    *,
    evaluate: Callable[[], dict[str, Tensor]] | None = None,
    final: Callable[[], dict[str, Tensor]] | None = None,
    probes: Sequence[Probe] = (),
    progress=None,
    checkpoint: Checkpointer | None = None,
    start: Position | None = None,
    interrupt: StopSignals | None = None,
) -> Outcome:
    params = [p for p in model.parameters() if p.requires_grad]
    per_epoch = batches.steps_per_epoch
    at = replace(start) if start else Position()  # a resumed run starts at its checkpoint
    flushes = Flushes(history, plan, on_cpu=all(p.device.type == "cpu" for p in params))
    shown, reason = at.step, "epochs" if at.step < plan.max_steps else "max_steps"
    if at.step == 0:  # step 0: the loss at θ₀ on the training set (f(θ₀)) and held out
        start = {"train/loss": final()["final/train_loss"]} if final else {}
        history.point(0, start | (evaluate() if evaluate else {}) | {"time": history.elapsed()})
    model.train()
    for epoch, i, micro in updates(batches, at, plan.epochs if reason == "epochs" else 0):
        at.step += 1
        step = at.step
        last = step >= plan.max_steps or (epoch == plan.epochs and i == per_epoch)
        logged = step % plan.log_every == 0 or last
        optimizer.zero_grad(set_to_none=True)
        loss, penalty = forward_backward(model, loss_fn, micro, params, plan.l2)
        row = step_row(loss, penalty, [p.grad for p in params])
        measured = measure(probes, step, model=model, micro=micro, loss_fn=loss_fn,
                           optimizer=optimizer)  # fmt: skip
        lr = optimizer.param_groups[0]["lr"]
        before = snapshot(params) if logged else None
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        at.epoch, at.batch = epoch, i
        at.examples += sum(x.shape[0] for x, _ in micro)
        history.record(step, lr, row)
        if measured:
            history.point(step, measured)
        evaluations(history, evaluate, plan, at, epoch_end=i == per_epoch)
        if logged:
            epochs = epoch - 1 + i / per_epoch
            history.point(step, {**update_stats(before, params), "train/lr": lr,
                                 "train/epoch": epochs, "train/examples": at.examples,
                                 "time": history.elapsed()})  # fmt: skip
            shown = show(progress, step, shown)
            if flushes.logged(loss) is not None:
                break
            if plan.time_limit is not None and history.elapsed() >= plan.time_limit:
                reason = "time_limit"
                break
        if checkpoint is not None and (checkpoint.due(step) or interrupted(interrupt)):
            if flushes.now() is not None:  # the checkpoint and the logs then hold the same steps
                break
            checkpoint.save(replace(at))
        if interrupted(interrupt):
            reason = "signal"
            break
        if step >= plan.max_steps:
            reason = "max_steps"
            break
    return ending(history, (evaluate, final, params), plan, at, reason, flushes.stop, interrupt)


def updates(batches: Batches, at: Position, epochs: int) -> Iterator[tuple[int, int, Micro]]:
    """(epoch, update number in the epoch, micro-batches) of each update after position `at`.
    An epoch's permutation is drawn when its first update is asked for, not before."""
    per_epoch = batches.steps_per_epoch
    skip, first = (at.batch, at.epoch) if at.batch < per_epoch else (0, at.epoch + 1)
    for epoch in range(first, epochs + 1):
        for i, micro in enumerate(batches.epoch(skip), start=skip + 1):
            yield epoch, i, micro
        skip = 0


def measure(probes: Sequence[Probe], step: int, **what) -> dict[str, Tensor]:
    """The probes due at this step, between backward() and step(): their 0-d tensors."""
    measured = {}
    for probe in probes:
        if probe.due(step):
            measured |= probe(**what)
    return measured


def evaluations(history, evaluate, plan: Plan, at: Position, epoch_end: bool) -> None:
    """Every eval_every steps, or (without it) at the epoch's end, where the epoch/* series get
    the held-out values too."""
    if evaluate and plan.eval_every and at.step % plan.eval_every == 0:
        history.point(at.step, evaluate() | {"time": history.elapsed()})
        at.evaluated = at.step
    if epoch_end:
        extra = {}
        if evaluate and not plan.eval_every:
            values = evaluate()
            history.point(at.step, values | {"time": history.elapsed()})
            at.evaluated = at.step
            extra = {f"epoch/{k.replace('/', '_')}": v for k, v in values.items()}
        history.end_epoch(at.epoch, at.step, extra)


class Flushes:
    """When logged values go to the host: every flush_secs, at every logged step when a stop
    rule needs them, and at once when the loss is NaN on the CPU (reading it costs nothing
    there; on a GPU it would be a device sync per logged step)."""

    def __init__(self, history: History, plan: Plan, on_cpu: bool):
        self.history, self.plan, self.on_cpu = history, plan, on_cpu
        self.last, self.stop = time.perf_counter(), None

    def logged(self, loss: Tensor):
        blown = self.on_cpu and not math.isfinite(loss.item())
        if (
            self.plan.sync_every_log
            or blown
            or time.perf_counter() - self.last >= self.plan.flush_secs
        ):
            self.now()
        return self.stop

    def now(self):
        self.stop, self.last = self.history.flush(), time.perf_counter()
        return self.stop


def ending(history, measures, plan: Plan, at: Position, reason: str, stop, interrupt) -> Outcome:
    """The last flush, the final parameters evaluated on the held-out and on the whole training
    set (final/*: what summary.json reports), and how the run ended."""
    step, (evaluate, final, params) = at.step, measures
    if reason == "signal":
        history.flush()
        message = f"interrupted by {interrupt.name} at step {step}"
        return Outcome("interrupted", "signal", message, step, at.examples)
    norm = (
        torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params))).item() if params else 0.0
    )
    stop = stop or blown_parameters(step, norm)  # one host read, at the end
    if evaluate and stop is None and at.evaluated != step:
        history.point(step, evaluate() | {"time": history.elapsed()})
    if final and (stop is None or stop.reason != "diverged"):
        at_step, values = step if stop is None else stop.step, final()
        history.point(at_step, values)
        stop = stop or history.judge_final(at_step, values["final/train_loss"].item())
    stop = history.close(step) or stop
    if stop is not None:
        status = "diverged" if stop.reason == "diverged" else "ok"
        return Outcome(status, stop.reason, stop.message, stop.step, at.examples)
    message = {"epochs": f"{plan.epochs} epochs", "max_steps": f"max_steps={step}"}.get(
        reason, f"time limit {plan.time_limit}s reached"
    )
    return Outcome("ok", reason, f"finished: {message}", step, at.examples)


def show(progress, step: int, shown: int) -> int:
    if progress is not None:
        progress.update(step - shown)
    return step


def interrupted(interrupt: StopSignals | None) -> bool:
    return interrupt is not None and interrupt.received is not None
