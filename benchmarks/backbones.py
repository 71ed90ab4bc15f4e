"""Backbone benchmark (issue 10): gru vs ssm vs hybrid dynamics.

  python -m benchmarks.backbones --lengths 64 256 1024 [--batch 4] [--preset small] [--threads 1]
  python -m benchmarks.backbones --ratios [--lengths 256] [--repeats 10]
  python -m benchmarks.backbones --learn [--distances 8 24] [--learn-steps 4000] [--seeds 0] [--reveal]

Timing, for each backbone and sequence length T, medians of --repeats on a synthetic
CueMemory-shaped batch (B, T) with one reset inside each sequence:
  ms_per_update  one world-model update: model.loss forward + backward (no optimizer), the
                 posterior states kept alive through backward as Agent.train_step keeps them
                 (they are its imagination starts)
  ms_dynamics    the part of that update spent in the backbone: rssm.observe forward and
                 backward (the encoder's backward rides along; it is tiny here)
  ms_heads       the rest: encoder forward, decoder, reward / continue heads, KL -- the same
                 modules for every backbone
  ms_train_step  Agent.train_step: the update above plus clipping and Adam, then the planner
                 update (imagination from up to behavior.starts posterior states, actor, critic)
  ms_imagine     that imagination alone (behavior.horizon img_steps from the same number of
                 starts, random actions, no gradients): the backbone's share of the planner update
Backbone-independent work per train step is then about ms_train_step - ms_dynamics - ms_imagine.

Peak memory of one update, two ways, each (backbone, T) in a fresh subprocess:
  peak_update_mb  growth of the process's max RSS over its first update (ru_maxrss is
                  monotonic, so a fresh process is what makes the delta that update's own
                  peak). What the OS sees: it includes one-time costs of a first update and
                  the allocator's slack, which depends on the sizes and order of allocations.
  peak_live_mb    peak of live tensor bytes during a later update, from the profiler's memory
                  timeline: the same accounting for every backbone, no allocator effects.
CPU only as written.

Ratios (--ratios): the world-model update of every backbone built in one process and timed
in turn (gru, ssm, hybrid, then the reverse order, ...), so that the machine's drift between
separate processes does not enter the ratio to the GRU's time (median of --repeats rounds).

Learning (--learn): train each backbone on worldmodel/CueMemory-v0 at each cue distance
for a short budget, then evaluate greedily; a memoryless policy scores 0 on average.
`--reveal` uses CueMemory(reveal=True), whose last observation shows the cue again.

Results: a table on stdout, a PNG (time and memory against T), and one JSONL record in
benchmarks/results/backbones.jsonl.
"""
from __future__ import annotations

import argparse
import functools
import json
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BACKBONES = ("gru", "ssm", "hybrid")
ENV = "worldmodel/CueMemory-v0"


def _model(kind: str, presets: list[str], overrides: dict[str, Any]):
    import gymnasium as gym

    import envs  # noqa: F401  (registers worldmodel/ envs)
    from envs.spaces import action_spec, obs_spec
    from worldmodel.agent import build_model
    from worldmodel.config import load_config
    cfg = load_config(presets, {"model.dynamics": kind, "env.id": ENV, **overrides})
    env = gym.make(ENV)
    spec, act = obs_spec(env.observation_space), action_spec(env.action_space)
    env.close()
    return build_model(cfg, spec, act), spec, act


