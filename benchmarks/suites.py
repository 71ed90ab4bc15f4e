"""Benchmark suites: named lists of the existing benchmark commands, run in order.

  python -m benchmarks run --suite cpu-quick             # minutes
  python -m benchmarks run --suite cpu-full              # hours
  python -m benchmarks run --suite cpu-full --dry-run    # list the commands, run nothing
  python -m benchmarks run --suite cpu-full --from 7     # resume at the 7th command

Each command runs as its own subprocess (a fresh interpreter, so no run inherits another's
memory peak or threads; OMP_NUM_THREADS=1 unless set) and appends its own rows to
benchmarks/results/<suite>.jsonl. A failing command does not stop the suite: the summary
lists it and the suite exits 1. The last command of each suite is `report`.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

Command = tuple[str, ...]  # what follows `python`, e.g. ("-m", "benchmarks", "speed")


def _ours(*args: str) -> Command:
    return ("-m", "benchmarks", *args)


# CartPole after 2,000 env steps (1,000 of them random prefill, 500 updates): the recorded
# small-preset curves were at 195-250 there, a random policy scores about 22.
QUICK_LEARN_TARGET = "60"

SUITES: dict[str, list[Command]] = {
    "cpu-quick": [
        _ours("speed", "--presets", "debug", "small", "medium", "--repeats", "3"),
        _ours("plan-speed", "--preset", "small", "--planner", "mppi", "--samples", "256", "--horizon", "5",
              "--iterations", "3", "--env", "Pendulum-v1", "CartPole-v1"),
        _ours("learn", "--task", "cartpole", "--seeds", "0", "--steps", "2000", "--eval-every", "1000",
              "--target", QUICK_LEARN_TARGET, "--check"),
        _ours("report"),
    ],
    "cpu-full": [
        _ours("speed", "--presets", "debug", "small", "medium", "--repeats", "10"),
        _ours("speed-grid", "--preset", "small", "--batches", "8", "16", "32", "--lengths", "16", "32", "64",
              "--presets", "debug", "small", "medium"),
        _ours("gather-ab", "--presets", "small", "medium", "xs-matched", "--rounds", "6"),
        _ours("plan-speed", "--preset", "small", "--planner", "mppi", "cem", "--env", "Pendulum-v1", "CartPole-v1"),
        _ours("learn", "--task", "cartpole", "--seeds", "0", "1", "2"),
        _ours("learn", "--task", "pendulum", "--seeds", "0", "1", "2"),
        _ours("learn", "--task", "cartpole-pixels", "--seeds", "0", "1", "2"),
        ("-m", "benchmarks.shield", "--task", "corridor", "--seeds", "0", "1", "2", "--modes", "on", "off"),
        ("-m", "benchmarks.shield", "--task", "minigrid-lava", "--seeds", "0", "1", "2", "--modes", "on", "off"),
        ("-m", "benchmarks.kill_resume", "--cycles", "20", "--preset", "small", "--steps", "3000"),
        ("-m", "benchmarks.backbones", "--lengths", "64", "256", "1024"),
        ("-m", "benchmarks.backbones", "--ratios", "--lengths", "64", "256", "1024", "--repeats", "10"),
        ("-m", "benchmarks.memory_probe", "--distances", "8", "--rewards", "cue", "--updates", "12000",
         "--every", "250"),
        _ours("report"),
    ],
}


def display(cmd: Command) -> str:
    return "python " + shlex.join(cmd)


def run_suite(name: str, dry_run: bool = False, start: int = 1) -> int:
    """Run (or with `dry_run` only list) the suite's commands from the `start`-th (1-based).
    Returns 0 when every command exited 0, else 1."""
    commands = SUITES[name]
    print(f"suite {name}: {len(commands)} commands{' (dry run: nothing is run)' if dry_run else ''}")
    for i, cmd in enumerate(commands, 1):
        print(f"  {i:>2}. {display(cmd)}{'  (skipped: --from)' if i < start else ''}")
    if dry_run:
        print(f"to run them: python -m benchmarks run --suite {name}")
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done: list[tuple[int, Command, int, float]] = []
    for i, cmd in enumerate(commands, 1):
        if i < start:
            continue
        print(f"\n== [{i}/{len(commands)}] {display(cmd)}", flush=True)
        t0 = time.time()
        rc = subprocess.run([sys.executable, *cmd], cwd=ROOT, env=env).returncode
        done.append((i, cmd, rc, time.time() - t0))
        print(f"== [{i}/{len(commands)}] exit {rc} after {time.time() - t0:.0f} s", flush=True)
    print(f"\nsuite {name}:")
    for i, cmd, rc, wall in done:
        print(f"  {i:>2}. {'ok    ' if rc == 0 else f'FAILED (exit {rc})'} {wall:>7.0f} s  {display(cmd)}")
    failed = [i for i, _, rc, _ in done if rc != 0]
    if failed:
        print(f"{len(failed)} of {len(done)} commands failed (rerun one alone, or the suite with --from N)")
    return 1 if failed else 0
