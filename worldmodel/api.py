"""The Python API: the same jobs as the CLI, for scripts and notebooks.

  import worldmodel
  result = worldmodel.train(env="CartPole-v1", presets=["debug"], overrides={"run.steps": 500})
  agent = worldmodel.load(result["logdir"])
  action, state = agent.act(obs, state)          # state=None at an episode start
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import gymnasium as gym

from worldmodel import checkpoint, distributed
from worldmodel.config import Config, ConfigError, load_config
from worldmodel.trainer import (Trainer, default_logdir, env_factory, evaluate, load_run_config,
                              save_config, setup_torch)

# Settings that may differ between a run and its resumption without breaking it.
SAFE_ON_RESUME = ("run.steps", "run.log_every", "run.checkpoint_every", "run.keep_checkpoints",
                  "run.eval_every", "run.eval_episodes", "run.progress", "run.threads", "run.device",
                  "run.logdir", "run.video_every", "train.max_skipped")


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Changed keys, comparing the saved config filled with today's defaults (a key added
    since the run started is not a change) and ignoring keys that no longer exist."""
    from worldmodel.config import fill_defaults, flatten
    a, b = flatten(fill_defaults(old)), flatten(new)
    return {k: (a.get(k), b[k]) for k in sorted(b) if a.get(k) != b[k]}


def train(env: str | Callable[[], gym.Env] | None = None, config: Config | dict | None = None,
          presets: list[str] | None = None, overrides: dict[str, Any] | None = None,
          resume: bool | None = None) -> dict[str, Any]:
    """Train an agent; returns {"logdir", "return", ...}. `env` may be an id or a
    constructor; `config` a Config or a dict of dotted keys; overrides are dotted keys."""
    overrides = dict(overrides or {})
    if isinstance(config, dict):
        overrides = {**config, **overrides}
    if isinstance(env, str):
        overrides["env.id"] = env
    elif env is not None:
        overrides.setdefault("env.id", getattr(env, "__name__", "custom"))
    cfg = config if isinstance(config, Config) else load_config(presets if presets is not None else ["small"], overrides)
    ctx, rank_device = distributed.init(cfg.run.device)  # torchrun: join the process group
    if cfg.replay.batch % ctx.world:
        raise ConfigError(f"replay.batch {cfg.replay.batch} must be divisible by the {ctx.world} processes "
                          f"(each rank samples batch / processes sequences); e.g. --replay.batch "
                          f"{max(ctx.world, cfg.replay.batch // ctx.world * ctx.world)}")
    if ctx.active and not cfg.run.logdir:
        raise ConfigError("distributed runs need an explicit --logdir shared by all processes")
    logdir = Path(cfg.run.logdir) if cfg.run.logdir else default_logdir(cfg)
    has_ckpt = bool(checkpoint.list_checkpoints(logdir / "checkpoints"))
    if resume is None:
        resume = has_ckpt
    if resume and has_ckpt:
        saved = load_run_config(logdir)
        if saved is not None:
            changes = {k: v for k, v in _diff(saved, cfg.to_dict()).items()}
            unsafe = {k: v for k, v in changes.items() if k not in SAFE_ON_RESUME}
            if unsafe:
                k, (old, new) = next(iter(unsafe.items()))
                raise ConfigError(f"cannot resume {logdir}: '{k}' changed from {old!r} to {new!r}, which "
                                  f"the saved run cannot take; keep {old!r} or use a new --logdir")
            for k, (old, new) in changes.items():
                if ctx.main:
                    print(f"resume: {k}: {old!r} -> {new!r}")
    elif has_ckpt and resume is False:
        raise ConfigError(f"{logdir} already holds a run; resume it (drop --no-resume) or choose a new --logdir")
    try:
        if ctx.main:
            save_config(cfg, logdir)
    except OSError as exc:
        raise PermissionError(f"cannot write the run directory {logdir}: {exc.strerror or exc}; "
                              f"choose another --logdir") from None
    distributed.barrier(ctx)
    trainer = Trainer(cfg, logdir, env if callable(env) else None, ctx=ctx, device=rank_device)
    try:
        line = trainer.preflight()
        if ctx.main:
            print(line)  # stops here, before any step, if the run cannot fit
        if resume and has_ckpt:
            trainer.restore()
        else:
            trainer.clear()
    except BaseException:
        trainer.driver.close()
        raise
    try:
        summary = trainer.run()
        # Every rank reaches here before any leaves the group: a gloo rank that tore its
        # group down while the other still used it aborted at exit in about 1 run of 4
        # (a two-rank `worldmodel train` under torchrun). Not on errors: a barrier there
        # could wait for a rank that is still training.
        distributed.barrier(ctx)
    finally:
        distributed.shutdown(ctx)
    summary["logdir"] = str(logdir)
    return summary


def _run_config(run: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    saved = load_run_config(Path(run))
    if saved is None:
        raise FileNotFoundError(f"{run} is not a run directory (no config.yaml); pass the --logdir of a training run")
    return load_config((), overrides or {}, base=saved)


def load(run: str | Path, device: str = "cpu", overrides: dict[str, Any] | None = None):
    """Load a trained agent from its run directory for acting: `agent.act(obs, state)`.
    `overrides` (dotted keys) change how it acts, e.g. {"planner.kind": "cem"}."""
    from worldmodel.agent import Agent
    cfg = _run_config(run, overrides)
    import torch
    setup_torch(cfg)
    env = env_factory(cfg)()
    from envs.spaces import action_spec, obs_spec
    agent = Agent(cfg, obs_spec(env.observation_space), action_spec(env.action_space), torch.device(device),
                  env.observation_space, env.action_space)
    agent._obs_space = env.observation_space
    env.close()
    found = checkpoint.load_latest(Path(run) / "checkpoints", device)
    if found is None:
        raise checkpoint.CheckpointError(f"{run} has no checkpoint yet; train it first")
    path, state = found
    try:
        agent.load_state_dict(state["agent"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise checkpoint.CheckpointError(f"{path} does not match the run's config: {str(exc).splitlines()[0]}") from None
    return agent


def evaluate_run(run: str | Path, episodes: int = 10, shield: str | None = None, seed: int = 12345,
                 overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """shield: on (the real-step veto), off (no veto, no masks: the bare policy), learned (no
    veto; the agent acts under its world model's learned verdicts), None (as trained). With
    off and learned the rules still judge every executed step, so violations are counted."""
    overrides = dict(overrides or {})
    if shield is not None:  # shield.rules stays in every mode: it shapes the model's heads
        overrides["shield.mode"] = shield
    cfg = _run_config(run, overrides)
    rules = cfg.shield.rules
    if shield is not None and not rules:
        raise ConfigError(f"{run} was trained without rules; pass --shield.rules FILE to evaluate with a shield")
    agent = load(run, overrides=overrides)
    if shield == "learned" and getattr(agent.model, "verdict_head", None) is None:
        raise ConfigError(f"{run} has no learned verdicts (they need discrete actions, rules and "
                          "shield.imagine); use --shield on or off")
    return evaluate(agent, env_factory(cfg), episodes, seed=seed, shield_rules=rules,
                    veto=cfg.shield.mode == "on")
