"""The training loop: env driver -> (shield) -> replay -> world-model + planner updates,
with logging, evaluation and checkpoints hanging off it.

One iteration steps every env once (E env steps), stores the E transitions, then runs as
many updates as the replay ratio asks for: ratio / (batch * length) updates per env step.

Resume: a checkpoint holds everything but the envs (model, optimizers, planner, shield,
counters, RNG states, the replay's counts and partial chunk). Envs cannot be snapshotted,
so a resumed run restarts them, reseeded from (seed, step): episodes in flight at the
crash are cut short in replay and begin again. See "Crashes, resume and bad input" in README.md.
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from envs import Driver, EnvError, make_factory
from worldmodel import checkpoint, distributed, faults, resume
from worldmodel.agent import Agent, pick_device
from worldmodel.config import Config
from worldmodel.logger import Logger
from worldmodel.replay import CONTEXT, Prefetch, Replay


def setup_torch(cfg: Config) -> torch.device:
    threads = cfg.run.threads or min(4, torch.get_num_threads())
    torch.set_num_threads(threads)
    return pick_device(cfg.run.device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def env_factory(cfg: Config, env: str | Callable[[], gym.Env] | None = None) -> Callable[[], gym.Env]:
    e = cfg.env
    return make_factory(env if env is not None else e.id, e.kwargs.to_dict() if hasattr(e.kwargs, "to_dict") else dict(e.kwargs),
                        tuple(e.imports), obs=e.obs, image_size=e.image_size)


def replay_fields(agent: Agent, allowed: bool = False) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Replay columns. `allowed`: also the shield's per-action verdict at each real obs
    (discrete actions with rules), the labels the actor learns its proposals from."""
    fields: dict[str, tuple[tuple[int, ...], Any]] = {
        k.name: (k.shape, np.uint8 if k.kind == "image" else np.float32) for k in agent.obs_spec.keys}
    fields.update(action=((agent.act_spec.dim,), np.float32), reward=((), np.float32),
                  is_first=((), bool), is_last=((), bool), is_terminal=((), bool), cost=((), np.float32))
    if allowed:
        fields["allowed"] = ((agent.act_spec.dim,), bool)
    fields.update(agent.context_fields())
    return fields


def random_actions(agent: Agent, n: int, rng: np.random.Generator) -> np.ndarray:
    spec = agent.act_spec
    if not spec.discrete:
        return rng.uniform(-1, 1, (n, spec.dim)).astype(np.float32)
    parts = [np.eye(size, dtype=np.float32)[rng.integers(0, size, n)] for size in spec.sizes]
    return np.concatenate(parts, -1)


def load_shield(cfg: Config, driver: Driver):
    """The shield for cfg.shield.rules, or None. Imported lazily: symbolic/ is optional at runtime.
    Rules that fail static verification (contradictions, dead ends, ...) stop the run
    before it starts, with the first error on one line."""
    if not cfg.shield.rules:
        return None
    from symbolic import RuleError, Shield, load_rules
    from symbolic.verify import verify
    rules = load_rules(cfg.shield.rules, driver.observation_space, driver.action_space)
    errors = verify(rules, driver.observation_space, driver.action_space).errors
    if errors:
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise RuleError(f"fails static verification: {errors[0].check}: {errors[0].message}{more}; "
                        f"see: worldmodel rules check {cfg.shield.rules}", errors[0].location or rules.program.path)
    return Shield(rules, driver.action_space, driver.num_envs)


