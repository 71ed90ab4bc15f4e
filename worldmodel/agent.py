"""The agent: a world model plus a planner, built from the config, with one update step
and a policy step over batched envs. This is the factory layer: it reads the config and
hands plain keyword arguments to the modules.

Legend: B envs (acting) or batch (training), T sequence length, A action size.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any

import numpy as np
import torch

from envs.spaces import ActionSpec, ObsSpec
from planners.actor_critic import ActorCritic
from planners.cem import CEM
from planners.mpc import LatentMPC
from planners.mppi import MPPI
from worldmodel import distributed
from worldmodel.config import Config, ConfigError
from worldmodel.graphs import UpdateGraphs
from worldmodel.model import WorldModel
from worldmodel.nets import adam


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _check_cpp_compiler() -> None:
    """Inductor compiles CPU kernels with a C++ compiler, at the first update. Check for one
    before a run starts rather than fail after its prefill."""
    from torch._inductor import cpp_builder
    try:
        cpp_builder.get_cpp_compiler()
    except Exception as e:  # InvalidCxxCompiler; any failure here means the same to the user
        raise ConfigError(f"run.compile is true, but torch.compile on the CPU needs a working C++ compiler "
                          f"and found none ({type(e).__name__}); install g++ (or point CXX at one), "
                          f"or drop --run.compile") from e


def build_model(cfg: Config, obs_spec: ObsSpec, act_spec: ActionSpec) -> WorldModel:
    m = cfg.model
    return WorldModel(obs_spec, act_spec.dim, deter=m.deter, stoch=m.stoch, classes=m.classes,
                      hidden=m.hidden, unimix=m.unimix, units=m.units, layers=m.layers,
                      cnn_depth=m.cnn_depth, bins=m.bins, free_nats=m.free_nats,
                      loss_scales=m.loss_scales.to_dict(), dynamics=m.dynamics,
                      ssm_layers=m.ssm_layers, ssm_state=m.ssm_state, window=m.window,
                      verdicts=act_spec.dim if learns_verdicts(cfg, act_spec) else 0,
                      cont_outscale=m.cont_outscale, reward_outscale=m.reward_outscale,
                      explore_heads=cfg.behavior.explore_heads if explores(cfg) else 0)


def explores(cfg: Config) -> bool:
    """Exploration by disagreement is on (behavior.explore > 0, worldmodel/explore.py)."""
    return cfg.behavior.explore > 0


def learns_verdicts(cfg: Config, act_spec: ActionSpec) -> bool:
    """Discrete actions with rules (shield.imagine): the model learns the rules' per-action
    verdicts. Independent of shield.mode, so `eval --shield off` loads the same weights."""
    return bool(cfg.shield.rules) and cfg.shield.imagine and act_spec.discrete


def build_planner(cfg: Config, feat_dim: int, act_spec: ActionSpec, observation_space: Any = None,
                  action_space: Any = None) -> ActorCritic | LatentMPC:
    """The actor-critic, or latent MPC (cem | mppi) wrapping it. The env's spaces bind the
    rules the MPC checks imagined plans against (without them the rules bind to their own
    declarations, which suits flat vector observations)."""
    a, c, b = cfg.actor, cfg.critic, cfg.behavior
    sizes = act_spec.sizes if act_spec.discrete else ()
    m = cfg.model
    # every backbone's feature is [deter (m.deter) | stoch groups x classes] (worldmodel/rssm.py)
    latent = (m.deter, m.stoch, m.classes) if m.deter + m.stoch * m.classes == feat_dim else None
    actor_critic = ActorCritic(feat_dim, act_spec.dim, sizes, units=a.units, layers=a.layers,
                       horizon=b.horizon, gamma=1.0 - 1.0 / b.discount_horizon, lam=b.lam,
                       entropy=a.entropy, unimix=a.unimix, min_std=a.min_std, max_std=a.max_std,
                       slow_rate=c.slow_rate, slowreg=c.slowreg, grad=a.grad, bins=cfg.model.bins,
                       actor_lr=a.lr, critic_lr=c.lr, actor_clip=a.clip, critic_clip=c.clip,
                       retnorm_rate=b.retnorm_rate, eps=cfg.train.adam_eps,
                       cost_penalty=cfg.shield.cost_penalty if cfg.shield.rules else 0.0,
                       proposal_loss=cfg.shield.proposal_loss if cfg.shield.rules and cfg.shield.mode == "on" else 0.0,
                       proposal_margin=cfg.shield.proposal_margin, latent=latent, replay_loss=c.replay_loss,
                       explore=b.explore)
    p = cfg.planner
    # under an active shield the actor imagines under the learned verdicts
    actor_critic.imagine_masked = learns_verdicts(cfg, act_spec) and cfg.shield.mode in ("on", "learned")
    if p.kind == "actor":
        return actor_critic
    rules = None
    if cfg.shield.rules and cfg.shield.mode == "on":  # shield off: no rules anywhere
        from symbolic import load_rules  # lazily: symbolic/ is optional at runtime
        rules = load_rules(cfg.shield.rules, observation_space, action_space)
    mpc = {"cem": CEM, "mppi": MPPI}[p.kind]
    return mpc(actor_critic, act_spec, samples=p.samples, horizon=p.horizon, iterations=p.iterations,
               elites=p.elites, policy_fraction=p.policy_fraction, momentum=p.momentum,
               init_std=p.init_std, min_std=p.min_std, min_prob=p.min_prob, temperature=p.temperature,
               rules=rules, cost_threshold=p.cost_threshold, seed=cfg.run.seed, latent=p.latent,
               prior=p.prior)


def context_arrays(deter: torch.Tensor, index: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A latent as the replay context keeps it: deter (..., D) in float16 (it may arrive in
    bfloat16 under autocast, which numpy lacks), the latent's columns (..., S) in int16."""
    return (deter.detach().float().cpu().numpy().astype(np.float16),
            index.detach().cpu().numpy().astype(np.int16))


