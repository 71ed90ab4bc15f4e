"""Throughput of data-parallel training: env steps/s and gradient updates/s for 1, 2 and 4
processes under torchrun (gloo on CPU, NCCL on GPU).

  python -m benchmarks.scaling --procs 1 2 4 --preset small --steps 3000

Each run uses the same config; the effective batch is replay.batch for every process
count, so updates/s compares like with like. Figures are the rate over the training part
(after prefill), read from the run's metrics.jsonl."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def run(procs: int, preset: str, steps: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
               "-m", "worldmodel", "train", "--preset", preset, "--logdir", str(logdir), "--steps", str(steps),
               "--run.progress", "false", "--run.video_every", "0", "--run.threads", "1",
               "--run.log_every", str(max(steps // 10, 1)), *extra]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if out.returncode != 0:
            raise SystemExit(f"{procs} processes failed: {out.stderr.strip().splitlines()[-1:]}")
        rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "fps" in r]
    last = rows[-1]
    return {"procs": procs, "preset": preset, "steps": steps, "env_steps_per_s": last["fps"],
            "updates_per_s": last["ups"], "updates": last["updates"],
            "param_divergence": next((r.get("param_divergence") for r in rows[::-1] if "param_divergence" in r), None)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m benchmarks.scaling " + " ".join(shlex.quote(a) for a in argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling")
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--preset", default="small")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--set", nargs="*", default=[], help="extra dotted overrides key=value, e.g. --set train.prefill=500")
    args = p.parse_args(argv)
    from benchmarks.common import record
    print(f"{'procs':>5} {'env steps/s':>12} {'updates/s':>10} {'updates':>8}")
    for n in args.procs:
        extra = [a for kv in args.set for a in (f"--{kv.split('=', 1)[0]}", kv.split("=", 1)[1])]
        r = run(n, args.preset, args.steps, extra)
        record("scaling", r, command)
        print(f"{n:>5} {r['env_steps_per_s']:>12.1f} {r['updates_per_s']:>10.2f} {r['updates']:>8}")
    print(f"\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
