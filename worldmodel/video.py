"""Watch the model dream: the real episode | what the model imagines | their difference, as an MP4.

  dream(run, "dream.mp4", context=5, horizon=50)            # open-loop under the real actions
  dream(run, "dream.mp4", mode="policy", planner_spread=True)

Per episode the greedy agent acts in the real env for `context` steps while the model
observes them (posterior). From the last posterior state the model imagines up to `horizon`
steps with its prior only, under
  open-loop  the actions the real agent went on to take, so both panels follow one action
             sequence and every difference is model error;
  policy     actions its own policy picks on imagined states (a pure dream); the real env then
             replays those actions, so the real panel shows where they really lead, frozen with
             a label once the real episode has ended.
How a frame is drawn depends on the observation:
  image obs                          the decoded frames (the agent's own view, upscaled)
  vector obs of an env in STATE_SETTERS  the predicted state is written into a second copy of
                                     the env and drawn by the env's own renderer
  anything else                      line charts of real vs predicted observation values

Legend: T frames of one episode (context + imagined), H horizon, N spread samples,
F feature, A action, D observation size.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from envs import EnvFactory
from envs.spaces import encode_obs

from worldmodel.frames import (GAP, HEADER_H, PANEL_H, SPREAD_SAMPLES, STATE_SETTERS,  # noqa: F401
                               frame_method, register_state_setter, render_frames)

class RealEpisode:
    """One real env episode: encoded obs, rendered frames, rewards and shield verdicts per step."""

    def __init__(self, agent: Any, make_env: Callable[[], gym.Env], rules: str, seed: int) -> None:
        self.agent, self.env = agent, make_env()
        self.shield = None
        if rules:
            from symbolic import Shield, load_rules
            self.shield = Shield(load_rules(rules, self.env.observation_space, self.env.action_space),
                                 self.env.action_space, 1)
        self.obs: list[dict[str, np.ndarray]] = []   # agent encoding per step, {key: (*shape)}
        self.can_render = True                        # until render() fails once
        self.frames: list[np.ndarray | None] = []     # env.render() per step
        self.reward: list[float] = []                 # reward for arriving at each obs
        self.vetoed: list[bool] = []                  # verdict on the action taken at each obs
        self.rule: list[str] = []
        raw, _ = self.env.reset(seed=seed)
        self.done = False
        self._record(raw, 0.0)

    @staticmethod
    def _batched(raw: Any) -> Any:
        return {k: np.asarray(v)[None] for k, v in raw.items()} if isinstance(raw, dict) else np.asarray(raw)[None]

    def _record(self, raw: Any, reward: float) -> None:
        self.raw = raw
        enc = encode_obs(self.agent.obs_spec, self.env.observation_space, self._batched(raw))
        self.obs.append({k: v[0] for k, v in enc.items()})
        frame = None
        if self.env.render_mode == "rgb_array" and self.can_render:
            try:
                frame = self.env.render()
            except Exception as exc:  # noqa: BLE001 - e.g. no OpenGL for MuJoCo: draw charts instead
                print(f"note: {type(exc).__name__} from render() ({str(exc).splitlines()[0][:120] if str(exc) else ''}); "
                      f"the video shows the observation as charts instead", file=sys.stderr)
                self.can_render = False
        self.frames.append(None if frame is None else np.asarray(frame))
        self.reward.append(float(reward))

    def act(self, carry: dict[str, Any]) -> tuple[np.ndarray, Any, dict[str, Any]]:
        """The greedy agent observes the newest obs: -> action (A,), preferences, carry."""
        mask = None
        if self.shield is not None and self.agent.act_spec.kind == "discrete":
            mask = self.shield.rules.allowed_actions(self._batched(self.raw))
        obs = {k: v[None] for k, v in self.obs[-1].items()}
        first = np.array([len(self.obs) == 1])
        action, info, carry = self.agent.policy(obs, first, carry, mask, explore=False)
        return action[0], info.get("preferences"), carry

    def step(self, action: np.ndarray, preferences: Any = None) -> np.ndarray:
        """Execute agent action (A,) through the shield; returns the executed action (A,)."""
        spec = self.agent.act_spec
        env_action = spec.to_env(np.asarray(action, np.float32)[None])
        vetoed, rule = False, ""
        if self.shield is not None:
            env_action, info = self.shield.filter(self._batched(self.raw), env_action, preferences,
                                                  np.array([len(self.obs) == 1]))
            vetoed, rule = bool(info["vetoed"][0]), str(info["rule"][0])
        self.vetoed.append(vetoed)
        self.rule.append(rule if vetoed else "")
        raw, reward, terminated, truncated, _ = self.env.step(env_action[0])
        self.done = bool(terminated or truncated)
        self._record(raw, float(reward))
        return spec.from_env(env_action)[0]

    def close(self) -> None:
        self.env.close()


# -- the dream: context on real observations, then the prior alone -----------------------------
def _imagine_policy(agent: Any, start: dict[str, torch.Tensor], horizon: int,
                    explore: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Imagine with the planner choosing every action: -> feats (N, H+1, F), actions (N, H, A).
    One imagine() call per step, so the planner sees real model states through its interface."""
    model, state = agent.model, start
    feats, actions = [model.feat(start)], []
    for _ in range(horizon):
        action, _ = agent.planner.act(model, state, None, explore)  # (N, A)
        step_feats, _, state = model.imagine(state, action[:, None], 1)
        feats.append(step_feats[:, 1])
        actions.append(action)
    empty = torch.zeros(len(feats[0]), 0, agent.act_spec.dim, device=feats[0].device)
    return torch.stack(feats, 1), torch.stack(actions, 1) if actions else empty


