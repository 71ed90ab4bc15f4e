"""Memory probe (issue 10): can each backbone's world model carry a cue across a gap?

  python -m benchmarks.memory_probe [--backbones gru ssm hybrid] [--distances 2 8 24]
                                    [--rewards cue xor] [--updates 4000] [--seeds 0]
                                    [--answer-p0 0.5]

The CueMemory task (envs/builtin/cue_memory.py) tests memory only through the whole agent,
where a policy must first learn from the model's rewards. This probe isolates the part the
backbone decides: the world model alone (no actor, no env) is trained on sequences that
follow CueMemory's layout exactly -- a cue one-hot at obs 0, `distance` blank obs, the query
flag at obs `distance`, the answer action there, and the reward on the terminal obs after it
-- with uniformly random cues and answers, and asked to predict that reward:

  cue   reward +1 if the cue is 0, else -1: pure memory, the answer does not matter
  xor   reward +1 if the answer equals the cue (CueMemory's own reward): memory and action

`--reveal` lays the episodes out as CueMemory(reveal=True) does: the terminal obs shows the
cue again, so the decoder's loss asks for the cue across the gap too.

Answers are uniform, as an untrained actor gives them; `--answer-p0 P` makes answer 0 come
with probability P whatever the cue, as a biased policy's would. With the xor reward the
cue alone then predicts part of the reward (P = 0.75: 75% of signs).

`--readout mse` / `--readout twohot` measure the backbone's memory apart from the world
model's other losses: only the encoder, the dynamics and a fresh readout MLP on the
terminal step's feature [h, z] are trained (no decoder, no KL, no heads at other steps),
the readout regressing the terminal reward by squared error (`mse`) or by the reward
head's two-hot cross-entropy from a zero-initialised output layer (`twohot`).
`--readout twohot-every` trains that two-hot readout on the reward of every step, as the
world model's reward head is trained (0 at all but the terminal step). The default,
`--readout world-model`, trains the whole world-model loss and reads its reward head.

Every `--every` updates the sign of the predicted terminal reward is scored on a fresh
batch of 256 episodes. Reported: the first update count at which that accuracy reaches
`--target` (0.95) and stays there for the next check too, or "not within" --updates.
Chance is 0.5. With the world-model readout each check also records how the posterior
latent carries the cue (`cue_in_latent`): "cue groups", about the number of latent groups
that encode the cue at the cue step, and "blank H", the sampling noise (entropy per group)
the latent feeds the dynamics at a blank step. Results go to
benchmarks/results/memory_probe.jsonl.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

import numpy as np

BACKBONES = ("gru", "ssm", "hybrid")
READOUTS = ("world-model", "mse", "twohot", "twohot-every")


def episodes(rng: np.random.Generator, batch: int, distance: int, reward: str,
             answer_p0: float = 0.5, reveal: bool = False) -> dict[str, np.ndarray]:
    """`batch` CueMemory episodes of `distance` + 2 obs each (2 cues), as replay stores them:
    obs_t, the action taken at obs_t, the reward received on arriving at obs_t. The answer is
    0 with probability `answer_p0` (a policy's bias), whatever the cue. `reveal`: the terminal
    obs shows the cue again, as CueMemory(reveal=True) does."""
    T = distance + 2
    cue = rng.integers(0, 2, batch)
    # the uniform case keeps its original draw, so earlier probes reproduce
    answer = rng.integers(0, 2, batch) if answer_p0 == 0.5 else (rng.random(batch) >= answer_p0).astype(np.int64)
    obs = np.zeros((batch, T, 3), np.float32)
    obs[np.arange(batch), 0, cue] = 1.0                     # the cue, at obs 0 only
    obs[:, distance, 2] = 1.0                               # the query flag
    if reveal:
        obs[np.arange(batch), -1, cue] = 1.0                # the cue again, after the answer
    blank = rng.integers(0, 2, (batch, T))                  # actions at blank obs are ignored
    action = np.eye(2, dtype=np.float32)[np.where(np.arange(T) == distance, answer[:, None], blank)]
    action[:, -1] = 0.0                                     # nothing is taken at the last obs
    pays = cue == 0 if reward == "cue" else cue == answer
    rew = np.zeros((batch, T), np.float32)
    rew[:, -1] = np.where(pays, 1.0, -1.0)
    last = np.zeros((batch, T), bool)
    last[:, -1] = True
    first = np.zeros((batch, T), bool)
    first[:, 0] = True
    return {"obs": obs, "action": action, "reward": rew, "is_first": first, "is_last": last,
            "is_terminal": last, "cost": np.zeros((batch, T), np.float32), "mask": np.ones((batch, T), bool)}


def features(model: Any, batch: dict[str, Any]) -> Any:
    """The posterior feature [h, z] of every step (B, T, F), as `model.loss` computes it."""
    post, _ = model.posterior(batch)
    return model.rssm.feat(post)


def cue_in_latent(logits: Any, cue0: Any, blank: int) -> tuple[float, float]:
    """How the posterior latent carries the cue. logits (B, T, S, C) of the test episodes,
    cue0 (B,) True where the cue is 0, `blank` the index of a blank step. Returns
    cue_groups: the total variation between the cue step's mean posteriors of the two cues,
      summed over the S latent groups (about 1 per group that encodes the cue; 0 = no cue)
    blank_entropy: the mean entropy (nats) of one latent group's posterior at the blank
      step, i.e. the sampling noise each group feeds the dynamics where nothing is seen."""
    p = logits.float().softmax(-1)
    cue_groups = 0.5 * (p[cue0, 0].mean(0) - p[~cue0, 0].mean(0)).abs().sum(-1).sum()
    q = p[:, blank]
    blank_entropy = -(q * q.clamp_min(1e-12).log()).sum(-1).mean()
    return float(cue_groups), float(blank_entropy)


class Readout:
    """The loss and the prediction of the reward from the backbone's features (B, T, F): a
    world-model-style MLP ending in one output (`mse`) or in the reward head's two-hot bins
    with a zero-initialised output layer (`twohot`, `twohot-every`). The loss covers the
    terminal step, or every step (`twohot-every`); the prediction is the terminal step's."""

    def __init__(self, kind: str, model: Any, cfg: Any) -> None:
        from worldmodel.nets import MLP
        twohot = kind.startswith("twohot")
        self.kind, self.twohot, self.every = kind, model.twohot, kind == "twohot-every"
        self.net = MLP(model.feat_dim, cfg.model.bins if twohot else 1, cfg.model.units, cfg.model.layers,
                       out_scale=0.0 if twohot else 1.0)

    def loss(self, feat: Any, reward: Any) -> Any:
        """feat (B, T, F), reward (B, T) -> scalar."""
        if not self.every:
            feat, reward = feat[:, -1], reward[:, -1]
        if self.kind != "mse":
            return self.twohot.loss(self.net(feat), reward).mean()
        return ((self.net(feat).squeeze(-1) - reward) ** 2).mean()

    def predict(self, feat: Any) -> Any:
        """feat (B, T, F) -> the predicted terminal reward (B,)."""
        out = self.net(feat[:, -1])
        return out.squeeze(-1) if self.kind == "mse" else self.twohot.mean(out)


def probe(backbone: str, distance: int, reward: str, updates: int, every: int, target: float, seed: int,
          presets: list[str], batch: int, overrides: dict[str, Any], readout: str = "world-model",
          answer_p0: float = 0.5, reveal: bool = False) -> dict[str, Any]:
    import gymnasium as gym
    import torch

    import envs  # noqa: F401  (registers worldmodel/ envs)
    from envs.spaces import action_spec, obs_spec
    from worldmodel.agent import Agent
    from worldmodel.config import load_config
    torch.manual_seed(seed)
    env = gym.make("worldmodel/CueMemory-v0", length=distance)
    cfg = load_config(presets, {"env.id": "worldmodel/CueMemory-v0", "model.dynamics": backbone,
                                "run.seed": seed, **overrides})
    agent = Agent(cfg, obs_spec(env.observation_space), action_spec(env.action_space), "cpu",
                  env.observation_space, env.action_space)
    env.close()
    model, opt, params = agent.model, agent.model_opt, list(agent.model.parameters())
    head = None
    if readout != "world-model":  # the encoder and the backbone, and a fresh readout
        from worldmodel.nets import adam
        head = Readout(readout, model, cfg)
        params = [*model.vec_encoder.parameters(), *model.rssm.parameters(), *head.net.parameters()]
        opt = adam(params, cfg.train.model_lr, cfg.train.adam_eps)
    rng, test_rng = np.random.default_rng(seed), np.random.default_rng(10_000 + seed)
    curve: list[tuple[int, float]] = []
    trace: list[tuple[int, float, float]] = []  # (update, cue_groups, blank_entropy), world-model readout
    reached = None
    t0 = time.time()
    for step in range(1, updates + 1):
        data = agent.to_batch(episodes(rng, batch, distance, reward, answer_p0, reveal))
        if head is None:
            total, _, _ = model.loss(data)
        else:
            total = head.loss(features(model, data), data["reward"])
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, agent.model_clip)
        opt.step()
        if step % every == 0:
            test = agent.to_batch(episodes(test_rng, 256, distance, reward, answer_p0, reveal))
            with torch.no_grad():
                if head is None:
                    _, _, post = model.loss(test)
                    pred = model.reward(model.rssm.feat(post)[:, -1])
                else:
                    pred = head.predict(features(model, test))
            acc = float(((pred > 0) == (test["reward"][:, -1] > 0)).float().mean())
            curve.append((step, acc))
            if head is None:
                trace.append((step, *cue_in_latent(post["logits"], test["obs"][:, 0, 0] > 0.5, distance // 2)))
            # a probe can run for tens of minutes: one line per check shows it moving
            print(f"  {backbone} distance {distance} seed {seed}: update {step:,}, sign accuracy {acc:.2f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
            if reached is None and len(curve) >= 2 and min(a for _, a in curve[-2:]) >= target:
                reached = curve[-2][0]
                break
    return {"backbone": backbone, "distance": distance, "reward": reward, "readout": readout, "seed": seed,
            "updates": updates, "answer_p0": answer_p0, "reveal": reveal,
            "batch": batch, "target": target, "reached": reached, "final_accuracy": curve[-1][1] if curve else None,
            "curve": curve, "trace": trace, "wall_s": time.time() - t0}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = "python -m benchmarks.memory_probe " + " ".join(shlex.quote(a) for a in argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory_probe", description=__doc__.split("\n")[0])
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    p.add_argument("--distances", type=int, nargs="+", default=[2, 8, 24])
    p.add_argument("--rewards", nargs="+", default=["cue", "xor"], choices=["cue", "xor"])
    p.add_argument("--readout", default="world-model", choices=READOUTS,
                   help="what is trained: the whole world model, or the backbone and a readout (see above)")
    p.add_argument("--updates", type=int, default=4000, help="most world-model updates per probe")
    p.add_argument("--every", type=int, default=100, help="updates between accuracy checks")
    p.add_argument("--target", type=float, default=0.95, help="accuracy that counts as learned")
    p.add_argument("--batch", type=int, default=16, help="episodes per update")
    p.add_argument("--answer-p0", type=float, default=0.5,
                   help="probability that an episode's answer is 0, whatever the cue (0.5: uniform, as an "
                        "untrained actor answers); with the xor reward, a bias lets the cue alone predict part "
                        "of the reward")
    p.add_argument("--reveal", action="store_true",
                   help="the terminal obs shows the cue again (CueMemory's reveal=True): the decoder asks for memory")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--preset", nargs="+", default=["small"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", nargs="*", default=[], help="dotted overrides key=value")
    args = p.parse_args(argv)
    if not 0.0 <= args.answer_p0 <= 1.0:
        p.error(f"--answer-p0 is a probability: it must be in [0, 1], got {args.answer_p0}")
    import torch
    torch.set_num_threads(args.threads)
    from benchmarks.common import record
    overrides = dict(kv.split("=", 1) for kv in args.set)
    rows = []
    print(f"readout: {args.readout}")
    print(f"{'reward':<6} {'distance':>8} {'backbone':<8} {'seed':>4} {'updates to learn':>16} "
          f"{'final acc':>9} {'wall s':>7} {'cue groups':>10} {'blank H':>7}", flush=True)
    for reward in args.rewards:
        for distance in args.distances:
            for backbone in args.backbones:
                for seed in args.seeds:
                    r = probe(backbone, distance, reward, args.updates, args.every, args.target, seed,
                              args.preset, args.batch, overrides, args.readout, args.answer_p0, args.reveal)
                    rows.append(r)
                    got = f"{r['reached']:,}" if r["reached"] else f"> {args.updates:,}"
                    last = f"{r['trace'][-1][1]:>10.2f} {r['trace'][-1][2]:>7.2f}" if r["trace"] else ""
                    print(f"{reward:<6} {distance:>8} {backbone:<8} {seed:>4} {got:>16} "
                          f"{r['final_accuracy']:>9.2f} {r['wall_s']:>7.0f} {last}", flush=True)
    record("memory_probe", {"rows": rows, "preset": args.preset, "overrides": overrides}, command)
    print(f"\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
