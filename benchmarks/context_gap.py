"""Context gap: do the heads see the same states when acting as when training?

  python -m benchmarks.context_gap --run runs/cartpole [--window 32] [--points 20]

Acting runs one posterior over a whole episode; training runs it over replayed sequences
of `replay.length` steps (from zeros, or from the replay context). For late steps of the
run's replayed episodes (>= 2 * window into them, `--points` random steps per episode of at
least `--min-length` steps), this loads the run's newest checkpoint and compares the
reward and continue heads' absolute errors against the real reward and 1 - is_terminal,
with the posterior computed (a) over the whole episode up to that step, as when acting,
and (b) over only the last `--window` steps from a zero state, as training without a
replay context sees it. A large gap means the heads were never trained on the states the
agent acts from. Results go to benchmarks/results/context_gap.jsonl.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

FIELDS = ("action", "reward", "is_first", "is_terminal")


def _episodes(run: Path, keys: list[str]) -> tuple[dict[str, np.ndarray], list[tuple[int, int]]]:
    """Lane 0 of the run's replay (chunks + newest checkpoint) in order, and (start, end) of
    every episode held from its first step. Read only: the run may still be training."""
    from worldmodel.resume import load_replay
    replay = load_replay(run, prune=False)
    idx = np.arange(int(replay._oldest()[0]), int(replay.count[0])) % replay.size
    data = {k: replay.data[k][0, idx] for k in [*keys, *FIELDS]}
    starts = list(np.flatnonzero(data["is_first"])) + [len(idx)]
    return data, list(zip(starts[:-1], starts[1:]))


def measure(run: str, window: int = 32, points: int = 20, min_length: int = 150, seed: int = 0) -> dict[str, Any]:
    import worldmodel
    agent = worldmodel.load(run)
    model = agent.model
    keys = [k.name for k in model.obs_spec.keys]
    data, episodes = _episodes(Path(run), keys)

    @torch.no_grad()
    def heads(s: int, e: int) -> tuple[np.ndarray, np.ndarray]:
        batch = {k: torch.as_tensor(data[k][s:e][None]) for k in [*keys, "action", "is_first"]}
        batch["is_first"] = batch["is_first"].clone()
        batch["is_first"][:, 0] = True  # a window starts from zeros, as a replayed sequence did
        post, _ = model.posterior(batch)
        feat = model.feat(post)[0]
        return model.reward(feat).numpy(), model.cont(feat).numpy()

    rng = np.random.default_rng(seed)
    err = {"reward_full": [], "reward_window": [], "cont_full": [], "cont_window": []}
    used = 0
    for s, e in episodes:
        if e - s < max(min_length, 2 * window + 1):
            continue
        used += 1
        reward_full, cont_full = heads(s, e)
        for t in rng.choice(np.arange(2 * window, e - s), size=min(points, e - s - 2 * window), replace=False):
            reward_win, cont_win = heads(s + t - window + 1, s + t + 1)
            reward, cont = data["reward"][s + t], 1.0 - float(data["is_terminal"][s + t])
            err["reward_full"].append(abs(reward_full[t] - reward))
            err["reward_window"].append(abs(reward_win[-1] - reward))
            err["cont_full"].append(abs(cont_full[t] - cont))
            err["cont_window"].append(abs(cont_win[-1] - cont))
    if not used:
        raise ValueError(f"{run}: no replayed episode of {max(min_length, 2 * window + 1)}+ steps to measure")
    return {"run": str(run), "window": window, "episodes": used, "points": len(err["cont_full"]),
            **{k: float(np.mean(v)) for k, v in err.items()}}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import record
    ap = argparse.ArgumentParser(prog="python -m benchmarks.context_gap", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a training run directory (kept with --keep or --logdir)")
    ap.add_argument("--window", type=int, default=32, help="steps of the training-like posterior")
    ap.add_argument("--points", type=int, default=20, help="late steps measured per episode")
    ap.add_argument("--min-length", type=int, default=150, help="episodes shorter than this are skipped")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from worldmodel.checkpoint import CheckpointError
    try:
        out = measure(args.run, args.window, args.points, args.min_length)
    except (FileNotFoundError, ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = "python -m benchmarks.context_gap " + shlex.join(argv if argv is not None else sys.argv[1:])
    record("context_gap", out, command)
    print(f"{out['run']}: {out['points']} late steps of {out['episodes']} episodes, window {out['window']}")
    print("| head | |error|, posterior over the whole episode (acting) | over the last window (training) |")
    print("|---|---|---|")
    for head in ("reward", "cont"):
        print(f"| {head} | {out[head + '_full']:.4f} | {out[head + '_window']:.4f} |")
    print(f"\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
