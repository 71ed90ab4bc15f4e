"""What can stop a training run part-way, and how the trainer reacts.

- SIGINT / SIGTERM: `GracefulStop` turns the first signal into a flag; the loop finishes
  its step, writes a checkpoint and returns. A second signal raises KeyboardInterrupt.
- Numerical faults: the agent skips an update whose loss or gradient is not finite;
  after `train.max_skipped` of them in a row the run stops (`diverged`), keeping the last
  good checkpoint.
- Memory and disk: `preflight` estimates replay RAM and disk and the model's memory
  before the first step, and stops with a capacity that would fit.
- Everything that stops a run for a reason the user can act on is a `RunStopped`, whose
  str is one line (the CLI prints it and exits 2).
"""
from __future__ import annotations

import shutil
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from envs.check import _round_down, available_memory_bytes


class RunStopped(RuntimeError):
    """A run stopped for a reason the user can fix (divergence, memory, disk); one line."""


class GracefulStop:
    """SIGINT / SIGTERM set `self.signal` instead of killing the loop, between `install()`
    and `restore()` (or as a context manager). Outside the main thread (where Python cannot
    install handlers) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    __enter__ = install

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:  # asked twice: stop now, without the checkpoint
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(self, *exc: Any) -> None:
        self.restore()


# Which learning rate to lower for a fault in each loss term.
_LR_FLAG = {"actor_loss": "--actor.lr", "critic_loss": "--critic.lr", "actor_gradient": "--actor.lr",
            "critic_gradient": "--critic.lr"}


def diverged(term: str, streak: int, last_checkpoint: Path | None) -> RunStopped:
    """The one-line error for `streak` non-finite updates in a row, `term` the loss that
    went bad (a world-model loss name, 'gradient', or an actor / critic term)."""
    what = "non-finite gradient" if term == "gradient" else f"non-finite loss '{term}'"
    ckpt = str(last_checkpoint) if last_checkpoint is not None else "none yet"
    return RunStopped(f"{what} in {streak} consecutive updates; last good checkpoint: {ckpt}; "
                      f"try a lower {_LR_FLAG.get(term, '--train.model_lr')}")


# -- memory preflight -------------------------------------------------------------------------
def _size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*") if p.is_file()) if path.is_dir() else 0


def preflight(replay_arrays: dict[str, np.ndarray], steps: int, chunk_slack: int, params: int,
              keep_checkpoints: int, logdir: Path, ram: int | None = None,
              disk: int | None = None, ram_only: tuple[str, ...] = ()) -> str:
    """Estimate what the run will hold and stop before it starts if that cannot fit.

    `replay_arrays`: the replay's (lanes, steps per lane, ...) arrays; `steps`: the
    replay's capacity in steps; `chunk_slack`: steps on disk beyond the capacity (chunks
    kept for older checkpoints); `params`: parameters of all networks; `ram_only`: replay
    fields never written to disk. Returns the info line; raises RunStopped with a capacity
    that fits."""
    # bytes per replay step: every field, plus two int64 episode bounds kept in RAM only
    size = {k: a.itemsize * int(np.prod(a.shape[2:])) for k, a in replay_arrays.items()}
    disk_per_step = sum(v for k, v in size.items() if k not in ram_only)
    ram_per_step = sum(size.values()) + 16
    model = params * 4 * 3  # float32 weights + Adam's two moments
    need_ram = steps * ram_per_step + model
    need_disk = (steps + chunk_slack) * disk_per_step + keep_checkpoints * model
    need_disk -= _dir_bytes(logdir / "replay") + _dir_bytes(logdir / "checkpoints")  # a resume reuses them
    ram = available_memory_bytes() if ram is None else ram
    if disk is None:
        probe = next((p for p in (logdir, *logdir.parents) if p.exists()), Path("."))
        disk = shutil.disk_usage(probe).free
    info = (f"memory: replay {steps:,} steps x {ram_per_step:,} B = {_size(steps * ram_per_step)} RAM "
            f"(+ up to {_size((steps + chunk_slack) * disk_per_step)} on disk), model + optimizer "
            f"{_size(model)}; available {_size(ram) if ram is not None else 'unknown'} RAM, "
            f"{_size(disk)} disk")
    if ram is not None and need_ram > 0.9 * ram:
        fit = _round_down((0.5 * ram - model) / ram_per_step)
        raise RunStopped(f"replay of {steps:,} steps x {ram_per_step:,} B needs {_size(need_ram)} RAM with "
                         f"the model, but only {_size(ram)} is available; try --replay.capacity {fit}")
    if need_disk > disk:
        fit = _round_down((0.8 * disk - keep_checkpoints * model) / disk_per_step - chunk_slack)
        raise RunStopped(f"replay chunks and checkpoints need {_size(need_disk)} of disk under {logdir}, "
                         f"but only {_size(disk)} is free; try --replay.capacity {fit} or another --logdir")
    return info