def _batch(spec, act, B: int, T: int):
    import torch
    g = torch.Generator().manual_seed(0)
    batch = {k.name: torch.rand(B, T, *k.shape, generator=g) for k in spec.keys}
    idx = torch.randint(0, act.dim, (B, T), generator=g)
    batch["action"] = torch.nn.functional.one_hot(idx, act.dim).float()
    batch["reward"] = torch.randn(B, T, generator=g)
    batch["is_first"] = torch.zeros(B, T, dtype=torch.bool)
    batch["is_first"][:, 0] = True
    batch["is_first"][:, T // 2] = True  # one reset inside each sequence, as replay yields
    batch["is_last"] = torch.zeros(B, T, dtype=torch.bool)  # ...after a time limit (critic.replay_loss reads it)
    batch["is_last"][:, T // 2 - 1] = True
    batch["is_terminal"] = torch.zeros(B, T, dtype=torch.bool)
    batch["mask"] = torch.ones(B, T, dtype=torch.bool)
    return batch


def _update(model, batch) -> None:
    """One world-model update without the optimizer: model.loss forward and backward."""
    model.zero_grad(set_to_none=True)
    total, _, post = model.loss(batch)  # post stays alive through backward, as in training
    total.backward()


def _live_peak_mb(fn) -> float | None:
    """Peak of the bytes of tensors that fn() allocated and still holds, while it runs, from
    the profiler's memory timeline (a private torch API: None if it is missing). Frees of
    tensors from before fn() (such as last update's gradients) do not count."""
    try:
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import Action, MemoryProfile
    except ImportError:
        return None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        fn()
    live, peak, created = 0, 0, set()
    for _, action, key, size in MemoryProfile(prof.profiler.kineto_results).timeline:
        if action == Action.CREATE:
            created.add(key)
            live += size
        elif action == Action.DESTROY and key in created:
            live -= size
        peak = max(peak, live)
    return peak / 2**20


def _split_update(model, batch) -> tuple[float, float]:
    """One update with the backbone cut out of the graph: (seconds in the backbone's forward
    and backward, seconds in everything else). rssm.observe's outputs reach model.loss as
    fresh leaves; their gradients are then sent back through the backbone separately."""
    import torch
    rssm, inner, pairs, clock = model.rssm, model.rssm.observe, {}, {}

    def observe(*args, **kwargs):
        t0 = time.perf_counter()
        out = inner(*args, **kwargs)
        clock["forward"] = time.perf_counter() - t0

        def cut(v):
            if not v.requires_grad:
                return v
            if id(v) not in pairs:  # post and prior share deter and the carries
                pairs[id(v)] = (v, v.detach().requires_grad_())
            return pairs[id(v)][1]
        return tuple({k: cut(v) for k, v in state.items()} for state in out)

    model.zero_grad(set_to_none=True)
    rssm.observe = observe
    try:
        t0 = time.perf_counter()
        total, _, post = model.loss(batch)
        total.backward()
        t1 = time.perf_counter()
        sent = [(v, leaf.grad) for v, leaf in pairs.values() if leaf.grad is not None]
        torch.autograd.backward([v for v, _ in sent], [g for _, g in sent])
        t2 = time.perf_counter()
    finally:
        del rssm.observe
    return clock["forward"] + (t2 - t1), (t1 - t0) - clock["forward"]


def measure(kind: str, T: int, B: int, presets: list[str], overrides: dict[str, Any], repeats: int,
            threads: int) -> dict[str, Any]:
    """One (backbone, T) point; meant to run in a fresh process (see `_subprocess`)."""
    import torch

    from worldmodel.agent import Agent
    from worldmodel.config import load_config
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, spec, act = _model(kind, presets, overrides)
    batch = _batch(spec, act, B, T)

    def update() -> None:
        _update(model, batch)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    update()
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024

    cfg = load_config(presets, {"model.dynamics": kind, "env.id": ENV, **overrides})
    agent = Agent(cfg, spec, act)
    data = {k: v.numpy() for k, v in batch.items()}
    with torch.no_grad():
        _, _, post = agent.model.loss(batch)
    starts = min(B * T, cfg.behavior.starts or B * T)
    start = {k: v.flatten(0, 1)[:starts] for k, v in post.items()}
    H = cfg.behavior.horizon
    actions = torch.nn.functional.one_hot(torch.randint(0, act.dim, (starts, H)), act.dim).float()

    def imagine() -> None:
        with torch.no_grad():
            agent.model.imagine(start, actions, H)

    clocks: dict[str, list[float]] = {k: [] for k in ("update", "dynamics", "heads", "train_step", "imagine")}
    for _ in range(repeats):  # interleaved, so a slow spell of a shared machine hits all alike
        t0 = time.perf_counter()
        update()
        clocks["update"].append(time.perf_counter() - t0)
        dynamics, heads = _split_update(model, batch)
        clocks["dynamics"].append(dynamics)
        clocks["heads"].append(heads)
        t0 = time.perf_counter()
        agent.train_step(data)
        clocks["train_step"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        imagine()
        clocks["imagine"].append(time.perf_counter() - t0)
    ms = {k: statistics.median(v) * 1e3 for k, v in clocks.items()}
    return {"backbone": kind, "T": T, "batch": B, "ms_per_update": ms["update"],
            "us_per_step": ms["update"] * 1e3 / (B * T), "ms_dynamics": ms["dynamics"],
            "ms_heads": ms["heads"], "ms_train_step": ms["train_step"], "ms_imagine": ms["imagine"],
            "imagine_starts": starts, "peak_update_mb": peak_mb, "peak_live_mb": _live_peak_mb(update),
            "params": sum(p.numel() for p in model.parameters())}


def _subprocess(kind: str, T: int, args: argparse.Namespace) -> dict[str, Any]:
    spec = json.dumps({"kind": kind, "T": T, "B": args.batch, "presets": args.preset,
                       "overrides": dict(kv.split("=", 1) for kv in args.set), "repeats": args.repeats,
                       "threads": args.threads})
    code = ("import json, sys; from benchmarks.backbones import measure; a = json.loads(sys.argv[1]); "
            "print(json.dumps(measure(a['kind'], a['T'], a['B'], a['presets'], a['overrides'], "
            "a['repeats'], a['threads'])))")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True, cwd=root)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"backbone": kind, "T": T, "batch": args.batch, "error": tail}
    return json.loads(out.stdout.strip().splitlines()[-1])


def ratios(args: argparse.Namespace) -> list[dict[str, Any]]:
    """For each T: median ms of one world-model update per backbone, timed in alternating
    order in this process, and its ratio to the GRU's."""
    import torch

    from benchmarks.speed import alternate
    torch.set_num_threads(args.threads)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    rows = []
    for T in args.lengths:
        work = {}
        for kind in args.backbones:
            torch.manual_seed(0)
            model, spec, act = _model(kind, args.preset, overrides)
            batch = _batch(spec, act, args.batch, T)

            work[kind] = functools.partial(_update, model, batch)
            work[kind]()  # warm-up
        # CPU seconds: steadier than wall time on a shared machine (one thread: the same)
        cpu = alternate(work, args.repeats)
        for kind in args.backbones:
            row = {"backbone": kind, "T": T, "batch": args.batch, "cpu_ms_per_update": cpu[kind] * 1e3,
                   "of_gru": cpu[kind] / cpu["gru"] if "gru" in cpu else None}
            rows.append(row)
            ratio = "" if row["of_gru"] is None else f"{row['of_gru']:.2f}x the GRU's ({1 / row['of_gru']:.2f}x faster)"
            print(f"{kind:<8} {T:>6} {row['cpu_ms_per_update']:>10.1f} ms  {ratio}", flush=True)
    return rows


def timing(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    print(f"{'backbone':<8} {'T':>6} {'ms/update':>10} {'dynamics':>9} {'heads':>6} {'train step':>11} "
          f"{'imagine':>8} {'RSS MB':>7} {'live MB':>8}")
    for T in args.lengths:
        for kind in args.backbones:
            row = _subprocess(kind, T, args)
            rows.append(row)
            if "error" in row:
                print(f"{kind:<8} {T:>6}  failed: {row['error']}")
            else:
                live = "n/a" if row["peak_live_mb"] is None else f"{row['peak_live_mb']:.1f}"
                print(f"{kind:<8} {T:>6} {row['ms_per_update']:>10.1f} {row['ms_dynamics']:>9.1f} "
                      f"{row['ms_heads']:>6.1f} {row['ms_train_step']:>11.1f} {row['ms_imagine']:>8.1f} "
                      f"{row['peak_update_mb']:>7.1f} {live:>8}", flush=True)
    return rows


def plot(rows: list[dict[str, Any]], out: Path, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    panels = [(("ms_per_update", "-"), ("ms_train_step", ":"), "time (ms): update -, whole train step :"),
              (("peak_live_mb", "-"), ("peak_update_mb", ":"),
               "peak memory of an update (MB): live tensors -, RSS growth :")]
    for i, (*series, label) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, kind in enumerate(BACKBONES):
            for key, style in series:
                pts = sorted((r["T"], r[key]) for r in rows if r["backbone"] == kind and r.get(key) is not None)
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", color=f"C{j}", label=kind if style == "-" else None)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


def learn(args: argparse.Namespace) -> list[dict[str, Any]]:
    from benchmarks.common import train
    from worldmodel.api import evaluate_run
    rows = []
    print(f"{'backbone':<8} {'distance':>8} {'seed':>4} {'train return':>12} {'eval return':>11} {'wall s':>7}")
    for distance in args.distances:
        for kind in args.backbones:
            for seed in args.seeds:
                with tempfile.TemporaryDirectory() as tmp:
                    run = str(Path(tmp) / "run")
                    over = {"model.dynamics": kind, "env.kwargs": {"length": distance, "reveal": args.reveal},
                            "run.steps": args.learn_steps, "run.seed": seed, "run.logdir": run,
                            "run.progress": False, "run.threads": args.threads, "run.video_every": 0,
                            # a replayed sequence must hold the cue and the answer together
                            "replay.length": max(distance + 4, 16),
                            **dict(kv.split("=", 1) for kv in args.set)}
                    t0 = time.time()
                    summary = train(env=ENV, presets=args.preset, overrides=over)
                    wall = time.time() - t0
                    ev = evaluate_run(run, episodes=args.eval_episodes)
                row = {"backbone": kind, "distance": distance, "reveal": args.reveal, "seed": seed,
                       "steps": args.learn_steps,
                       "train_return": summary.get("return"), "eval_return": ev["return_mean"], "wall_s": wall}
                rows.append(row)
                tr = "n/a" if row["train_return"] is None else f"{row['train_return']:.2f}"
                print(f"{kind:<8} {distance:>8} {seed:>4} {tr:>12} {row['eval_return']:>11.2f} {wall:>7.0f}",
                      flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m benchmarks.backbones " + " ".join(shlex.quote(a) for a in argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.backbones", description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024], help="sequence lengths T")
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    p.add_argument("--batch", type=int, default=4, help="sequences per update (timing)")
    p.add_argument("--preset", nargs="+", default=["small"], help="model size presets")
    p.add_argument("--set", nargs="*", default=[], help="dotted overrides key=value, e.g. model.ssm_state=8")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="PNG (default benchmarks/results/backbones.png)")
    p.add_argument("--ratios", action="store_true",
                   help="time every backbone's update in one process, in turn, against the GRU's")
    p.add_argument("--learn", action="store_true", help="train on CueMemory instead of timing")
    p.add_argument("--distances", type=int, nargs="+", default=[8, 24], help="--learn: cue distances")
    p.add_argument("--learn-steps", type=int, default=4000, help="--learn: env steps per run")
    p.add_argument("--reveal", action="store_true",
                   help="--learn: CueMemory(reveal=True), the cue shown again after the answer")
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = p.parse_args(argv)
    from benchmarks.common import RESULTS, record
    if args.ratios:
        rows = ratios(args)
        record("backbones", {"kind": "ratios", "presets": args.preset, "threads": args.threads,
                             "repeats": args.repeats, "rows": rows}, command)
    elif args.learn:
        rows = learn(args)
        record("backbones", {"kind": "learn", "presets": args.preset, "runs": rows}, command)
    else:
        rows = timing(args)
        if all("error" in r for r in rows):  # keep the last good plot and record nothing
            print("every point failed; nothing recorded", file=sys.stderr)
            return 1
        RESULTS.mkdir(exist_ok=True)
        out = Path(args.out) if args.out else RESULTS / "backbones.png"
        title = f"backbones, preset {' '.join(args.preset)}, batch {args.batch}, {args.threads} thread(s)"
        print(f"wrote {plot(rows, out, title)}")
        record("backbones", {"kind": "timing", "presets": args.preset, "rows": rows}, command)
    print(f"reproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
