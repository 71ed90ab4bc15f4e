"""How benchmarks/sheeprl/compare.py runs each system: SheepRL's venv and CLI overrides, and a
child process pinned to given CPUs, stopped at a time budget, with its peak RSS and CPU time
(through _launch.py), and the JSONL it leaves behind read back even when cut off mid-line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# SHEEPRL_VENV: the same override benchmarks/sheeprl/install.sh takes
VENV = Path(os.environ.get("SHEEPRL_VENV") or HERE.parent / ".venv-sheeprl")
SHIM = HERE / "_shim.py"
LAUNCH = HERE / "_launch.py"

BATCH, LENGTH = 16, 64
LEARNING_STARTS = 1024  # SheepRL's dreamer_v3 default (`algo.learning_starts`)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SHEEPRL_THREADS="1", HYDRA_FULL_ERROR="1",
               PYTHONUNBUFFERED="1")
    return env


def sheeprl_python() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        sys.exit(f"SheepRL's venv is missing ({VENV}); run: bash benchmarks/sheeprl/install.sh")
    return py


def sheeprl_version() -> str:
    out = subprocess.run([str(sheeprl_python()), "-c", "import importlib.metadata as m; print(m.version('sheeprl'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def sheeprl_overrides(task: str, preset: str, total_steps: int, replay_ratio: float, workdir: Path,
                      seed: int) -> list[str]:
    """Hydra overrides: SheepRL's dreamer_v3 experiment on a Gymnasium vector task, headless on
    CPU, one env (as ours), no video, no TensorBoard metrics, no checkpoints, no final test."""
    return ["exp=dreamer_v3", "env=gym", f"env.id={task}", f"algo=dreamer_v3_{preset}",
            "fabric.accelerator=cpu", "fabric.devices=1", "fabric.precision=32-true",
            "algo.cnn_keys.encoder=[]", "algo.cnn_keys.decoder=[]",
            "algo.mlp_keys.encoder=[state]", "algo.mlp_keys.decoder=[state]",
            "env.num_envs=1", "env.sync_env=True", "env.capture_video=False",
            f"algo.total_steps={total_steps}", f"algo.learning_starts={LEARNING_STARTS}",
            f"algo.replay_ratio={replay_ratio}",
            f"algo.per_rank_batch_size={BATCH}", f"algo.per_rank_sequence_length={LENGTH}",
            f"buffer.size={max(total_steps, 10_000)}", "buffer.checkpoint=False",
            "checkpoint.every=0", "checkpoint.save_last=False", "algo.run_test=False",
            "metric.log_level=0", "model_manager.disabled=True", "num_threads=1", f"seed={seed}",
            f"log_root={workdir / 'logs'}", f"hydra.run.dir={workdir / 'hydra'}"]


def run_child(cmd: list[str], log_path: Path, budget_s: float | None, cpus: set[int] | None = None) -> dict[str, Any]:
    """Run `cmd` (through _launch.py, for its own peak RSS), on the CPUs `cpus` if given; stop it
    with SIGTERM (then SIGKILL) past `budget_s`. Returns its start (unix time), its wall time up
    to exit or to the stop signal, whether it was stopped, its exit status, its peak RSS and its
    CPU time."""
    result = log_path.with_suffix(".rusage.json")
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    with open(log_path, "w") as log:
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, str(LAUNCH), str(result), *cmd], stdout=log,
                                stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT, start_new_session=True,
                                preexec_fn=pin)
        stopped, stop_t, killed = False, None, False
        while proc.poll() is None:
            now = time.time()
            if budget_s is not None and not stopped and now - t0 > budget_s:
                stopped, stop_t = True, now
                os.killpg(proc.pid, signal.SIGTERM)
            elif stopped and not killed and now - stop_t > 60:
                killed = True
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.2)
    wall = (stop_t or time.time()) - t0
    usage = json.loads(result.read_text()) if result.exists() else {}
    return {"t0": t0, "wall_s": wall, "stopped_at_budget": stopped, "returncode": usage.get("returncode", proc.returncode),
            "peak_rss_mb": usage["maxrss_kb"] / 1024 if usage else None,
            "cpu_s": usage["user_s"] + usage["sys_s"] if usage else None}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut by the stop signal
    return rows


def tail_of(path: Path, n: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""
