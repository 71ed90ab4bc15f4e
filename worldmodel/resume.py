"""What a checkpoint holds, and how a run continues from one.

A checkpoint (worldmodel/checkpoint.py writes it) is everything a run needs except the
envs and the replay's full chunks (those are in <logdir>/replay/, see replay.py):

  agent      world model, planner (actor, critic, their optimizers, return norm), counters
  shield     the shield's state, when rules are on
  counters   env steps, episodes, update credit, shield counters
  rng        torch, numpy (random prefill actions), the replay sampler
  replay     per-lane step counts and the partial chunk in flight
  pending    terminal observations the env returned but the loop had not stored yet
  config     the resolved config (also in <logdir>/config.yaml)

Envs cannot be snapshotted: on resume they restart, reseeded from (seed, step), so the
episodes in flight at the crash are cut short in replay (no is_last) and begin again.
Logs (JSONL) and replay chunks written after the checkpoint are dropped: the env steps
that produced them run again, so nothing is counted twice.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from worldmodel import checkpoint
from worldmodel.logger import rewind_jsonl
from worldmodel.replay import Replay

if TYPE_CHECKING:
    from envs.driver import Step
    from worldmodel.trainer import Trainer


def resume_seed(seed: int, step: int) -> int:
    """Env seed after a resume at `step`: deterministic, and different from the first run's."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def transition(step: "Step", action: np.ndarray, cost: np.ndarray,
               allowed: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The replay record of one step dict; the action at an episode's last obs is never
    executed, so zeros are stored there. `allowed` (L, A) bool: the shield's verdict per
    action at this obs, when the replay keeps it."""
    stored = np.where(step.is_last[:, None], 0.0, action).astype(np.float32)
    record = {**step.obs, "action": stored, "reward": step.reward, "is_first": step.is_first,
              "is_last": step.is_last, "is_terminal": step.is_terminal, "cost": cost}
    if allowed is not None:
        record["allowed"] = np.asarray(allowed, bool) | step.is_last[:, None]
    return record


def state_dict(trainer: "Trainer") -> dict[str, Any]:
    extra: dict[str, Any] = {"shield": trainer.shield.state_dict()} if trainer.shield is not None else {}
    if trainer.pending is not None:
        # An episode that ended at the checkpoint's step has its terminal obs here, not yet
        # in replay; without it a resumed run would lose the episode's last transition.
        step, cost = trainer.pending
        lanes = np.flatnonzero(step.is_last)
        if len(lanes):
            dim = trainer.agent.act_spec.dim
            labels = np.ones((step.is_last.shape[0], dim), bool) if trainer.labels else None
            record = transition(step, np.zeros((step.is_last.shape[0], dim)), cost, labels)
            extra["pending"] = {"lanes": torch.from_numpy(lanes),
                                "step": {k: torch.from_numpy(np.ascontiguousarray(v[lanes]))
                                         for k, v in record.items()}}
    # ranks > 0 keep their own envs' state; the model (identical on all ranks) is rank 0's
    agent = trainer.agent.state_dict() if trainer.ctx.main else {}
    return {**extra, "agent": agent, "world_size": trainer.ctx.world,
            "counters": {"step": trainer.step, "episodes": trainer.episodes, "credit": trainer.credit,
                         **trainer.counters},
            "rng": {"torch": torch.get_rng_state(), "numpy": trainer.rng.bit_generator.state,
                    "replay": trainer.replay.rng.bit_generator.state},
            "replay": trainer.replay.state_dict(),
            "config": trainer.cfg.to_dict()}


def restore(trainer: "Trainer") -> Path | None:
    """Continue from the newest readable checkpoint; None (and a clean slate) if none."""
    found = checkpoint.load_latest(trainer.logdir / "checkpoints", trainer.device)
    if found is None:
        clear(trainer)
        return None
    path, state = found
    world = int(state.get("world_size", 1))
    if world != trainer.ctx.world:
        raise checkpoint.CheckpointError(
            f"{path} was written by {world} process(es), this run has {trainer.ctx.world}; resume with "
            f"the same number (torchrun --nproc_per_node {world}) or use a new --logdir")
    if not trainer.ctx.main:  # this rank's own state at the step rank 0 resumes from
        own = trainer.ckpt_dir / path.name
        try:
            own_state = checkpoint.read(own, trainer.device)
        except Exception as exc:  # noqa: BLE001
            raise checkpoint.CheckpointError(f"rank {trainer.ctx.rank}: no readable {own} to go with "
                                             f"{path.name} ({type(exc).__name__}); use a new --logdir") from None
        own_state["agent"] = state["agent"]
        path, state = own, own_state
    try:
        trainer.agent.load_state_dict(state["agent"])
    except checkpoint.CheckpointError as exc:  # already says what and how to fix
        raise checkpoint.CheckpointError(f"{path}: {exc}") from None
    except (RuntimeError, KeyError, ValueError) as exc:
        raise checkpoint.CheckpointError(
            f"{path} does not match this model ({str(exc).splitlines()[0][:120]}); it was written "
            f"with another config: use a new --logdir") from None
    c = state["counters"]
    trainer.step, trainer.episodes, trainer.credit = int(c["step"]), int(c["episodes"]), float(c["credit"])
    for k in trainer.counters:
        trainer.counters[k] = int(c.get(k, 0))
    if trainer.shield is not None and "shield" in state:
        trainer.shield.load_state_dict(state["shield"])
    torch.set_rng_state(state["rng"]["torch"])
    trainer.rng.bit_generator.state = state["rng"]["numpy"]
    trainer.replay.rng.bit_generator.state = state["rng"]["replay"]
    if "replay" in state:
        try:
            trainer.replay.load_state_dict(state["replay"])
            if "pending" in state:
                pending = state["pending"]
                trainer.replay.add({k: v.numpy() for k, v in pending["step"].items()}, pending["lanes"].numpy())
        except (ValueError, KeyError, IndexError) as exc:
            raise checkpoint.CheckpointError(f"{path}: its replay does not fit this run ({exc}); "
                                             f"use a new --logdir") from None
    else:
        print(f"warning: {path.name} has no replay state; replay starts empty", file=sys.stderr)
    trainer.driver.seed = resume_seed(trainer.cfg.run.seed, trainer.step)  # used at its first reset
    if trainer.ctx.main:
        rewind_jsonl(trainer.logdir, trainer.step)
    trainer.saved_step, trainer.last_checkpoint = trainer.step, path
    print(f"resumed from {path} at step {trainer.step} ({len(trainer.replay):,} replay steps)")
    return path


def clear(trainer: "Trainer") -> None:
    """A fresh start: drop logs and chunks a crashed run left before its first checkpoint."""
    trainer.replay.clear_disk()
    if trainer.ctx.main:
        rewind_jsonl(trainer.logdir, 0)


# -- inspection (tests, benchmarks/kill_resume.py) ------------------------------------------------
def load_replay(logdir: Path, capacity: int | None = None, prune: bool = True) -> Replay:
    """The replay a resume of `logdir` would start from (chunks + newest checkpoint). Like a
    resume, it deletes chunk files newer than that checkpoint, unless prune=False."""
    found = checkpoint.load_latest(Path(logdir) / "checkpoints")
    if found is None:
        raise checkpoint.CheckpointError(f"{logdir} has no checkpoint yet")
    state = found[1]
    r = state["replay"]
    fields = {k: (tuple(v.shape[1:]), v.numpy().dtype) for k, v in r["partial"][0].items()}
    cap = capacity or int(state["config"]["replay"]["capacity"])
    replay = Replay(cap, len(r["count"]), fields, directory=Path(logdir) / "replay", chunk=int(r["chunk"]))
    replay.load_state_dict(r, prune)
    if not prune:
        replay.directory = None  # read only: adding the pending step below writes no chunk
    if "pending" in state:
        pending = state["pending"]
        replay.add({k: v.numpy() for k, v in pending["step"].items()}, pending["lanes"].numpy())
    return replay


def episodes_in(replay: Replay) -> tuple[list[tuple[float, int]], int]:
    """(return, length) of every episode stored whole (is_first .. is_last), in lane order,
    and how many were cut short by a restart."""
    done, cut = [], 0
    for lane in range(replay.lanes):
        t = np.arange(int(replay._oldest()[lane]), int(replay.count[lane]))
        idx = t % replay.size
        first, last = replay.data["is_first"][lane, idx], replay.data["is_last"][lane, idx]
        reward = replay.data["reward"][lane, idx]
        begin = None
        for i in range(len(t)):
            if first[i]:
                cut += begin is not None
                begin = i
            if last[i] and begin is not None:
                done.append((float(reward[begin + 1:i + 1].sum()), i - begin))
                begin = None
    return done, cut