@torch.no_grad()
def dream_episode(agent: Any, make_env: Callable[[], gym.Env], context: int, horizon: int,
                  mode: str, seed: int, rules: str = "", spread: bool = False) -> dict[str, Any]:
    """Play one episode; returns the real side, the model's feats (T, F) and its predictions."""
    real = RealEpisode(agent, make_env, rules, seed)
    model, carry = agent.model, agent.initial(1)
    post = []  # posterior feats (F,) of the observed context steps
    for t in range(context):
        action, pref, carry = real.act(carry)
        post.append(model.feat(carry["latent"])[0])
        if t == context - 1 or real.done:
            break
        carry = agent.executed(carry, real.step(action, pref)[None])
    start = carry["latent"]  # posterior after the last context obs, (1, ...)
    if mode == "open-loop":
        taken = []
        while len(taken) < horizon and not real.done:
            taken.append(real.step(action, pref))
            carry = agent.executed(carry, taken[-1][None])
            if len(taken) < horizon and not real.done:
                action, pref, carry = real.act(carry)
        feats = model.feat(start)[:, None]  # (1, 1, F): the episode ended within the context
        if taken:
            acts = torch.as_tensor(np.stack(taken)[None], dtype=torch.float32, device=agent.device)
            feats, _, _ = model.imagine(start, acts, len(taken))  # (1, n+1, F)
    else:
        feats, acts = _imagine_policy(agent, start, horizon if not real.done else 0, explore=False)
        for a in acts[0].cpu().numpy():  # the real env replays the dreamed actions
            if real.done:
                break
            real.step(a)
    all_feats = torch.cat([torch.stack(post), feats[0, 1:]])  # (T, F): posterior, then prior
    out = {"real": real, "context": len(post), "feats": all_feats,
           "pred": {k: v.float().cpu().numpy() for k, v in model.decode(all_feats).items()},
           "reward": model.reward(all_feats).float().cpu().numpy(),
           "cont": model.cont(all_feats).cpu().numpy(), "cost": model.cost(all_feats).cpu().numpy()}
    if spread:  # N sampled action sequences from the same start: how sure is the model?
        n = max(len(all_feats) - len(post), 1)
        many = {k: v.expand(SPREAD_SAMPLES, *v.shape[1:]).contiguous() for k, v in start.items()}
        sfeats, _ = _imagine_policy(agent, many, n, explore=True)  # (N, n+1, F)
        if agent.obs_spec.vector_keys:
            key = agent.obs_spec.vector_keys[0].name
            out["spread"] = model.decode(sfeats)[key][..., 0].cpu().numpy()
            out["spread_name"], out["spread_real"] = f"{key}[0]", [o[key][0] for o in real.obs]
        else:
            out["spread"] = model.reward(sfeats).float().cpu().numpy()
            out["spread_name"], out["spread_real"] = "reward", real.reward
    return out