def _next_multiple(step: int, every: int) -> int:
    """Keeps checkpoints and log lines on the same grid (multiples of `every`) across resumes."""
    return (step // every + 1) * every if every > 0 else step


class Trainer:
    """Owns the driver, agent, replay, shield and counters of one run directory."""

    def __init__(self, cfg: Config, logdir: Path, env: Callable[[], gym.Env] | None = None,
                 ctx: distributed.Context = distributed.Context(), device: torch.device | None = None) -> None:
        self.cfg, self.logdir, self.ctx = cfg, Path(logdir), ctx
        self.device = setup_torch(cfg)
        if device is not None:
            self.device = device
        seed_everything(cfg.run.seed)  # the same on every rank: identical initial parameters
        # each rank has its own envs, replay shard, prefill actions and checkpointed state
        rank_seed = cfg.run.seed + 1000 * ctx.rank
        shard = "" if ctx.main else f"rank{ctx.rank}"
        self.ckpt_dir = self.logdir / "checkpoints" / shard
        self.make_env = env_factory(cfg, env)
        self.driver = Driver(self.make_env, cfg.env.workers, seed=rank_seed, parallel=cfg.env.parallel)
        self.agent = Agent(cfg, self.driver.obs_spec, self.driver.act_spec, self.device,
                           self.driver.observation_space, self.driver.action_space)
        self.agent._obs_space = self.driver.observation_space
        self.shield = load_shield(cfg, self.driver)
        if ctx.active:
            self.agent.use_distributed(ctx)
        # the verifier's labels for the actor: which actions the hard rules allow at each real
        # obs (only where that is one flag per action: Discrete spaces with rules)
        self.labels = self.shield is not None and self.agent.act_spec.discrete and \
            len(self.shield.rules.candidates()) == self.agent.act_spec.dim
        self.replay = Replay(cfg.replay.capacity, cfg.env.workers, replay_fields(self.agent, self.labels),
                             seed=rank_seed,
                             directory=self.logdir / "replay" / shard, chunk=cfg.replay.chunk,
                             keep_saved=cfg.run.keep_checkpoints or 1 << 30)
        # the next batch is drawn in a thread while an update trains (replay.Prefetch)
        self.prefetch = {"auto": self.device.type == "cuda", "on": True, "off": False}[cfg.replay.prefetch]
        self.rng = np.random.default_rng(rank_seed)
        self.step = 0
        self.episodes = 0
        self.credit = 0.0
        self.counters = {"vetoes": 0, "executed_violations": 0, "dead_ends": 0, "fallbacks": 0}
        self.saved_step = -1  # step of the newest checkpoint written or loaded
        self.pending: tuple[Any, np.ndarray] | None = None  # (step dict, its cost) not yet in replay
        self.last_checkpoint: Path | None = None

    # -- persistence (what a checkpoint holds: worldmodel/resume.py) ----------------------
    def state_dict(self) -> dict[str, Any]:
        return resume.state_dict(self)

    def save(self) -> Path:
        try:
            path = checkpoint.save(self.ckpt_dir, self.step, self.state_dict(), self.cfg.run.keep_checkpoints)
        except OSError as exc:
            raise faults.RunStopped(f"cannot write a checkpoint in {self.logdir / 'checkpoints'}: "
                                    f"{exc.strerror or exc}; free some space, then rerun the same command "
                                    f"to resume from {self.last_checkpoint or 'the start'}") from None
        self.saved_step, self.last_checkpoint = self.step, path
        return path

    def restore(self) -> Path | None:
        """Continue from the newest readable checkpoint; logs and replay chunks written after
        it are dropped (their env steps run again). None: there was none (fresh start)."""
        return resume.restore(self)

    def clear(self) -> None:
        resume.clear(self)

    def preflight(self) -> str:
        """The memory / disk estimate line; raises RunStopped when the run cannot fit."""
        params = sum(p.numel() for m in (self.agent.model, self.agent.planner) for p in m.parameters())
        cfg, keep = self.cfg, max(self.cfg.run.keep_checkpoints, 1)
        slack = self.replay.lanes * self.replay.chunk + keep * cfg.run.checkpoint_every
        return faults.preflight(self.replay.data, self.replay.size * self.replay.lanes, slack, params,
                                keep, self.logdir, ram_only=CONTEXT)

    # -- the loop ---------------------------------------------------------------------
    def _draw(self, batch: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """One replayed batch: as sampled (numpy; the context write-back needs its slots) and
        as the agent's tensors. Without prefetching the agent converts it itself."""
        data = self.replay.sample(batch, self.cfg.replay.length)
        return data, (self.agent.to_batch(data) if self.prefetch else data)

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        per_update = cfg.replay.batch * cfg.replay.length
        logger = Logger(self.logdir, cfg.run.steps, self.step, cfg.run.progress, enabled=self.ctx.main)
        E, W = self.driver.num_envs, self.ctx.world
        rank_batch = cfg.replay.batch // W  # the effective batch over all ranks is replay.batch
        if self.ctx.active and self.ctx.main:
            print(f"distributed: {W} processes, {W * E} envs; effective batch {cfg.replay.batch} x "
                  f"{cfg.replay.length} ({rank_batch} sequences per rank), replay ratio {cfg.train.ratio}")
        step_data = self.driver.reset()
        carry = self.agent.initial(E)
        pending_cost = np.zeros(E, np.float32)
        window: dict[str, list[float]] = {}
        recent_returns: list[float] = []
        next_log = _next_multiple(self.step, cfg.run.log_every)
        next_ckpt = _next_multiple(self.step, cfg.run.checkpoint_every)
        next_eval = self.step + cfg.run.eval_every if cfg.run.eval_every else None
        video_every = cfg.run.video_every
        next_video = (self.step // video_every + 1) * video_every if video_every else None
        t_start, steps_start, updates_start = time.time(), self.step, self.agent.updates
        prefetch = Prefetch(lambda: self._draw(rank_batch)) if self.prefetch else None
        summary: dict[str, Any] = {}
        stop = faults.GracefulStop().install()  # SIGINT / SIGTERM: finish the step, checkpoint, return
        try:
            while self.step < cfg.run.steps and not distributed.any_flag(stop.signal is not None, self.ctx):
                mask = allowed = None
                veto = self.shield is not None and cfg.shield.mode == "on"
                if self.labels or (veto and self.agent.act_spec.kind == "discrete"):
                    allowed = np.asarray(self.shield.rules.allowed_actions(step_data.raw_obs).cpu())
                    mask = allowed if veto else None
                prefill = self.step < cfg.train.prefill
                action, info, carry = self.agent.policy(step_data.obs, step_data.is_first, carry, mask,
                                                        plan=not prefill)
                for k in ("safe_fraction", "predicted_risk"):  # MPC with rules: imagined safety
                    if k in info:
                        window.setdefault(f"plan/{k}", []).append(float(np.mean(info[k])))
                if "proposal_risk" in info and not prefill:  # veto risk of the agent's own proposal
                    window.setdefault("shield/proposal_risk", []).append(float(np.mean(info["proposal_risk"])))
                if prefill:
                    action = random_actions(self.agent, E, self.rng)
                    carry = self.agent.executed(carry, action)  # the latent sees what really ran
                env_action = self.agent.act_spec.to_env(action)
                cost_now = np.zeros(E, np.float32)
                if self.shield is not None:
                    env_action, sinfo = shield_step(self.shield, step_data, env_action,
                                                    info.get("preferences"), veto)
                    cost_now = np.asarray(sinfo["cost"], np.float32)
                    self.counters["vetoes"] += int(np.sum(sinfo["vetoed"] & ~step_data.is_last))
                    self.counters["executed_violations"] += int(np.sum(sinfo["executed_violation"] & ~step_data.is_last))
                    self.counters["dead_ends"] += int(np.sum(sinfo["dead_end"] & ~step_data.is_last))
                    self.counters["fallbacks"] += int(np.sum(sinfo["fallback"] & ~step_data.is_last))
                    window.setdefault("shield/latency_ms", []).append(float(sinfo["latency_ms"]))
                    window.setdefault("shield/veto_rate", []).append(float(np.mean(sinfo["vetoed"])))
                    window.setdefault("shield/projection_distance", []).append(
                        float(np.mean(sinfo["projection_distance"])))
                    action = self.agent.act_spec.from_env(env_action)
                    carry = self.agent.executed(carry, action)
                self.replay.add({**resume.transition(step_data, action, pending_cost,
                                                     allowed if self.labels else None),
                                 **self.agent.context_record(carry)})
                self.pending = None
                pending_cost = np.where(step_data.is_last, 0.0, cost_now).astype(np.float32)
                step_data = self.driver.step(env_action)
                self.pending = (step_data, pending_cost)  # a checkpoint keeps its terminal obs
                self.step += E * W  # env steps of all ranks
                for _, ret, length in step_data.ended:
                    self.episodes += 1
                    recent_returns.append(ret)
                    now = time.time()  # wall_s for curves; time (unix) to line runs up across processes
                    logger.write("episodes", {"step": self.step, "return": ret, "length": length,
                                              "episode": self.episodes, "wall_s": now - t_start, "time": now})
                if recent_returns:
                    logger.progress(self.step, **{"return": float(np.mean(recent_returns[-10:]))})
                # updates, as many as the replay ratio asks for
                if self.step >= cfg.train.prefill:
                    self.credit += E * W * cfg.train.ratio / per_update
                    while self.credit >= 1.0:
                        self.credit -= 1.0
                        batch, tensors = prefetch.take() if prefetch else self._draw(rank_batch)
                        metrics = self.agent.train_step(tensors)
                        if prefetch:
                            prefetch.settle()  # the next draw has read the replay: it may change now
                        if self.agent.last_latent is not None and "ctx_slot" in batch:
                            self.replay.write_context(batch["ctx_slot"], batch["mask"], *self.agent.last_latent)
                        for k, v in metrics.items():
                            if isinstance(v, float):
                                window.setdefault(k, []).append(v)
                        if cfg.train.max_skipped and self.agent.fault_streak >= cfg.train.max_skipped:
                            # the parameters are intact (every bad step was skipped), but the run
                            # is going nowhere: stop, keeping the last checkpoint as it is
                            raise faults.diverged(self.agent.last_fault, self.agent.fault_streak,
                                                  self.last_checkpoint)
                logger.progress(self.step, updates=self.agent.updates,
                                vetoes=self.counters["vetoes"] if self.shield is not None else None)
                if self.step >= next_log or self.step >= cfg.run.steps:
                    next_log += cfg.run.log_every
                    elapsed = time.time() - t_start
                    record = {"step": self.step, "episodes": self.episodes, "updates": self.agent.updates,
                              "fps": (self.step - steps_start) / max(elapsed, 1e-9),
                              "ups": (self.agent.updates - updates_start) / max(elapsed, 1e-9),
                              "skipped_updates": self.agent.skipped_updates,
                              **{k: float(np.mean(v)) for k, v in window.items()}}
                    if recent_returns:
                        record["return"] = float(np.mean(recent_returns[-10:]))
                    if self.shield is not None:
                        record.update({f"shield/{k}": v for k, v in self.counters.items()})
                    logger.write("metrics", record)
                    window.clear()
                    summary = record
                if next_eval is not None and self.step >= next_eval and self.ctx.main:
                    next_eval += cfg.run.eval_every
                    result = evaluate(self.agent, self.make_env, cfg.run.eval_episodes,
                                      seed=cfg.run.seed + 10_000 + self.step, shield_rules=cfg.shield.rules)
                    logger.write("eval", {"step": self.step, "wall_s": time.time() - t_start, **result})
                if self.step >= next_ckpt:
                    next_ckpt += cfg.run.checkpoint_every
                    self.save()
                if next_video is not None and self.step >= next_video and self.ctx.main:
                    next_video += video_every
                    try:  # a video or plot must never end a training run
                        from worldmodel.video import training_snapshot
                        training_snapshot(self.agent, self.make_env, self.logdir, self.step, cfg.shield.rules)
                    except Exception as exc:  # noqa: BLE001
                        print(f"warning: dream video at step {self.step} failed: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
            if self.saved_step != self.step:
                self.save()
            if self.ctx.active:  # every rank applied the same updates: check, and report it
                summary["param_divergence"] = distributed.divergence(self.agent.model, self.ctx)
                if self.ctx.main:
                    logger.write("metrics", {"step": self.step, "param_divergence": summary["param_divergence"]})
        except EnvError as exc:  # the env broke mid-run: keep what was learned since the last checkpoint
            if self.step <= self.saved_step or self.step == 0:
                raise
            raise EnvError(f"{exc}; progress saved in {self.save()}") from None
        except MemoryError:
            raise faults.RunStopped(f"out of memory at step {self.step}; last checkpoint: "
                                    f"{self.last_checkpoint or 'none yet'}; try a smaller --replay.capacity "
                                    f"or --replay.batch") from None
        finally:
            if prefetch:
                prefetch.close()
            stop.restore()
            logger.close()
            self.driver.close()
        summary.update(returns=recent_returns, step=self.step,
                       interrupted=stop.signal if self.step < cfg.run.steps else None)
        return summary


def shield_step(shield: Any, step: Any, env_action: np.ndarray, preferences: Any,
                veto: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """The real-step shield on the proposed env actions -> (actions to execute, shield info).
    veto=False (shield.mode off | learned) only judges: the proposal runs, and a proposal the
    shield would have vetoed counts as an executed violation."""
    executed, sinfo = shield.filter(step.raw_obs, env_action, preferences, step.is_first)
    if veto:
        return executed, sinfo
    return env_action, {**sinfo, "executed_violation": np.asarray(sinfo["vetoed"], bool)}


@torch.no_grad()
def evaluate(agent: Agent, make_env: Callable[[], gym.Env], episodes: int, seed: int = 0,
             shield_rules: str = "", explore: bool = False, veto: bool = True) -> dict[str, Any]:
    """Run `episodes` episodes in parallel envs (one each) with the greedy policy. With
    rules and veto=False the shield only judges: proposals run, violations are counted."""
    driver = Driver(make_env, episodes, seed=seed)
    shield = None
    if shield_rules:
        from symbolic import Shield, load_rules
        shield = Shield(load_rules(shield_rules, driver.observation_space, driver.action_space),
                        driver.action_space, episodes)
    returns = np.full(episodes, np.nan)
    lengths = np.zeros(episodes, np.int64)
    vetoes = np.zeros(episodes, np.int64)
    violations = np.zeros(episodes, np.int64)
    risk = np.zeros(3, np.int64)  # MPC calibration: (predicted & vetoed, predicted only, vetoed only)
    step = driver.reset()
    carry = agent.initial(episodes)
    try:
        while np.isnan(returns).any():
            mask = None
            if veto and shield is not None and agent.act_spec.kind == "discrete":
                mask = shield.rules.allowed_actions(step.raw_obs)
            action, info, carry = agent.policy(step.obs, step.is_first, carry, mask, explore=explore)
            env_action = agent.act_spec.to_env(action)
            if shield is not None:
                env_action, sinfo = shield_step(shield, step, env_action, info.get("preferences"), veto)
                live = np.isnan(returns) & ~step.is_last
                vetoes += sinfo["vetoed"] & live
                violations += sinfo["executed_violation"] & live
                if "predicted_risk" in info:
                    predicted, real = info["predicted_risk"] > 0.5, np.asarray(sinfo["vetoed"], bool)
                    risk += [np.sum(predicted & real & live), np.sum(predicted & ~real & live),
                             np.sum(~predicted & real & live)]
                carry = agent.executed(carry, agent.act_spec.from_env(env_action))
            step = driver.step(env_action)
            for i, ret, length in step.ended:
                if np.isnan(returns[i]):
                    returns[i], lengths[i] = ret, length
    finally:
        driver.close()
    out = {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
           "length_mean": float(lengths.mean()), "episodes": episodes, "returns": returns.tolist()}
    if shield is not None:
        out.update(vetoes=int(vetoes.sum()), executed_violations=int(violations.sum()), veto=veto)
        if getattr(agent.planner, "shield", None) is not None:  # precision / recall of predicted vetoes
            tp, fp, fn = (int(v) for v in risk)
            out.update(risk_precision=tp / (tp + fp) if tp + fp else None,
                       risk_recall=tp / (tp + fn) if tp + fn else None, risk_counts=[tp, fp, fn])
    return out


def save_config(cfg: Config, logdir: Path) -> None:
    logdir.mkdir(parents=True, exist_ok=True)
    checkpoint.atomic_write_bytes(logdir / "config.yaml", lambda f: f.write(cfg.to_yaml().encode()))


def default_logdir(cfg: Config) -> Path:
    name = str(cfg.env.id).replace("/", "-").replace(":", "-")
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def load_run_config(logdir: Path) -> dict[str, Any] | None:
    path = Path(logdir) / "config.yaml"
    if not path.exists():
        return None
    from ruamel.yaml import YAML
    return json.loads(json.dumps(YAML(typ="safe").load(path.read_text())))
