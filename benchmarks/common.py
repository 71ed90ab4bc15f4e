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
    info["matmul_gflops_1thread"] = host_gflops()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def host_gflops() -> float:
    """This host's speed as the row is written: fp32 GFLOP/s of a 1024^3 matmul on one thread
    (median of 5, about 0.2 s; other jobs on the machine lower it too). The shared machine's
    speed changes between sessions (80-153 GFLOP/s per core has been seen), so wall times
    from different days compare only next to this figure."""
    import torch
    from benchmarks.speed import matmul_peak
    threads = torch.get_num_threads()
    try:
        return round(matmul_peak(1, 1024, 5), 1)
    finally:
        torch.set_num_threads(threads)


def commit() -> str:
    """HEAD's short hash; $GIT_COMMIT where set (a copy of the tree on a lent GPU machine
    may carry stale git metadata, so the device command names the commit it runs)."""
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except Exception:
        return "unknown"


# The commit whose code this process runs: taken when the benchmark starts (this module is
# imported first), not when its row is written, since a run of an hour can outlast commits.
STARTED_AT = commit()


def record(suite: str, result: dict[str, Any], command: str) -> dict[str, Any]:
    """Append one result (with context) to benchmarks/results/<suite>.jsonl and return it.
    `commit` is the code the process started with; `commit_at_record` is added when HEAD
    moved during the run."""
    RESULTS.mkdir(exist_ok=True)
    now = commit()
    row = {"suite": suite, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": STARTED_AT,
           **({"commit_at_record": now} if now != STARTED_AT else {}),
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


def train(env: str, presets: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """worldmodel.train for a benchmark: a run stopped early (SIGINT / SIGTERM: the trainer
    checkpoints and returns) ends the benchmark with a one-line error instead of being
    recorded as a finished run with a short budget."""
    import worldmodel
    summary = worldmodel.train(env=env, presets=presets, overrides=overrides)
    if summary.get("interrupted"):
        raise RunInterrupted(f"error: the {env} run was interrupted ({summary['interrupted']}) at env step "
                             f"{summary['step']}; nothing recorded for it")
    return summary


class RunInterrupted(SystemExit):
    """A benchmark's training run was stopped early. Uncaught, it exits with its one-line
    message; `learn` catches it to record the seeds that finished before it."""