# -- drawing ---------------------------------------------------------------------------------------
def write_mp4(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """Frames (H, W, 3) uint8, all one size -> H.264 MP4 (written to a temp name, then renamed)."""
    from moviepy import ImageSequenceClip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.mp4")
    # moviepy sums n float durations of 1/fps and truncates duration*fps, which can lose the
    # last frame (12 frames at 15 fps -> 11); half a frame of slack keeps exactly n.
    clip = ImageSequenceClip(list(frames), fps=fps).with_duration((len(frames) + 0.5) / fps)
    clip.write_videofile(str(tmp), fps=fps, codec="libx264", audio=False, logger=None)
    clip.close()
    tmp.replace(path)
    return path


def _with_render(make_env: Callable[[], gym.Env]) -> Callable[[], gym.Env]:
    return dataclasses.replace(make_env, render=True) if isinstance(make_env, EnvFactory) else make_env


def dream_agent(agent: Any, make_env: Callable[[], gym.Env], out: str | Path, *, context: int = 5,
                horizon: int = 50, episodes: int = 1, mode: str = "open-loop", fps: int = 15,
                planner_spread: bool = False, rules: str = "", seed: int = 0) -> dict[str, Any]:
    """`dream` for an agent in memory (what the trainer calls); see the module docstring."""
    if mode not in ("open-loop", "policy"):
        raise ValueError(f"mode must be 'open-loop' or 'policy', got {mode!r}")
    if context < 1 or horizon < 1 or episodes < 1:
        raise ValueError("context, horizon and episodes must all be at least 1")
    make_env = _with_render(make_env)
    frames, summary = [], []
    devices = [agent.device] if agent.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # leave the training RNG stream untouched
        torch.manual_seed(seed)
        for i in range(episodes):
            ep = dream_episode(agent, make_env, context, horizon, mode, seed + i, rules, planner_spread)
            real, c = ep["real"], ep["context"]
            try:
                method = frame_method(agent, real)
                frames += render_frames(ep, method, make_env, mode=mode, shielded=bool(rules),
                                        label=f"episode {i + 1}/{episodes}   " if episodes > 1 else "")
            finally:
                real.close()
            n = min(len(real.obs), len(ep["feats"]))  # steps with both a real and an imagined side
            key = agent.obs_spec.keys[0].name
            err = [float(np.abs(ep["pred"][key][t] - real.obs[t][key]).mean()) for t in range(c, n)]
            summary.append({"context": c, "imagined": len(ep["feats"]) - c, "real_steps": len(real.obs),
                            "method": method, "obs_error": float(np.mean(err)) if err else None,
                            "reward_error": float(np.mean(np.abs(ep["reward"][c:n] - np.array(real.reward[c:n]))))
                            if n > c else None})
    height, width = max(f.shape[0] for f in frames), max(f.shape[1] for f in frames)
    frames = [np.pad(f, ((0, height - f.shape[0]), (0, width - f.shape[1]), (0, 0))) for f in frames]
    path = write_mp4(frames, Path(out), fps)
    return {"path": str(path), "frames": len(frames), "size": (width, height), "fps": fps,
            "mode": mode, "method": summary[0]["method"], "episodes": summary}


def load_agent(run: str | Path, env: str | Callable[[], gym.Env] | None = None) -> tuple[Any, Any, str]:
    """(agent, env factory, rules) of a run directory; `env` replaces the run's env (needed
    when it was trained on a Python callable, which the run directory cannot name)."""
    from envs.spaces import action_spec, obs_spec
    from worldmodel import checkpoint
    from worldmodel.agent import Agent
    from worldmodel.api import _run_config
    from worldmodel.trainer import env_factory
    cfg = _run_config(run)
    found = checkpoint.load_latest(Path(run) / "checkpoints", "cpu")
    if found is None:
        raise checkpoint.CheckpointError(f"{run} has no checkpoint yet; train it first")
    make_env = _with_render(env_factory(cfg, env))
    probe = make_env()
    agent = Agent(cfg, obs_spec(probe.observation_space), action_spec(probe.action_space), "cpu")
    agent._obs_space = probe.observation_space
    probe.close()
    path, state = found
    try:
        agent.load_state_dict(state["agent"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise checkpoint.CheckpointError(f"{path} does not match the run's config: {str(exc).splitlines()[0]}") from None
    return agent, make_env, cfg.shield.rules


def dream(run: str | Path, out: str | Path, context: int = 5, horizon: int = 50, episodes: int = 1,
          mode: str = "open-loop", fps: int = 15, planner_spread: bool = False, seed: int = 0,
          env: str | Callable[[], gym.Env] | None = None) -> dict[str, Any]:
    """Write an MP4 of a trained run dreaming next to reality; returns {"path", "frames",
    "size" (W, H), "method", "episodes": [per-episode context, imagined steps, errors]}."""
    agent, make_env, rules = load_agent(run, env)
    return dream_agent(agent, make_env, out, context=context, horizon=horizon, episodes=episodes,
                       mode=mode, fps=fps, planner_spread=planner_spread, rules=rules, seed=seed)


def training_snapshot(agent: Any, make_env: Callable[[], gym.Env], logdir: str | Path, step: int,
                      rules: str = "", context: int = 5, horizon: int = 30) -> list[Path]:
    """What the trainer writes every run.video_every env steps: dream_<step>.mp4 and curves.png."""
    from worldmodel.plot import plot_runs
    logdir = Path(logdir)
    video = dream_agent(agent, make_env, logdir / f"dream_{step}.mp4", context=context,
                        horizon=horizon, rules=rules, seed=step)
    return [Path(video["path"]), plot_runs([logdir], logdir / "curves.png")]