class Agent:
    """World model + planner + the model optimizer. `policy` acts in B envs at once;
    `train_step` does one world-model and one planner update on a replayed batch."""

    def __init__(self, cfg: Config, obs_spec: ObsSpec, act_spec: ActionSpec,
                 device: torch.device | str = "cpu", observation_space: Any = None,
                 action_space: Any = None) -> None:
        self.cfg, self.obs_spec, self.act_spec = cfg, obs_spec, act_spec
        self.device = torch.device(device)
        self.model = build_model(cfg, obs_spec, act_spec).to(self.device)
        self.planner = build_planner(cfg, self.model.feat_dim, act_spec, observation_space,
                                     action_space).to(self.device)
        self.model_opt = adam(self.model.parameters(), lr=cfg.train.model_lr, eps=cfg.train.adam_eps)
        self.model_clip = cfg.train.model_clip
        self.max_starts = cfg.behavior.starts
        self.ctx = distributed.Context()  # set by the trainer under torchrun
        self.bf16 = cfg.run.precision == "bf16" and self.device.type == "cuda"
        # Replay context (worldmodel/replay.py): the GRU's latent is small enough to keep per
        # step; the SSM's per-layer states are not, so ssm and hybrid start sequences fresh.
        self.context = bool(cfg.replay.context) and cfg.model.dynamics == "gru"
        self.last_latent: tuple[np.ndarray, np.ndarray] | None = None  # of the latest update
        self.updates = 0
        self.skipped_updates = 0
        self.fault_streak = 0  # skipped updates in a row; a good update resets it
        self.last_fault = ""  # the loss term of the latest skipped update
        # what learns in imagination: the planner, or the actor-critic an MPC planner wraps
        self.behavior = getattr(self.planner, "actor_critic", self.planner)
        self._loss_step = self._loss
        self.cuda_graphs = bool(cfg.run.cuda_graphs) and self.device.type == "cuda"
        self.graphs = UpdateGraphs() if self.cuda_graphs else None
        if cfg.run.cuda_graphs and not self.cuda_graphs:
            print(f"note: run.cuda_graphs needs a CUDA device; on {self.device.type} every update runs "
                  f"eagerly (on a CPU, --run.compile true is what speeds an update up)", file=sys.stderr)
        if cfg.run.compile:
            self.compile()

    def compile(self, backend: str = "inductor", imagination: str | None = None) -> None:
        """torch.compile the hot paths (`run.compile`): the world-model loss, and
        - on CUDA, one imagined step (`img_step`, which every imagination loop calls: the
          actor-critic's update, MPC's candidates, videos), so a step's elementwise work
          fuses into a few kernels;
        - on the CPU, the actor-critic's losses (`ActorCritic.losses`: 15 imagined steps,
          heads, returns), where per-op overhead is most of the time: measured 1.5x faster
          updates together with the loss, after minutes of compiling (README, "Speed of
          one update"), and an MPC planner's imagination (the actor's proposals and the
          scoring of all candidates: `LatentMPC.compile_imagination`), whose compiled code
          calls its kernels from C++ (inductor's `cpp_wrapper`: measured 1.2x faster
          decisions than with its Python wrapper, README "Decision time of latent MPC").
        The loss and the imagined step each trace as one graph for every backbone, with no
        fallback to Python between kernels (tests/worldmodel/test_compile.py). It excludes
        `run.cuda_graphs` (worldmodel/graphs.py), which is faster on a GPU on its own.
        `imagination` "step" or "losses" picks one of the two whatever the device (tests)."""
        if backend == "inductor" and self.device.type == "cpu":
            _check_cpp_compiler()
        self._loss_step = torch.compile(self._loss, backend=backend)
        if (imagination or ("step" if self.device.type == "cuda" else "losses")) == "step":
            rssm = self.model.rssm
            # an instance attribute shadows the method: imagine() (every backbone's) calls self.img_step
            rssm.img_step = torch.compile(rssm.img_step, backend=backend)
        else:
            # an instance attribute shadows the method: `gradients` calls self.losses
            self.behavior.losses = torch.compile(self.behavior.losses, backend=backend)
            if hasattr(self.planner, "compile_imagination"):  # MPC: each decision's imagination
                self.planner.compile_imagination(backend)

    def use_distributed(self, ctx: distributed.Context) -> None:
        """Average every gradient over ranks and start from rank 0's parameters."""
        self.ctx = ctx
        self.behavior.grad_sync = lambda params: distributed.average_gradients(params, ctx)
        distributed.broadcast_module(self.model, ctx)
        distributed.broadcast_module(self.behavior, ctx)

    def param_counts(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {"world_model": count(self.model), "actor": count(self.planner.actor),
                "critic": count(self.planner.critic)}

    # -- acting ----------------------------------------------------------------------------
    def initial(self, batch: int) -> dict[str, Any]:
        return {"latent": self.model.initial(batch),
                "prev_action": torch.zeros(batch, self.act_spec.dim, device=self.device)}

    def _tensors(self, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k.name: torch.as_tensor(obs[k.name], device=self.device) for k in self.obs_spec.keys}

    @torch.no_grad()
    def policy(self, obs: dict[str, np.ndarray], is_first: np.ndarray, carry: dict[str, Any],
               mask: np.ndarray | None = None, explore: bool = True,
               plan: bool = True) -> tuple[np.ndarray, dict, dict]:
        """obs {key: (B, ...)}, is_first (B,) -> agent actions (B, A), info, new carry.
        The carry's prev_action is the proposed action; call `executed` after a veto.
        plan=False only tracks the latent state and returns zero actions (random prefill:
        an MPC decision there would cost its full budget for nothing)."""
        first = torch.as_tensor(is_first, device=self.device)
        latent = self.model.observe(carry["latent"], self._tensors(obs), carry["prev_action"], first)
        if not plan:
            zeros = torch.zeros(len(first), self.act_spec.dim, device=self.device)
            return zeros.cpu().numpy(), {}, {"latent": latent, "prev_action": zeros}
        mask_t = None if mask is None else torch.as_tensor(mask, device=self.device)
        self.planner.reset(first)  # a new episode: forget that env's warm-started plan
        action, info = self.planner.act(self.model, latent, mask_t, explore)
        info = {k: v.float().cpu().numpy() for k, v in info.items()}
        return action.float().cpu().numpy(), info, {"latent": latent, "prev_action": action}

    def context_fields(self) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Replay columns of the replay context: deter in float16 (the GRU state is in
        [-1, 1]), the latent's column per variable, and whether the step has a latent."""
        if not self.context:
            return {}
        rssm = self.model.rssm
        return {"ctx_deter": ((rssm.deter,), np.float16), "ctx_index": ((rssm.stoch,), np.int16),
                "ctx_ok": ((), bool)}

    def context_record(self, carry: dict[str, Any]) -> dict[str, np.ndarray]:
        """The replay-context columns of the latent in `carry` (after this step's obs)."""
        if not self.context:
            return {}
        deter, index = context_arrays(carry["latent"]["deter"], carry["latent"]["index"])
        return {"ctx_deter": deter, "ctx_index": index, "ctx_ok": np.ones(deter.shape[0], bool)}

    def executed(self, carry: dict[str, Any], action: np.ndarray) -> dict[str, Any]:
        """Record the action that really ran (after the shield) as the previous action."""
        return {**carry, "prev_action": torch.as_tensor(action, device=self.device, dtype=torch.float32)}

    def act(self, obs: Any, state: dict[str, Any] | None = None,
            explore: bool = False) -> tuple[Any, dict[str, Any]]:
        """One env, native observation in, native env action out:
        `action, state = agent.act(obs, state)`; pass state=None at an episode start."""
        from envs.spaces import encode_obs
        space = self._obs_space
        batched = {k: v[None] for k, v in obs.items()} if isinstance(obs, dict) else np.asarray(obs)[None]
        enc = encode_obs(self.obs_spec, space, batched)
        first = np.array([state is None])
        action, _, carry = self.policy(enc, first, state or self.initial(1), explore=explore)
        env_action = self.act_spec.to_env(action)
        return env_action[0], carry

    _obs_space: Any = None  # set by load(): the env's native observation space

    # -- learning ----------------------------------------------------------------------------
    def _loss(self, batch: dict[str, torch.Tensor]):
        # a CUDA graph cannot keep autocast's cache of cast weights (PyTorch's docs)
        ctx = (torch.autocast("cuda", torch.bfloat16, cache_enabled=not self.cuda_graphs) if self.bf16
               else contextlib.nullcontext())
        with ctx:
            return self.model.loss(batch)

    def to_batch(self, data: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        pin = self.device.type == "cuda"
        out = {}
        for k, v in data.items():
            if (k == "cost" and not self.cfg.shield.rules) or k == "ctx_slot":
                continue  # no rules: the cost head has no labels to learn from; slots stay in numpy
            if torch.is_tensor(v):  # converted already (replay.Prefetch does it off the main thread)
                out[k] = v.to(self.device)
                continue
            t = torch.from_numpy(np.ascontiguousarray(v))
            out[k] = (t.pin_memory() if pin else t).to(self.device, non_blocking=pin)
        return out

    def train_step(self, data: dict[str, np.ndarray]) -> dict[str, float]:
        """One world-model and one planner update on a replayed batch. Each half is a
        device-only gradient step and a host step (checks, all-reduce, optimizer); with
        `run.cuda_graphs` the gradient steps replay as CUDA graphs (worldmodel/graphs.py)."""
        batch = self.to_batch(data)
        run: Any = lambda name, fn: fn()  # noqa: E731
        if self.graphs is not None:
            batch, run = self.graphs.inputs(batch), self.graphs.run
        total, losses, post = run("model", lambda: self._model_gradients(batch))
        metrics = dict(zip((f"loss/{k}" for k in losses), torch.stack(list(losses.values())).tolist()))
        self.last_latent = None
        if self.context and bool(torch.isfinite(post["deter"]).all()):
            # fresher latents for the replay context, which the trainer writes back
            self.last_latent = context_arrays(post["deter"], post["index"])
        # Under torchrun every rank must take part in every all-reduce, so a non-finite loss
        # is not skipped here: its NaN gradients reach all ranks, which then skip together.
        if not torch.isfinite(total) and not self.ctx.active:
            bad = [k for k, v in losses.items() if not torch.isfinite(v)]
            return self._skip(metrics, bad[0] if bad else "total")
        distributed.average_gradients(self.model.parameters(), self.ctx)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.model_clip)
        if not torch.isfinite(norm):
            return self._skip(metrics, "gradient")
        self.model_opt.step()
        metrics["train/model_grad_norm"] = float(norm)
        behavior = self.behavior.apply(run("behavior", lambda: self._behavior_gradients(batch, post)))
        metrics.update(behavior)
        self.updates += 1
        # the planner skips its own optimizer step on a non-finite loss or gradient
        for term, key in (("actor_loss", "actor_loss"), ("critic_loss", "critic_loss"),
                          ("actor_gradient", "actor_grad_norm"), ("critic_gradient", "critic_grad_norm")):
            if key in behavior and not np.isfinite(behavior[key]):
                return self._skip(metrics, term)
        self.fault_streak = 0
        return metrics

    def _model_gradients(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict, dict]:
        """The world-model loss and its gradients (in .grad): (total, terms, posterior)."""
        self.model_opt.zero_grad(set_to_none=True)
        total, losses, post = self._loss_step(batch)
        total.backward()  # a non-finite total is skipped after (train_step), gradients unused
        return total, losses, post

    def _behavior_gradients(self, batch: dict[str, torch.Tensor],
                            post: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The planner's losses and gradients from imagination started at every posterior
        state of the batch; returns its losses and metrics as tensors."""
        # the replayed sequences, for the critic's loss on real returns (critic.replay_loss)
        replay = None
        if self.cfg.critic.replay_loss:
            reward = batch["reward"]
            penalty = getattr(self.behavior, "cost_penalty", 0.0)
            if "cost" in batch and penalty:  # the critic's rewards are penalised, as in imagination
                reward = reward - penalty * batch["cost"]
            replay = {"feat": self.model.feat(post).detach(), "reward": reward, "mask": batch["mask"],
                      "cont": 1.0 - batch["is_terminal"].float(), "last": batch["is_last"]}
            if "index" in post:
                replay["index"] = post["index"]
            if explores(self.cfg):
                with torch.no_grad():
                    replay["novelty"] = self.model.novelty(replay["feat"], replay.get("index"))
        # imagination starts: every posterior state of the batch, flattened (N = B*T)
        start = {k: v.detach().flatten(0, 1) for k, v in post.items()}
        start_cont = 1.0 - batch["is_terminal"].float().flatten()
        weight = batch["mask"].float().flatten()
        # the shield's per-action verdicts at these real states, when the replay keeps them
        allowed = batch["allowed"].flatten(0, 1) if "allowed" in batch else None
        if self.max_starts and len(weight) > self.max_starts:
            idx = torch.randperm(len(weight), device=self.device)[: self.max_starts]
            start = {k: v[idx] for k, v in start.items()}
            start_cont, weight = start_cont[idx], weight[idx]
            allowed = allowed[idx] if allowed is not None else None
        return self.behavior.gradients(self.model, start, start_cont, weight, allowed, replay)

    def _skip(self, metrics: dict[str, Any], term: str) -> dict[str, Any]:
        """Count an update skipped for a non-finite `term`; the trainer stops on a long streak."""
        self.skipped_updates += 1
        self.fault_streak += 1
        self.last_fault = term
        # the finite terms still describe the batch; NaN would blank the logged mean
        metrics = {k: v for k, v in metrics.items() if not isinstance(v, float) or np.isfinite(v)}
        metrics["train/nonfinite_loss"] = term
        return metrics

    # -- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "model_opt": self.model_opt.state_dict(),
                "planner": self.planner.state_dict(), "updates": self.updates,
                "skipped_updates": self.skipped_updates, "dynamics": self.cfg.model.dynamics}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("dynamics", "gru")  # checkpoints from before issue 10 are all GRU
        if saved != self.cfg.model.dynamics:
            from worldmodel.checkpoint import CheckpointError
            raise CheckpointError(f"it was trained with model.dynamics {saved!r}, not "
                                  f"{self.cfg.model.dynamics!r}; the backbone cannot change after "
                                  f"training, so drop --model.dynamics")
        self.model.load_state_dict(state["model"])
        self.model_opt.load_state_dict(state["model_opt"])
        self.planner.load_state_dict(state["planner"])
        self.updates = int(state["updates"])
        self.skipped_updates = int(state.get("skipped_updates", 0))
