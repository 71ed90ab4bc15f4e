"""Shared helpers: result records with machine, versions and commit; JSONL storage."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")


def machine() -> dict[str, Any]:
    import torch
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except Exception:
        return "unknown"


def record(suite: str, result: dict[str, Any], command: str) -> dict[str, Any]:
    """Append one result (with context) to benchmarks/results/<suite>.jsonl and return it."""
    RESULTS.mkdir(exist_ok=True)
    row = {"suite": suite, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": commit(),
           "command": command, "machine": machine(), **result}
    with open(RESULTS / f"{suite}.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def load(suite: str, root: Path | None = None) -> list[dict[str, Any]]:
    """The rows of <root>/<suite>.jsonl (default benchmarks/results), oldest first."""
    path = (root or RESULTS) / f"{suite}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
