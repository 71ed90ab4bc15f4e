"""Side by side with SheepRL's DreamerV3, on this machine, in one run.

  bash benchmarks/sheeprl/install.sh          # once: SheepRL in benchmarks/.venv-sheeprl
  python -m benchmarks.sheeprl.compare --task CartPole-v1 [Pendulum-v1] [--updates 8] [--rounds 2]
                                       [--budget-s 300] [--steps 100000] [--skip-speed] [--skip-e2e]

(a) speed: seconds per gradient update at matched model size and batch (16 x 64). SheepRL
    runs its own CLI (`sheeprl exp=dreamer_v3 algo=dreamer_v3_XS ...`) through
    benchmarks/sheeprl/_shim.py in its venv, which times each call of its DreamerV3 `train`
    (world model + actor + critic, one gradient step) on batches from its replay buffer; ours
    times `Agent.train_step` on synthetic batches of the same shape (benchmarks/speed.py)
    with a config whose trained parameters match SheepRL's XS (`MATCHED` below). The two
    alternate for --rounds rounds; medians pool all rounds, and the ratio is of the medians.
(b) end to end: ours at --ours-preset (small) and SheepRL at --sheeprl-preset (XS), each in
    a child process for --steps env steps or --budget-s seconds, whichever comes first:
    env steps/s, gradient updates/s, peak RSS of the child (wait4 ru_maxrss) and the mean
    return of the last 10 training episodes.

Threads are pinned to 1 everywhere (OMP_NUM_THREADS=1, torch.set_num_threads(1)). Results go
to benchmarks/results/sheeprl.jsonl (benchmarks.common.record) and print as markdown.
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.sheeprl import children
from benchmarks.sheeprl.children import (BATCH, LEARNING_STARTS, LENGTH, ROOT, SHIM, read_jsonl, run_child,
                                         sheeprl_overrides, sheeprl_python, sheeprl_version, tail_of)

# Our config at SheepRL's dreamer_v3_XS size on a vector task: dense_units 256, mlp_layers 1,
# recurrent 256, hidden 256, 32 x 32 latents, 255 bins; same batch. The cost head (a
# rule-shield head SheepRL has no counterpart of) is kept out of the loss, so it is neither
# computed nor updated: its parameters exist but are not trained.
MATCHED = {"model.deter": 256, "model.hidden": 256, "model.stoch": 32, "model.classes": 32,
           "model.units": 256, "model.layers": 1, "model.bins": 255, "actor.units": 256, "actor.layers": 1,
           "critic.units": 256, "critic.layers": 1, "replay.batch": 16, "replay.length": 64,
           "model.loss_scales.cost": 0.0,
           # imagine from every one of the B*T replayed states, as SheepRL does (our small
           # preset subsamples 256 starts; that would make the comparison unfair in our favour)
           "behavior.starts": 0, "behavior.discount_horizon": 333}

def solve_stats(episodes: list[tuple[float, int, float]], t0: float, target: float | None) -> dict[str, Any]:
    """Wall time (from the child's start, so imports and prefill count) and env steps at the
    end of the first training episode whose return reached `target`; None if none did.
    `episodes`: (unix time, env steps, return) of each finished episode, in order."""
    if target is None:
        return {}
    hit = next(((t, n) for t, n, r in episodes if r >= target), None)
    return {"solve_target": target, "time_to_solve_s": None if hit is None else hit[0] - t0,
            "steps_to_solve": None if hit is None else hit[1]}


def return_stats(returns: list[float]) -> dict[str, Any]:
    windows = [statistics.fmean(returns[i - 10:i]) for i in range(10, len(returns) + 1)]
    return {"episodes": len(returns), "last10_return": statistics.fmean(returns[-10:]) if returns else None,
            "best10_return": max(windows) if windows else None, "best_return": max(returns) if returns else None}


# -- (a) time per update -----------------------------------------------------------------------
def sheeprl_speed(task: str, preset: str, updates: int, warmup: int, replay_ratio: float, seed: int,
                  workdir: Path) -> dict[str, Any]:
    events = workdir / "events.jsonl"
    total = LEARNING_STARTS + math.ceil((updates + warmup) / replay_ratio) + 2
    cmd = [str(sheeprl_python()), str(SHIM), str(events),
           *sheeprl_overrides(task, preset, total, replay_ratio, workdir, seed)]
    res = run_child(cmd, workdir / "stdout.txt", budget_s=None)
    rows = read_jsonl(events)
    ups = [r for r in rows if r["event"] == "update"]
    params = next((r for r in rows if r["event"] == "params"), None)
    if res["returncode"] != 0 or params is None or len(ups) <= warmup:
        raise RuntimeError(f"SheepRL run failed (exit {res['returncode']}); its output ends:\n"
                           f"{tail_of(workdir / 'stdout.txt')}")
    return {"dts": [r["dt"] for r in ups[warmup:]], "cpus": [r["cpu"] for r in ups[warmup:]], "params": params,
            "command": shlex.join(cmd)}


def ours_agent(task: str):
    from benchmarks.speed import _agent
    cfg, agent = _agent("small", task, MATCHED)
    return cfg, agent


def ours_speed(cfg, agent, updates: int, warmup: int, seed: int) -> tuple[list[float], list[float]]:
    import numpy as np
    from benchmarks.speed import _fake_batch
    batch = _fake_batch(agent, cfg, np.random.default_rng(seed))
    for _ in range(warmup):
        agent.train_step(batch)
    times, cpus = [], []
    for _ in range(updates):
        t, c = time.perf_counter(), time.thread_time()
        agent.train_step(batch)
        times.append(time.perf_counter() - t)
        cpus.append(time.thread_time() - c)
    return times, cpus


def speed(args, workroot: Path) -> dict[str, Any]:
    import torch
    torch.set_num_threads(1)
    task = args.task[0]
    torch.manual_seed(args.seed)
    cfg, agent = ours_agent(task)
    counts = agent.param_counts()
    trained = sum(counts.values()) - (sum(p.numel() for p in agent.model.cost_head.parameters())
                                      if MATCHED["model.loss_scales.cost"] == 0 else 0)
    ours_dts, ours_cpus, sheep_dts, sheep_cpus, sheep = [], [], [], [], None
    for r in range(args.rounds):
        t, c = ours_speed(cfg, agent, args.updates, 2 if r == 0 else 1, args.seed)
        ours_dts += t
        ours_cpus += c
        print(f"  round {r + 1}: ours {statistics.median(t):.2f} s/update", flush=True)
        wd = workroot / f"speed-sheeprl-{r}"
        wd.mkdir()
        sheep = sheeprl_speed(task, args.sheeprl_preset, args.updates, 2, args.speed_replay_ratio,
                              args.seed + r, wd)
        sheep_dts += sheep["dts"]
        sheep_cpus += sheep["cpus"]
        print(f"  round {r + 1}: SheepRL {statistics.median(sheep['dts']):.2f} s/update", flush=True)
    p = sheep["params"]
    sheep_trained = p["world_model"] + p["actor"] + p["critic"]
    ours_med, sheep_med = statistics.median(ours_dts), statistics.median(sheep_dts)
    q = lambda xs: [round(v, 4) for v in statistics.quantiles(xs, n=4)] if len(xs) > 1 else None  # noqa: E731
    return {
        "task": task, "batch": BATCH, "length": LENGTH, "rounds": args.rounds,
        "ours": {"config": {"presets": ["small"], "overrides": MATCHED}, "params": sum(counts.values()),
                 "params_trained": trained, "param_counts": counts, "s_per_update": ours_med,
                 "quartiles": q(ours_dts), "n": len(ours_dts), "samples": ours_dts,
                 "cpu_s_per_update": statistics.median(ours_cpus), "cpu_samples": ours_cpus,
                 "data": "synthetic batch"},
        "sheeprl": {"config": f"dreamer_v3_{args.sheeprl_preset}", "replay_ratio": args.speed_replay_ratio,
                    "params_trained": sheep_trained, "param_counts": p, "s_per_update": sheep_med,
                    "quartiles": q(sheep_dts), "n": len(sheep_dts), "samples": sheep_dts,
                    "cpu_s_per_update": statistics.median(sheep_cpus), "cpu_samples": sheep_cpus,
                    "data": "its replay buffer (CartPole)", "command": sheep["command"]},
        "params_ratio_ours_over_sheeprl": trained / sheep_trained,
        "speedup_ours_over_sheeprl": sheep_med / ours_med,
        "cpu_speedup_ours_over_sheeprl": statistics.median(sheep_cpus) / statistics.median(ours_cpus),
    }


# -- (b) end to end ----------------------------------------------------------------------------
def ours_e2e(task: str, preset: str, steps: int, budget_s: float, seed: int, workdir: Path,
             solve: float | None = None, cpus: set[int] | None = None) -> dict[str, Any]:
    logdir = workdir / "run"
    cmd = [sys.executable, "-m", "worldmodel", "train", "--env", task, "--preset", preset, "--steps", str(steps),
           "--run.threads", "1", "--run.logdir", str(logdir), "--run.seed", str(seed), "--run.log_every", "50",
           "--run.video_every", "0", "--run.progress", "false", "--run.eval_every", "0",
           "--run.checkpoint_every", str(10 * steps), "--run.device", "cpu"]
    res = run_child(cmd, workdir / "stdout.txt", budget_s, cpus)
    metrics = read_jsonl(logdir / "metrics.jsonl")
    episodes = read_jsonl(logdir / "episodes.jsonl")
    if not metrics:
        raise RuntimeError(f"our run wrote no metrics (exit {res['returncode']}); its output ends:\n"
                           f"{tail_of(workdir / 'stdout.txt')}")
    from worldmodel.config import load_config
    cfg = load_config([preset], {"env.id": task})
    env_steps, updates = metrics[-1]["step"], metrics[-1]["updates"]
    return {"system": "ours", "config": f"--preset {preset}", "command": shlex.join(cmd), **res,
            "env_steps": env_steps, "updates": updates, "env_steps_per_s": env_steps / res["wall_s"],
            "updates_per_s": updates / res["wall_s"], "batch": f"{cfg.replay.batch}x{cfg.replay.length}",
            "replayed_per_env_step": cfg.train.ratio, "prefill": cfg.train.prefill, "seed": seed,
            **return_stats([e["return"] for e in episodes]),
            **solve_stats([(e["time"], e["step"], e["return"]) for e in episodes if "time" in e], res["t0"], solve)}


def sheeprl_e2e(task: str, preset: str, steps: int, budget_s: float, replay_ratio: float, seed: int,
                workdir: Path, solve: float | None = None, cpus: set[int] | None = None) -> dict[str, Any]:
    events = workdir / "events.jsonl"
    cmd = [str(sheeprl_python()), str(SHIM), str(events),
           *sheeprl_overrides(task, preset, steps, replay_ratio, workdir, seed)]
    res = run_child(cmd, workdir / "stdout.txt", budget_s, cpus)
    rows = read_jsonl(events)
    if not any(r["event"] == "params" for r in rows):
        raise RuntimeError(f"SheepRL run failed (exit {res['returncode']}); its output ends:\n"
                           f"{tail_of(workdir / 'stdout.txt')}")
    stop = [r for r in rows if r["event"] in ("stop", "end")]
    updates = [r for r in rows if r["event"] == "update"]
    env_steps = stop[-1]["env_steps"] if stop else max([r.get("env_steps", 0) for r in rows] + [0])
    dts = [r["dt"] for r in updates[2:]]
    return {"system": "sheeprl", "config": f"dreamer_v3_{preset}", "command": shlex.join(cmd), **res,
            "env_steps": env_steps, "updates": len(updates), "env_steps_per_s": env_steps / res["wall_s"],
            "updates_per_s": len(updates) / res["wall_s"], "batch": f"{BATCH}x{LENGTH}",
            "replayed_per_env_step": replay_ratio * BATCH * LENGTH, "prefill": LEARNING_STARTS,
            "median_s_per_update": statistics.median(dts) if dts else None, "seed": seed,
            **return_stats([r["return"] for r in rows if r["event"] == "episode"]),
            **solve_stats([(r["t"], r["env_steps"], r["return"]) for r in rows if r["event"] == "episode"],
                          res["t0"], solve)}


def e2e(args, workroot: Path) -> list[dict[str, Any]]:
    """Ours once per --seeds, then SheepRL once (seed --seed); with --parallel SheepRL runs at the
    same time as ours, each pinned to its own CPU, so both see the same machine in one run."""
    rows: list[dict[str, Any]] = []
    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.parallel and len(cpus) >= 2
    ours_cpus, sheeprl_cpus = ({cpus[0]}, {cpus[-1]}) if pinned else (None, None)
    sheeprl_budget = args.sheeprl_budget_s or args.budget_s

    def one(task: str, system: str, seed: int) -> dict[str, Any]:
        wd = workroot / f"e2e-{task}-{system}-{seed}"
        wd.mkdir()
        budget = args.budget_s if system == "ours" else sheeprl_budget
        print(f"  {task}: {system} seed {seed} for {args.steps} env steps or {budget:.0f} s ...", flush=True)
        try:
            if system == "ours":
                row = ours_e2e(task, args.ours_preset, args.steps, budget, seed, wd, args.solve, ours_cpus)
            else:
                row = sheeprl_e2e(task, args.sheeprl_preset, args.steps, budget, args.replay_ratio, seed, wd,
                                  args.solve, sheeprl_cpus)
        except RuntimeError as exc:  # one failed run must not lose the others
            print(f"    {system} failed: {exc}", flush=True)
            return {"task": task, "system": system, "error": str(exc)[-2000:]}
        print(f"    {task} {system} seed {seed}: {row['env_steps']} env steps, {row['updates']} updates in "
              f"{row['wall_s']:.0f} s, peak RSS {fmt(row['peak_rss_mb'], '.0f')} MB, last-10 return "
              f"{fmt(row['last10_return'])}" + (f", first return >= {args.solve:g} after "
                                                 f"{fmt(row['time_to_solve_s'], '.0f')} s" if args.solve else ""),
              flush=True)
        return {"task": task, **row, "parallel": pinned}

    for task in args.task:
        if args.parallel:
            with ThreadPoolExecutor(1) as pool:  # SheepRL's child beside ours, which run one after another
                theirs = pool.submit(one, task, "sheeprl", args.seed)
                rows += [one(task, "ours", seed) for seed in args.seeds or [args.seed]]
                rows.append(theirs.result())
        else:
            rows += [one(task, "ours", seed) for seed in args.seeds or [args.seed]]
            rows.append(one(task, "sheeprl", args.seed))
    return rows


def solve_summary(rows: list[dict[str, Any]], target: float) -> list[str]:
    """Per task: our median time to the target over seeds (a seed that never got there counts as
    the worst) against SheepRL's; when SheepRL never got there within its budget the ratio is a
    lower bound, its budget over our median."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        ours = [r for r in rows if r["task"] == task and r["system"] == "ours" and "error" not in r]
        theirs = [r for r in rows if r["task"] == task and r["system"] == "sheeprl" and "error" not in r]
        if not ours or not theirs:
            continue
        times = sorted((r["time_to_solve_s"] if r["time_to_solve_s"] is not None else math.inf) for r in ours)
        med = statistics.median(times)  # inf (never) sorts last, as the worst
        t = theirs[0]
        shown = ", ".join("never" if x == math.inf else f"{x:.0f} s" for x in times)
        if med == math.inf:
            out.append(f"- {task}: ours did not reach {target:g} on the median seed ({shown}).")
        elif t["time_to_solve_s"] is not None:
            out.append(f"- {task}: ours first reached {target:g} after {med:.0f} s (median; seeds: {shown}), "
                       f"SheepRL after {t['time_to_solve_s']:.0f} s: **{t['time_to_solve_s'] / med:.1f}x** sooner.")
        else:
            out.append(f"- {task}: ours first reached {target:g} after {med:.0f} s (median; seeds: {shown}); "
                       f"SheepRL had not within {t['wall_s']:.0f} s ({t['env_steps']} env steps, best episode "
                       f"{fmt(t['best_return'], '.0f')}): **at least {t['wall_s'] / med:.1f}x** sooner.")
    return out


# -- report ------------------------------------------------------------------------------------
def fmt(v: Any, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def quart(r: dict[str, Any]) -> str:
    return "–" if not r["quartiles"] else f"{r['quartiles'][0]:.2f}–{r['quartiles'][2]:.2f}"


def tables(sp: dict[str, Any] | None, rows: list[dict[str, Any]]) -> str:
    out = []
    if sp:
        o, s = sp["ours"], sp["sheeprl"]
        out += [f"**Time per gradient update** ({sp['task']}, batch {sp['batch']} x {sp['length']}, 1 thread, "
                f"median of {o['n']} / {s['n']} updates over {sp['rounds']} alternating rounds)", "",
                "| system | config | params trained (all) | wall s / update (median) | quartiles | CPU s / update "
                "(median) | updates/s |",
                "|---|---|---|---|---|---|---|",
                f"| ours | small + XS-matched overrides | {o['params_trained']:,} ({o['params']:,}) | "
                f"{o['s_per_update']:.2f} | {quart(o)} | {o['cpu_s_per_update']:.2f} | {1 / o['s_per_update']:.2f} |",
                f"| SheepRL | {s['config']} | {s['params_trained']:,} (+{s['param_counts']['target_critic']:,} "
                f"target critic) | {s['s_per_update']:.2f} | {quart(s)} | {s['cpu_s_per_update']:.2f} | "
                f"{1 / s['s_per_update']:.2f} |", "",
                f"Ours is **{sp['speedup_ours_over_sheeprl']:.2f}x** SheepRL's update speed in wall time "
                f"({sp['cpu_speedup_ours_over_sheeprl']:.2f}x in CPU time) at "
                f"{100 * (sp['params_ratio_ours_over_sheeprl'] - 1):+.2f}% trained parameters.", ""]
    if rows:
        out += ["**End to end** (one env, 1 thread, same budget each; return = mean of the last 10 training "
                "episodes, best = best 10-episode window)", "",
                "| task | system | seed | config | B x T | replayed steps / env step | wall (s) | CPU (s) | env steps "
                "| env steps/s | updates | updates/s | peak RSS (MB) | return (last 10) | best 10 | first solve (s, steps) |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                out.append(f"| {r['task']} | {r['system']} | failed: {r['error'].splitlines()[-1][:80]} |")
                continue
            solved = ("–" if "solve_target" not in r else "never" if r["time_to_solve_s"] is None
                      else f"{r['time_to_solve_s']:.0f}, {r['steps_to_solve']}")
            out.append(f"| {r['task']} | {r['system']} | {r.get('seed', '–')} | {r['config']} | {r['batch']} | "
                       f"{r['replayed_per_env_step']:.0f} "
                       f"| {r['wall_s']:.0f} | {fmt(r['cpu_s'], '.0f')} | {r['env_steps']} | {r['env_steps_per_s']:.1f} "
                       f"| {r['updates']} | {r['updates_per_s']:.3f} | {fmt(r['peak_rss_mb'], '.0f')} | "
                       f"{fmt(r['last10_return'])} | "
                       f"{fmt(r['best10_return'])} | {solved} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m benchmarks.sheeprl.compare " + shlex.join(argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.sheeprl.compare", description=__doc__.split("\n")[0])
    p.add_argument("--task", nargs="+", default=["CartPole-v1"], help="Gymnasium ids (vector obs); (a) uses the first")
    p.add_argument("--updates", type=int, default=8, help="(a) timed updates per system and round")
    p.add_argument("--rounds", type=int, default=2, help="(a) alternating rounds ours / SheepRL")
    p.add_argument("--budget-s", type=float, default=300, help="(b) wall-clock budget per run")
    p.add_argument("--steps", type=int, default=100_000, help="(b) env-step budget per run")
    p.add_argument("--ours-preset", default="small")
    p.add_argument("--sheeprl-preset", default="XS", help="dreamer_v3_<preset>: XS, S, M, L, XL")
    p.add_argument("--replay-ratio", type=float, default=0.5,
                   help="(b) SheepRL gradient steps per env step (0.5 x 16 x 64 = 512 replayed steps per env step, "
                        "DreamerV3's and our config's default; SheepRL's exp default is 1)")
    p.add_argument("--speed-replay-ratio", type=float, default=0.5, help="(a) SheepRL replay ratio while timing")
    p.add_argument("--seed", type=int, default=0, help="SheepRL's seed (and ours without --seeds)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="(b) our seeds, one run each")
    p.add_argument("--solve", type=float, default=None,
                   help="(b) also report the wall time until a training episode first reaches this return")
    p.add_argument("--parallel", action="store_true",
                   help="(b) run SheepRL beside ours, each pinned to its own CPU (ours' seeds one after another)")
    p.add_argument("--sheeprl-budget-s", type=float, default=None, help="(b) SheepRL's budget (default --budget-s)")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--keep", default="", help="keep the runs' directories here (default: a temp dir, removed)")
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    sheeprl_python()
    if args.keep:
        workroot = Path(args.keep).resolve()
        workroot.mkdir(parents=True, exist_ok=True)
        workroot = Path(tempfile.mkdtemp(prefix="compare-", dir=workroot))
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="sheeprl-compare-")
        workroot = Path(cleanup.name)
    version = sheeprl_version()
    print(f"SheepRL {version} ({children.VENV}); work dir {workroot}", flush=True)
    sp, rows = None, []
    try:
        if not args.skip_speed:
            print("(a) time per update, matched size", flush=True)
            sp = speed(args, workroot)
        if not args.skip_e2e:
            print("(b) end to end", flush=True)
            rows = e2e(args, workroot)
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    from benchmarks.common import record
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "worldmodel", "planners", "envs"],
                           capture_output=True, text=True, cwd=ROOT).stdout.split("\n")
    record("sheeprl", {"sheeprl_version": version, "tree_dirty": [line for line in dirty if line.strip()],
                       "speed": sp, "e2e": rows,
                       "settings": {k: v for k, v in vars(args).items() if k != "keep"}}, command)
    print()
    print(tables(sp, rows))
    if rows and args.solve is not None:
        print("\n" + "\n".join(solve_summary(rows, args.solve)))
    print(f"\nreproduce: bash benchmarks/sheeprl/install.sh && {command}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
