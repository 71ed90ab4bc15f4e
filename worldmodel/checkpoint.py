"""Checkpoints: written atomically (temp file, fsync, rename), newest K kept, verified on
load, and loaded with `torch.load(weights_only=True)`: nothing from a run directory is
ever executed. A corrupt or truncated newest checkpoint is reported and the previous
good one is used.

File layout: MAGIC, the payload's length (8 bytes, little-endian), its SHA-256 (32 bytes),
then the `torch.save` payload. The length and digest catch a truncated or bit-flipped
file before torch reads it. Files without MAGIC (older runs) load unchecked."""
from __future__ import annotations

import hashlib
import io
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch

PATTERN = re.compile(r"^step_(\d+)\.pt$")
MAGIC = b"WMCKPT1\n"


class CheckpointError(RuntimeError):
    """A missing, corrupt or mismatched checkpoint; str is one line."""


def atomic_write_bytes(path: Path, write) -> None:
    """Call write(file) on a temp file next to `path`, fsync it, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass


def list_checkpoints(directory: Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def save(directory: Path, step: int, state: dict[str, Any], keep: int = 3) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step:09d}.pt"
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getbuffer()

    def write(f) -> None:
        f.write(MAGIC + len(payload).to_bytes(8, "little") + hashlib.sha256(payload).digest())
        f.write(payload)
    atomic_write_bytes(path, write)
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_latest(directory: Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]] | None:
    """Newest checkpoint that loads; None when the directory has none at all."""
    candidates = list_checkpoints(directory)
    errors = []
    for path in reversed(candidates):
        try:
            state = read(path, map_location)
            if not isinstance(state, dict) or "agent" not in state or "counters" not in state:
                raise CheckpointError("not a worldmodel checkpoint")
            if errors:
                print(f"warning: skipped unreadable checkpoint(s) {', '.join(errors)}; "
                      f"using {path.name}", file=sys.stderr)
            return path, state
        except Exception as exc:  # corrupt, truncated or foreign file
            why = str(exc) if isinstance(exc, CheckpointError) else type(exc).__name__
            errors.append(f"{path.name} ({why})")
    if errors:
        raise CheckpointError(f"no readable checkpoint in {directory}: {', '.join(errors)}")
    return None


def read(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """Verify length and checksum, then `torch.load(weights_only=True)`: tensors and plain
    containers only, never code."""
    data = Path(path).read_bytes()
    if data.startswith(MAGIC):
        head = len(MAGIC)
        size = int.from_bytes(data[head:head + 8], "little")
        digest, payload = data[head + 8:head + 40], memoryview(data)[head + 40:]
        if len(payload) != size:
            raise CheckpointError(f"truncated: {len(payload)} of {size} bytes")
        if hashlib.sha256(payload).digest() != digest:
            raise CheckpointError("checksum mismatch")
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
