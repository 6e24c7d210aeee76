"""The training loop: zero_grad → forward → loss → backward → probes → step. Plain torch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradexp.batches import Batches, Micro
from gradexp.checkpoint import Checkpointer, Position
from gradexp.history import History
from gradexp.probes import Probe
from gradexp.probes.norms import snapshot, step_row, update_stats
from gradexp.signals import StopSignals


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
    *,
    epochs: int,
    max_steps: float,
    log_every: int,
    eval_every: int | None,
    evaluate: Callable[[], dict[str, Tensor]] | None,
    flush_secs: float,
    l2: float = 0.0,
    time_limit: float | None = None,
    sync_every_log: bool = False,
    probes: Sequence[Probe] = (),
    progress=None,
    checkpoint: Checkpointer | None = None,
    start: Position | None = None,
    interrupt: StopSignals | None = None,
) -> Outcome:
    params = [p for p in model.parameters() if p.requires_grad]
    per_epoch = batches.steps_per_epoch
    at = start or Position()  # a resumed run starts where its checkpoint stopped
    step, examples, evaluated, shown = at.step, at.examples, at.evaluated, at.step
    skip, first = (at.batch, at.epoch) if at.batch < per_epoch else (0, at.epoch + 1)
    stop, last_flush = None, time.perf_counter()
    reason, last = ("epochs", epochs) if step < max_steps else ("max_steps", 0)
    # Reading a value costs a device sync on a GPU but nothing on the CPU: there, look for
    # divergence at every logged step instead of running on in NaN until the next flush.
    on_cpu = all(p.device.type == "cpu" for p in params)
    model.train()
    for epoch in range(first, last + 1):
        for i, micro in enumerate(batches.epoch(skip), start=skip + 1):
            step += 1
            final = step >= max_steps or (epoch == epochs and i == per_epoch)
            logged = step % log_every == 0 or final
            optimizer.zero_grad(set_to_none=True)
            loss, penalty = forward_backward(model, loss_fn, micro, params, l2)
            row = step_row(loss, penalty, [p.grad for p in params])
            measured = {}
            for probe in probes:
                if probe.due(step):
                    measured |= probe(
                        model=model, micro=micro, loss_fn=loss_fn, optimizer=optimizer
                    )
            lr = optimizer.param_groups[0]["lr"]
            before = snapshot(params) if logged else None
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            examples += sum(x.shape[0] for x, _ in micro)
            history.record(step, lr, row)
            if measured:
                history.point(step, measured)
            if evaluate and eval_every and step % eval_every == 0:
                history.point(step, evaluate())
                evaluated = step
            if i == per_epoch:
                extra = {}
                if evaluate and not eval_every:
                    values = evaluate()
                    history.point(step, values)
                    evaluated = step
                    extra = {f"epoch/{k.replace('/', '_')}": v for k, v in values.items()}
                history.end_epoch(epoch, step, extra)
            if logged:
                history.point(step, {
                    **update_stats(before, params),
                    "train/lr": lr,
                    "train/epoch": epoch - 1 + i / per_epoch,
                    "train/examples": examples,
                    "time": history.elapsed(),
                })  # fmt: skip
                if progress is not None:
                    progress.update(step - shown)
                    shown = step
                now = time.perf_counter()
                blown = on_cpu and not math.isfinite(loss.item())
                if sync_every_log or blown or now - last_flush >= flush_secs:
                    stop, last_flush = history.flush(), now
                if stop is None and time_limit is not None and history.elapsed() >= time_limit:
                    reason = "time_limit"
                    break
                if stop is not None:
                    break
            if checkpoint is not None and (checkpoint.due(step) or interrupted(interrupt)):
                stop = history.flush()  # the checkpoint and the logs then hold the same steps
                if stop is not None:
                    break
                checkpoint.save(Position(step, epoch, i, examples, evaluated))
            if interrupted(interrupt):
                reason = "signal"
                break
            if step >= max_steps:
                reason = "max_steps"
                break
        else:
            skip = 0
            continue
        break
    if reason == "signal":
        history.flush()
        message = f"interrupted by {interrupt.name} at step {step}"
        return Outcome("interrupted", "signal", message, step, examples)
    if evaluate and stop is None and evaluated != step:
        history.point(step, evaluate())  # the final parameters are always evaluated
    stop = history.close(step) or stop
    if stop is not None:
        status = "diverged" if stop.reason == "diverged" else "ok"
        return Outcome(status, stop.reason, stop.message, stop.step, examples)
    message = {"epochs": f"{epochs} epochs", "max_steps": f"max_steps={step}"}.get(
        reason, f"time limit {time_limit}s reached"
    )
    return Outcome("ok", reason, f"finished: {message}", step, examples)


def interrupted(interrupt: StopSignals | None) -> bool:
    return interrupt is not None and interrupt.received is not None
