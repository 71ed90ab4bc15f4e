"""Kill -9 / resume cycles: does a run killed at random points lose or repeat anything?

  python -m benchmarks.kill_resume --cycles 20 --preset small --steps 5000

Runs `worldmodel train` on CartPole as a subprocess, kills it with SIGKILL at a random
moment after each new checkpoint, reruns the same command until it finishes, then runs
the same command once more without interruption (same seed) in another directory. Reports:

  lost / duplicated   env steps in the rebuilt replay vs the step counter (beyond the
                      terminal observations a checkpoint carries), and episodes logged in
                      episodes.jsonl vs episodes stored whole in replay
  cut episodes        episodes in flight at a kill (the env restarts; expected)
  curve               duplicated or rewound steps in metrics.jsonl
  return              mean of the last 10 training episodes, killed vs uninterrupted

Appends the result to benchmarks/results/kill_resume.jsonl.
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _checkpoints(run: Path) -> set[str]:
    return {p.name for p in (run / "checkpoints").glob("step_*.pt")} if (run / "checkpoints").is_dir() else set()


def _carried(run: Path) -> int:
    """Terminal observations the checkpoint a restart resumes from carries into replay
    (episodes that ended exactly at its step; see worldmodel/resume.py, `pending`)."""
    from worldmodel import checkpoint
    found = checkpoint.load_latest(run / "checkpoints", "cpu")
    return 0 if found is None or "pending" not in found[1] else len(found[1]["pending"]["lanes"])


def killed_run(cmd: list[str], run: Path, cycles: int, rng: random.Random, env: dict[str, str],
               max_delay: float) -> dict[str, Any]:
    """Run `cmd` until it exits 0, SIGKILLing it `cycles` times at random moments."""
    kills, starts, carried, t0 = 0, 0, 0, time.time()
    while True:
        starts += 1
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if kills < cycles:
            seen = _checkpoints(run)
            while proc.poll() is None and not (_checkpoints(run) - seen):  # progress first
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, max_delay))
            if proc.poll() is None:
                proc.kill()
                kills += 1
        out = proc.communicate()[0]
        if proc.returncode == 0:
            return {"kills": kills, "starts": starts, "seconds": time.time() - t0, "carried_terminal_obs": carried}
        carried += _carried(run)  # what the next start resumes from
        if proc.returncode != -signal.SIGKILL:
            raise SystemExit(f"run failed (exit {proc.returncode}):\n{out[-2000:]}")


def audit(run: Path, steps: int, carried: int = 0) -> dict[str, Any]:
    """Lost / duplicated transitions and episodes of a finished run directory. `carried`:
    terminal observations that resumed checkpoints stored, each one replay row more than
    the env steps counted (the uninterrupted run spends a counted step on that autoreset)."""
    from worldmodel import resume
    from worldmodel.logger import read_jsonl
    replay = resume.load_replay(run)
    stored, cut = resume.episodes_in(replay)
    logged = read_jsonl(run / "episodes.jsonl")
    want = collections.Counter((round(e["return"], 3), e["length"]) for e in logged)
    have = collections.Counter((round(r, 3), n) for r, n in stored)
    metrics = [r["step"] for r in read_jsonl(run / "metrics.jsonl")]
    extra = int(replay.count.sum()) - steps - carried
    return {"replay_steps": int(replay.count.sum()), "extra_terminal_obs": carried,
            "lost_steps": max(0, -extra), "duplicated_steps": max(0, extra),
            "episodes_logged": len(logged), "episodes_in_replay": len(stored),
            "lost_episodes": sum((want - have).values()), "duplicated_episodes": sum((have - want).values()),
            "cut_episodes": cut, "curve_duplicates": len(metrics) - len(set(metrics)),
            "curve_rewinds": sum(b < a for a, b in zip(metrics, metrics[1:])),
            "final_return": sum(e["return"] for e in logged[-10:]) / max(1, len(logged[-10:])),
            "eval_return": _eval(run)}


def _eval(run: Path, episodes: int = 20) -> float:
    """Greedy return of the run's final checkpoint (same eval seed for both runs)."""
    from worldmodel.api import evaluate_run
    return float(evaluate_run(run, episodes=episodes)["return_mean"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kill_resume", description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20, help="kill -9 / resume cycles")
    parser.add_argument("--preset", nargs="+", default=["small"])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--checkpoint-every", type=int, default=0, help="0: steps / (2 * cycles)")
    parser.add_argument("--max-delay", type=float, default=1.0, help="seconds after a checkpoint to kill within")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="more overrides: key=value")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    every = args.checkpoint_every or max(1, args.steps // (2 * max(args.cycles, 1)))
    extra = [f"--{kv.split('=', 1)[0]}={kv.split('=', 1)[1]}" for kv in args.set]
    base = [sys.executable, "-m", "worldmodel", "train", "--preset", *args.preset, "--env", "CartPole-v1",
            "--steps", str(args.steps), "--seed", str(args.seed), "--run.checkpoint_every", str(every),
            "--run.progress", "false", "--run.video_every", "0", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        killed, clean = Path(tmp) / "killed", Path(tmp) / "clean"
        timing = killed_run([*base, "--logdir", str(killed)], killed, args.cycles, random.Random(args.seed), env,
                            args.max_delay)
        t0 = time.time()
        subprocess.run([*base, "--logdir", str(clean)], cwd=ROOT, env=env, check=True, capture_output=True)
        clean_seconds = time.time() - t0
        a, b = audit(killed, args.steps, timing["carried_terminal_obs"]), audit(clean, args.steps)
    result = {"cycles": args.cycles, "preset": args.preset, "steps": args.steps, "checkpoint_every": every,
              **timing, "killed": a, "uninterrupted": b, "uninterrupted_seconds": clean_seconds}
    print(f"kill -9 / resume: {timing['kills']} kills, {timing['starts']} starts, {timing['seconds']:.1f} s "
          f"(uninterrupted {clean_seconds:.1f} s); checkpoint every {every} steps")
    for name, r in (("killed", a), ("uninterrupted", b)):
        print(f"  {name:<13} replay {r['replay_steps']} steps for {args.steps} env steps "
              f"(+{r['extra_terminal_obs']} terminal obs carried by checkpoints); lost {r['lost_steps']}, "
              f"duplicated {r['duplicated_steps']} steps; episodes logged {r['episodes_logged']}, whole in replay "
              f"{r['episodes_in_replay']} (lost {r['lost_episodes']}, duplicated {r['duplicated_episodes']}, "
              f"cut by a kill {r['cut_episodes']}); curve duplicates {r['curve_duplicates']}, "
              f"rewinds {r['curve_rewinds']}; last 10 training episodes {r['final_return']:.1f}, "
              f"eval of the final checkpoint (20 episodes) {r['eval_return']:.1f}")
    command = "python -m benchmarks.kill_resume " + " ".join(shlex.quote(x) for x in argv)
    if not args.no_record:
        from benchmarks.common import record
        record("kill_resume", result, command)
    print(f"reproduce: {command}")
    bad = a["lost_steps"] + a["duplicated_steps"] + a["lost_episodes"] + a["duplicated_episodes"]
    return 1 if bad or a["curve_duplicates"] or a["curve_rewinds"] else 0


if __name__ == "__main__":
    sys.exit(main())
