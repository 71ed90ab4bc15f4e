"""Can the world model rank action sequences? A check of what latent MPC relies on.

  python -m benchmarks.plan_ranking --run RUN --horizon 5 --candidates 128

The run's actor drives one episode of its env. At every --every-th step the simulator's
state is copied (classic-control envs keep it in `env.unwrapped.state`), and --candidates
random action sequences of --horizon steps are both imagined in the model from the current
latent and replayed in the real simulator from the copied state. Printed per checkpoint
state and as medians: the correlation of predicted and true H-step reward sums, the true
spread of those sums (how much the choice of sequence matters within the horizon), and the
regret of the model's favourite (true best minus true value of the predicted best).
A small spread with a low correlation means the planner's ranking rests on the critic's
value at the horizon, not on imagined rewards.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import numpy as np


def rank_check(run: str, horizon: int, candidates: int, every: int, steps: int, seed: int) -> list[dict[str, Any]]:
    import torch

    from envs.spaces import encode_obs
    from worldmodel.api import _run_config, load
    from worldmodel.trainer import env_factory
    torch.set_num_threads(1)
    cfg = _run_config(run, {})
    agent = load(run)
    env = env_factory(cfg)()
    obs, _ = env.reset(seed=seed)
    sim = env.unwrapped
    if getattr(sim, "state", None) is None:
        raise SystemExit(f"error: {cfg.env.id} keeps no copyable `unwrapped.state`; this check needs a "
                         "classic-control env such as Pendulum-v1 or CartPole-v1")
    rng = np.random.default_rng(seed)
    carry, first, rows = agent.initial(1), np.array([True]), []
    for t in range(steps):
        batched = {k: np.asarray(v)[None] for k, v in obs.items()} if isinstance(obs, dict) else np.asarray(obs)[None]
        action, _, carry = agent.policy(encode_obs(agent.obs_spec, agent._obs_space, batched), first, carry,
                                        explore=False)
        first = np.array([False])
        if t % every == every // 2:
            saved = np.array(sim.state, copy=True)
            seqs = _random_agent_actions(agent.act_spec, rng, candidates, horizon)
            start = {k: v.repeat_interleave(candidates, 0) for k, v in carry["latent"].items()}
            with torch.no_grad():
                feats, _, _ = agent.model.imagine(start, torch.as_tensor(seqs), horizon)
                predicted = agent.model.reward(feats[:, 1:]).sum(1).numpy()
            true = np.zeros(candidates)
            for k in range(candidates):
                sim.state = saved.copy()
                for h in range(horizon):
                    # the bare simulator: wrappers' step counters (TimeLimit) must not see these
                    _, reward, terminated, _, _ = sim.step(agent.act_spec.to_env(seqs[k, h][None])[0])
                    true[k] += reward
                    if terminated:
                        break
            sim.state = saved.copy()
            best = int(predicted.argmax())
            corr = float(np.corrcoef(predicted, true)[0, 1]) if true.std() > 0 and predicted.std() > 0 else 0.0
            rows.append({"step": t, "corr": corr, "true_spread": float(true.max() - true.mean()),
                         "regret": float(true.max() - true[best])})
            print(f"step {t:>4}: corr {corr:+.2f}  true best - mean {rows[-1]['true_spread']:.2f}  "
                  f"regret of the model's pick {rows[-1]['regret']:.2f}", flush=True)
        obs, _, terminated, truncated, _ = env.step(agent.act_spec.to_env(action)[0])
        if terminated or truncated:
            break
    env.close()
    return rows


def _random_agent_actions(spec: Any, rng: np.random.Generator, n: int, horizon: int) -> np.ndarray:
    """Uniform random agent actions (n, horizon, A): one-hots per head, or [-1, 1] boxes."""
    if not spec.discrete:
        return rng.uniform(-1.0, 1.0, (n, horizon, spec.dim)).astype(np.float32)
    parts = [np.eye(size, dtype=np.float32)[rng.integers(0, size, (n, horizon))] for size in spec.sizes]
    return np.concatenate(parts, -1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plan_ranking", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory of a trained agent (classic-control env)")
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--candidates", type=int, default=128)
    p.add_argument("--every", type=int, default=10, help="check every N-th step of the episode")
    p.add_argument("--steps", type=int, default=120, help="episode steps to drive")
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    rows = rank_check(args.run, args.horizon, args.candidates, args.every, args.steps, args.seed)
    if not rows:
        print("error: the episode ended before the first check; lower --every", file=sys.stderr)
        return 1
    med = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
    print(f"median over {len(rows)} states: corr {med('corr'):+.2f}, true best - mean {med('true_spread'):.2f}, "
          f"regret {med('regret'):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
