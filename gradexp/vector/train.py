"""The loop for K members at once: the same steps as gradexp.train, batched. A member whose loss
or gradient turns non-finite is frozen on the device after that step (its loss is then left out
of the backward pass: no NaN reaches another member); one whose History stops (a stop rule, the
divergence rule) is frozen at the flush that finds it, the step where its sequential run breaks;
the group ends when every member has."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from gradexp.durable.checkpoint import Position
from gradexp.record.stops import blown_parameters
from gradexp.train import Outcome, Plan, interrupted, show, updates
from gradexp.vector import backprop
from gradexp.vector.evaluate import measure, update_stats
from gradexp.vector.record import GroupRecord
from gradexp.vector.stack import chunks, forward, losses, pick


@dataclass
class Group:
    """What a group trains: the stacked members and everything they share."""

    model: torch.nn.Module  # member 0's: the architecture (its own parameters are not used)
    loss_fn: torch.nn.Module
    stack: object  # Stack
    batches: object  # VectorBatches
    optimizer: object  # VectorOptimizer
    lrs: np.ndarray  # [steps, K]: each member's learning rate at each step
    l2: Tensor | None  # [K] or None when no member has an L2 term
    held_out: tuple | None  # (x, target, labels) of the eval split
    train_set: tuple  # (x, target, labels) of the training split, for final/*
    alive: Tensor  # [K, 1] bool: members still being trained
    examples: list  # per member: examples seen when it was frozen by its History (or None)
    probes: list = field(default_factory=list)  # gradexp.vector.probes: measured on the stack
    widest: int = 0  # the widest layer's width (inputs included): what a member's batch occupies
    written_out: bool = False  # the step's backward by gradexp.vector.backprop, not autograd


def forward_backward(g: Group, micro, alive: Tensor) -> tuple[Tensor, Tensor | None]:
    """Each member's loss and λ‖θ‖² for one update ([K] each); a frozen member's loss is left
    out of the backward pass (an exact 0 at its outputs: its own gradient rows are 0, or NaN
    where its parameters are), so nothing of it reaches the others. The gradient buffer is
    zeroed here, but where the written-out step of one micro-batch writes every row of it."""
    write = g.written_out and len(micro) == 1
    if not write:
        g.stack.grad.zero_()
    n = sum(x.shape[1] for x, _ in micro)
    loss = 0.0
    for x, y in micro:
        parts = []
        share = 1.0 if len(micro) == 1 else x.shape[1] / n
        for rows, members in chunks(g, x.shape[1]):
            if g.written_out:  # gradexp.vector.backprop: the chain rule without autograd
                weight = pick(alive, rows)[:, 0].to(g.stack.flat.dtype) * share  # 0: frozen
                grads = {k: pick(p.grad, rows) for k, p in g.stack.params.items()}
                part = backprop.forward_backward(g.model, members.params, grads, g.loss_fn,
                                                 pick(x, rows), pick(y, rows), weight,
                                                 write)  # fmt: skip
                parts.append(part if len(micro) == 1 else part * share)
                continue
            part = losses(g.loss_fn, forward(g.model, members, pick(x, rows)), pick(y, rows))
            part = part if len(micro) == 1 else part * share
            torch.where(pick(alive, rows)[:, 0], part, 0).sum().backward()
            parts.append(part.detach())
        loss = loss + (parts[0] if len(parts) == 1 else torch.cat(parts))
    penalty = None
    if g.l2 is not None:
        penalty = g.l2 * sum(p.square().flatten(1).sum(1) for p in g.stack.params.values())
        torch.where(alive[:, 0], penalty, 0).sum().backward()
        penalty = penalty.detach()
    return loss, penalty


def train_group(g: Group, record: GroupRecord, plan: Plan, *, progress=None, checkpoint=None,
                start: Position | None = None, interrupt=None) -> list[Outcome]:  # fmt: skip
    per_epoch = g.batches.steps_per_epoch
    at = replace(start) if start else Position()
    lrs = torch.as_tensor(g.lrs, dtype=torch.float64, device=g.stack.flat.device)
    flushes = GroupFlushes(g, record, plan, on_cpu=g.stack.flat.device.type == "cpu")
    shown, reason = at.step, "epochs" if at.step < plan.max_steps else "max_steps"
    if at.step == 0:  # step 0, as gradexp.train.train logs it: where each member's curves start
        held_out = measure(g, g.held_out, "eval") if g.held_out is not None else {}
        record.point(0, {"train/loss": measure(g, g.train_set, "x")["x/loss"], **held_out,
                         "time": record.elapsed()})  # fmt: skip
    for epoch, i, micro in updates(g.batches, at, plan.epochs if reason == "epochs" else 0):
        at.step += 1
        step = at.step
        last = step >= plan.max_steps or (epoch == plan.epochs and i == per_epoch)
        logged = step % plan.log_every == 0 or last
        loss, penalty = forward_backward(g, micro, g.alive)
        row = [
            loss,
            *([penalty] if penalty is not None else []),
            *g.stack.layer_norms(g.stack.grad),
        ]
        measured = {}
        for probe in g.probes:  # before the step, at θ_t, as gradexp.train.measure
            if probe.due(step):
                measured |= probe(g, micro, g.lrs[step - 1])  # host float64 lrs: no sync
        before = g.stack.flat.clone() if logged else None
        g.optimizer.step(g.stack.flat, g.stack.grad, lrs[step - 1, :, None], g.alive)
        # A non-finite row freezes its member from here: this step is taken as its own run
        # takes it (into NaN, as that run does), and nothing more.
        g.alive = g.alive & torch.isfinite(torch.stack(row)).all(0)[:, None]
        at.epoch, at.batch = epoch, i
        at.examples += sum(x.shape[1] for x, _ in micro)
        record.record(step, g.lrs[step - 1], row)
        if measured:
            record.point(step, measured)
        evaluations(g, record, plan, at, epoch_end=i == per_epoch)
        if logged:
            epochs = epoch - 1 + i / per_epoch
            record.point(step, {**update_stats(g.stack, before), "train/lr": g.lrs[step - 1],
                                "train/epoch": epochs, "train/examples": at.examples,
                                "time": record.elapsed()})  # fmt: skip
            shown = show(progress, step, shown)
            if flushes.logged(loss, at):
                break
            if plan.time_limit is not None and record.elapsed() >= plan.time_limit:
                reason = "time_limit"
                break
        if checkpoint is not None and (checkpoint.due(step) or interrupted(interrupt)):
            if flushes.now(at):  # every member stopped
                break
            checkpoint.save(replace(at))
        if interrupted(interrupt):
            reason = "signal"
            break
        if step >= plan.max_steps:
            reason = "max_steps"
            break
    return ending(g, record, plan, at, reason, interrupt)


def evaluations(g: Group, record: GroupRecord, plan: Plan, at: Position, epoch_end: bool):
    if g.held_out is not None and plan.eval_every and at.step % plan.eval_every == 0:
        record.point(at.step, measure(g, g.held_out, "eval") | {"time": record.elapsed()})
        at.evaluated = at.step
    if epoch_end:
        extra = {}
        if g.held_out is not None and not plan.eval_every:
            values = measure(g, g.held_out, "eval")
            record.point(at.step, values | {"time": record.elapsed()})
            at.evaluated = at.step
            extra = {f"epoch/{k.replace('/', '_')}": v for k, v in values.items()}
        record.end_epoch(at.epoch, at.step, extra)


class GroupFlushes:
    """When the group's values go to the host (as gradexp.train.Flushes decides for one run),
    and the members each flush finds stopped, frozen from then on."""

    def __init__(self, g: Group, record: GroupRecord, plan: Plan, on_cpu: bool):
        self.g, self.record, self.plan, self.on_cpu = g, record, plan, on_cpu
        self.last = time.perf_counter()

    def logged(self, loss: Tensor, at: Position) -> bool:
        blown = self.on_cpu and bool((~torch.isfinite(loss) & self.g.alive[:, 0]).any())
        due = time.perf_counter() - self.last >= self.plan.flush_secs
        return self.now(at) if self.plan.sync_every_log or blown or due else False

    def now(self, at: Position) -> bool:
        """Flush; True once every member has stopped."""
        stops = self.record.flush()
        self.last = time.perf_counter()
        fresh = [k for k, s in enumerate(stops) if s is not None and self.g.examples[k] is None]
        for k in fresh:
            self.g.examples[k] = at.examples
        if fresh:
            keep = torch.tensor([[s is None] for s in stops], device=self.g.alive.device)
            self.g.alive = self.g.alive & keep
        return all(s is not None for s in stops)


def ending(g: Group, record: GroupRecord, plan: Plan, at: Position, reason: str, interrupt):
    """The last flush, the final parameters evaluated, and how each member ended: what
    gradexp.train.ending does for one run, member by member, in one last flush for all."""
    step, members = at.step, record.members
    if reason == "signal":  # members that had stopped end as their own runs did: with final/*
        stops = record.flush()
        if any(s is not None and s.reason != "diverged" for s in stops):
            final = {t: v.tolist() for t, v in final_values(g).items()}
            ended = [k for k, s in enumerate(stops) if s and s.reason != "diverged"]
            record.flush({k: [(stops[k].step, {t: v[k] for t, v in final.items()})]
                          for k in ended})  # fmt: skip
        message = f"interrupted by {interrupt.name} at step {step}"
        return [outcome(s, g.examples[k], at) or Outcome("interrupted", "signal", message, step,
                at.examples) for k, s in enumerate(stops)]  # fmt: skip
    norms = torch.linalg.vector_norm(torch.stack(g.stack.layer_norms(g.stack.flat)), dim=0)
    ends = [h.stopped or blown_parameters(step, n) for h, n in zip(members, norms.tolist())]
    if g.held_out is not None and at.evaluated != step:
        record.point(step, measure(g, g.held_out, "eval") | {"time": record.elapsed()})
    final = {t: v.tolist() for t, v in final_values(g).items()}
    extra = {}
    for k, (history, stop) in enumerate(zip(members, ends)):
        if stop is None or stop.reason != "diverged":
            at_step = step if stop is None else stop.step
            extra[k] = [(at_step, {t: v[k] for t, v in final.items()})]
            ends[k] = stop or history.judge_final(at_step, final["final/train_loss"][k])
    ends = [s or e for s, e in zip(record.close(step, extra), ends)]
    done = {"epochs": f"{plan.epochs} epochs", "max_steps": f"max_steps={step}"}.get(
        reason, f"time limit {plan.time_limit}s reached")  # fmt: skip
    return [outcome(e, g.examples[k], at) or Outcome("ok", reason, f"finished: {done}", step,
            at.examples) for k, e in enumerate(ends)]  # fmt: skip


def final_values(g: Group) -> dict[str, Tensor]:
    """final/* for every member: its final parameters on the whole training set."""
    values = {f"final/train_{k.split('/')[1]}": v for k, v in measure(g, g.train_set, "x").items()}
    if g.l2 is not None:
        with torch.no_grad():
            values["final/train_l2"] = g.l2 * sum(p.square().flatten(1).sum(1)
                                                  for p in g.stack.params.values())  # fmt: skip
    return values


def outcome(stop, examples, at: Position) -> Outcome | None:
    if stop is None:
        return None
    status = "diverged" if stop.reason == "diverged" else "ok"
    seen = at.examples if examples is None else examples
    return Outcome(status, stop.reason, stop.message, stop.step, seen)
