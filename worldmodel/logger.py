"""Metrics: JSONL files in the run directory, TensorBoard when installed, and the live
progress bar. Everything is keyed by env steps."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


class Logger:
    def __init__(self, logdir: Path, total_steps: int, start_step: int = 0, progress: bool = True,
                 tensorboard: bool = True, enabled: bool = True) -> None:
        """`enabled=False` (ranks > 0 of a distributed run): write and show nothing."""
        self.enabled = enabled
        progress, tensorboard = progress and enabled, tensorboard and enabled
        self.logdir = Path(logdir)
        self.files: dict[str, Any] = {}
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional extra
                self.writer = SummaryWriter(str(self.logdir / "tb"))
            except Exception:
                self.writer = None
        self.bar = None
        self.total, self.start_step = total_steps, start_step
        self.t0 = time.time()
        self.live: dict[str, Any] = {}
        if progress:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                TextColumn("eta"), TimeRemainingColumn())
            self.task = self.bar.add_task("train", total=total_steps, completed=start_step, info="")
            self.bar.start()

    def write(self, name: str, record: dict[str, Any]) -> None:
        """Append one JSON line to <logdir>/<name>.jsonl (and scalars to TensorBoard)."""
        if not self.enabled:
            return
        if name not in self.files:
            self.files[name] = open(self.logdir / f"{name}.jsonl", "a", buffering=1)
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self.files[name].write(json.dumps(clean) + "\n")
        if self.writer is not None and "step" in record:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.writer.add_scalar(f"{name}/{k}", v, record["step"])

    def progress(self, step: int, **fields: Any) -> None:
        self.live.update({k: v for k, v in fields.items() if v is not None})
        if self.bar is None:
            return
        elapsed = max(time.time() - self.t0, 1e-6)
        rate = (step - self.start_step) / elapsed
        parts = [f"{rate:6.1f} steps/s"]
        if "return" in self.live:
            parts.append(f"return {self.live['return']:8.2f}")
        if "vetoes" in self.live:
            parts.append(f"vetoes {self.live['vetoes']}")
        if "updates" in self.live:
            parts.append(f"updates {self.live['updates']}")
        self.bar.update(self.task, completed=step, info="  ".join(parts))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        for f in self.files.values():
            f.close()
        if self.writer is not None:
            self.writer.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (crash mid-write) is skipped."""
    out = []
    path = Path(path)
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def rewind_jsonl(logdir: Path, step: int) -> dict[str, int]:
    """Drop every record with step > `step` (and torn lines) from <logdir>/*.jsonl, each
    file rewritten atomically, so a resumed run's curves neither repeat nor rewind.
    Returns {file name: lines dropped} for the files that changed."""
    from worldmodel.checkpoint import atomic_write_bytes
    dropped: dict[str, int] = {}
    for path in sorted(Path(logdir).glob("*.jsonl")):
        lines = path.read_text().splitlines()
        keep = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn by a crash mid-write
            if isinstance(record, dict) and isinstance(record.get("step"), (int, float)) and record["step"] > step:
                continue
            keep.append(line)
        if len(keep) != len(lines):
            text = "".join(f"{line}\n" for line in keep).encode()
            atomic_write_bytes(path, lambda f: f.write(text))
            dropped[path.name] = len(lines) - len(keep)
    return dropped
