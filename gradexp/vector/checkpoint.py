"""A group's checkpoints: one per member, in the member's own run dir, as its sequential run's
would be (checkpoints/step-NNNNNNNN.pt: its own parameters under their ordinary names, its rows
of the optimizer state, its data order, its History, its log sizes). A resumed group loads each
member's and goes on as one; a member resumed on its own is refused (no torch.optim state)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

from gradexp.durable.checkpoint import FOLDER, VERSION, Position, rng_state, set_rng_state, write
from gradexp.errors import ConfigError


def order_of(group, k: int) -> SimpleNamespace:
    """Member k's data-order generator, as a sequential run's Batches hold theirs."""
    u = int(group.batches.which[k])
    return SimpleNamespace(generator=group.batches.generators[u],
                           epoch_state=group.batches.epoch_states[u])  # fmt: skip


class GroupCheckpointer:
    """Every `every` steps (0: only when asked: a signal), after the group's flush."""

    def __init__(self, every: int, group, jobs, exps, histories, loggers):
        self.every, self.group = every, group
        self.jobs, self.exps, self.histories, self.loggers = jobs, exps, histories, loggers

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def save(self, position: Position) -> None:
        g = self.group
        alive = g.alive[:, 0].tolist()
        for k, (job, exp, history, logger) in enumerate(
            zip(self.jobs, self.exps, self.histories, self.loggers)
        ):
            state = {
                "version": VERSION, "position": asdict(position), "model": g.stack.member(k),
                "optimizer": {"vector": g.optimizer.member(k)}, "scheduler": None,
                "rng": rng_state(order_of(g, k)), "history": history.state(),
                "logs": logger.sizes(), "tags": sorted(logger.tags), "config": exp.config,
                "probes": [p.member_state(k) for p in g.probes],
                "vector": {"alive": alive[k], "examples": g.examples[k]},
            }  # fmt: skip
            write(Path(job.run_dir) / FOLDER, position.step, state)


def restore(group, saved: list[dict], histories) -> Position:
    """Every member's saved state into the group; they must all stand at one position."""
    steps = {s["position"]["step"] for s in saved}
    if len(steps) != 1:
        why = f"the members' checkpoints are at different steps {sorted(steps)}"
        raise ConfigError("resume", "true", f"{why}; resume them with the launcher that made them")
    position = Position(**saved[0]["position"])
    per_epoch = group.batches.steps_per_epoch
    for k, (state, history) in enumerate(zip(saved, histories)):
        if "vector" not in state:
            raise ConfigError("resume", "true", f"{state.get('path')} was written by a run of its "
                              "own, not by a vectorised group; resume it without "
                              "hydra/launcher=vectorized")  # fmt: skip
        group.stack.load_member(k, state["model"])
        group.optimizer.load_member(k, state["optimizer"]["vector"])
        set_rng_state(state["rng"], order_of(group, k),
                      mid_epoch=0 < position.batch < per_epoch)  # fmt: skip
        history.load_state(state["history"])
        for probe, probe_state in zip(group.probes, state.get("probes", [])):
            probe.load_member(k, probe_state)
        group.alive[k, 0] = bool(state["vector"]["alive"])
        group.examples[k] = state["vector"]["examples"]
    return position
