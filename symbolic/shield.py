"""The real-step shield: a post-posed veto over N envs, on REAL observations only.

Hard rules are evaluated on the real observation and the proposed action (never
on model predictions), so for state-action rules the guarantee does not depend
on the world model. On a veto:
  discrete:   the best allowed action by ``preferences`` (e.g. policy logits),
              else the declared fallback (an action, or ``ranked`` = most robust);
  continuous: clamp / sample-and-filter / z3 projection (``projection.py``),
              else the declared fallback action;
  nothing allowed: a dead end is recorded and the most robust action executed.
Past operators keep per-env registers (``Monitor``) committed with the executed
action and reset on ``is_first``.
"""
from __future__ import annotations

import time
from typing import Any as AnyType

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from . import bindings, projection
from .monitor import Monitor
from .ruleset import RuleSet


class Shield:
    def __init__(self, rules: RuleSet, action_space: spaces.Space | None = None,
                 num_envs: int = 1, samples: int = 256, z3_timeout_ms: int = 50,
                 seed: int = 0) -> None:
        if action_space is not None and action_space != rules.action_space:
            rules = RuleSet(rules.program, rules.source, rules.observation_space, action_space,
                            rules.dtype)
        self.rules, self.num_envs = rules, num_envs
        self.action_space = action_space or rules.action_space
        self.kind = rules.layout.kind
        if self.kind == "none":
            raise ValueError("the shield needs declared actions or an action space")
        self.monitor = Monitor(rules.registers, rules.compiled.neutral, num_envs, rules.dtype)
        self.samples, self.z3_timeout_ms = samples, z3_timeout_ms
        self.generator = torch.Generator().manual_seed(seed)
        program = rules.program
        self.fallback = None
        if program.fallback is not None and not program.fallback.ranked:
            self.fallback = bindings.native_action(program, rules.layout, program.fallback.values)
        self.bounds = (projection.extract_bounds(program, rules.compiled)
                       if self.kind == "box" else None)
        self.z3_ok = self.kind == "box" and not rules.registers
        self.hard_index = [i for i, r in enumerate(program.rules) if r.kind == "hard"]

    # ---- public ------------------------------------------------------------
    def filter(self, obs: AnyType, proposed: AnyType, preferences: AnyType = None,
               is_first: AnyType = None) -> tuple[np.ndarray, dict[str, AnyType]]:
        """Return (executed actions, info) for a batch of N real observations."""
        start = time.perf_counter()
        if is_first is not None:
            first = torch.as_tensor(np.asarray(is_first), dtype=torch.bool).reshape(-1)
            if first.any():
                self.monitor.reset(first)
        proposed = np.asarray(proposed.detach().cpu() if isinstance(proposed, Tensor) else proposed)
        if self.kind == "box":
            executed, info = self._continuous(obs, proposed)
        else:
            executed, info = self._discrete(obs, proposed, preferences)
        info["latency_ms"] = (time.perf_counter() - start) * 1e3
        return executed, info

    def reset(self, mask: AnyType = None) -> None:
        self.monitor.reset(None if mask is None else torch.as_tensor(np.asarray(mask)))

    def history(self) -> dict:
        """Monitor registers, to pass to ``RuleSet.check_trajectories`` when planning."""
        return self.monitor.history()

    def state_dict(self) -> dict:
        return self.monitor.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.monitor.load_state_dict(state)

    # ---- discrete ----------------------------------------------------------
    def _discrete(self, obs: AnyType, proposed: np.ndarray, preferences: AnyType
                  ) -> tuple[np.ndarray, dict[str, AnyType]]:
        rules, lay = self.rules, self.rules.layout
        ok, rob, bodies = rules.evaluate_candidates(obs, self.monitor.history())  # (N, C, R)
        allowed, robust = rules.hard_verdict(ok, rob)                             # (N, C)
        rows = torch.arange(allowed.shape[0])
        want = torch.as_tensor(self._choice_index(proposed))
        vetoed = ~allowed[rows, want]
        dead = ~allowed.any(1)
        fallback = torch.zeros_like(vetoed)
        masked_rob = torch.where(allowed, robust, torch.full_like(robust, -np.inf))
        if preferences is not None:
            prefs = torch.as_tensor(np.asarray(preferences.detach().cpu() if isinstance(
                preferences, Tensor) else preferences), dtype=torch.float64).reshape(allowed.shape)
            ranked = torch.where(allowed, prefs, torch.full_like(prefs, -np.inf)).argmax(1)
        else:
            ranked = masked_rob.argmax(1)
            fallback = vetoed & ~dead
            if self.fallback is not None:
                fb = self._choice_index(np.broadcast_to(self.fallback, (len(rows), *self.fallback.shape)))
                fb = torch.as_tensor(fb)
                ranked = torch.where(allowed[rows, fb], fb, ranked)
        pick = torch.where(dead, robust.argmax(1), ranked)
        choice = torch.where(vetoed, pick, want)
        chosen = (rows, choice)
        executed = lay.choices[choice.numpy()]  # type: ignore[index]
        self.monitor.commit({k: (t[chosen], r[chosen]) for k, (t, r) in bodies.items()})
        prop = (rows, want)
        info = self._info(ok[prop], ok[chosen], vetoed, dead & vetoed, fallback & ~dead)
        # For discrete actions the "distance" counts changed components (0 or 1 for Discrete).
        info["projection_distance"] = (executed.reshape(len(rows), -1)
                                       != proposed.reshape(len(rows), -1)).sum(1).astype(np.float64)
        return executed, info

    def _choice_index(self, actions: np.ndarray) -> np.ndarray:
        lay = self.rules.layout
        if self.kind == "discrete":
            return np.asarray(actions).reshape(-1).astype(np.int64) - lay.start
        nvec = lay.choices.max(0) + 1  # type: ignore[union-attr]
        return np.ravel_multi_index(np.asarray(actions, dtype=np.int64).T, nvec)

    # ---- continuous --------------------------------------------------------
    def _continuous(self, obs: AnyType, proposed: np.ndarray) -> tuple[np.ndarray, dict[str, AnyType]]:
        rules, lay, history = self.rules, self.rules.layout, self.monitor.history()
        prop = torch.as_tensor(proposed, dtype=rules.dtype).reshape(self.num_envs, -1)  # (N, d)
        state = bindings.observation_values(rules.program, obs, 1, rules.dtype)
        low = torch.as_tensor(lay.low, dtype=rules.dtype)
        high = torch.as_tensor(lay.high, dtype=rules.dtype)

        def check(actions: Tensor, repeat: int = 1, state: dict = state, history: dict = history
                  ) -> tuple[Tensor, Tensor, Tensor, dict]:
            """Hard verdict for actions (M * repeat, d) against each state repeated."""
            values = {k: v.repeat_interleave(repeat) for k, v in state.items()}
            values.update(bindings.action_values(rules.program, "box", actions, 1, rules.dtype))
            hist = {k: (t.repeat_interleave(repeat, 0), r.repeat_interleave(repeat, 0))
                    for k, (t, r) in history.items()}
            ok, rob, bodies = rules.evaluate_values(values, hist)
            allowed, robust = rules.hard_verdict(ok, rob)
            return allowed, robust, ok, bodies

        allowed, robust, ok_prop, _ = check(prop)
        vetoed = ~allowed
        executed, done = prop.clone(), allowed.clone()
        best, best_rob = prop.clone(), robust.clone()  # most robust action seen (dead ends)
        if vetoed.any() and self.bounds is not None:
            clamped = projection.clamp(self.bounds, state, prop, low, high, rules.dtype)
            good, r, _, _ = check(clamped)
            take = good & ~done
            executed[take], done = clamped[take], done | good
            better = r > best_rob
            best[better], best_rob = clamped[better], torch.maximum(best_rob, r)
        todo = torch.nonzero(~done).reshape(-1)
        if len(todo):  # sample and filter, all remaining rows in one batch
            cand = projection.samples(prop[todo], low, high, self.samples, self.generator)
            sub_state = {k: v[todo] for k, v in state.items()}
            sub_hist = {k: (t[todo], r[todo]) for k, (t, r) in history.items()}
            good, r, _, _ = check(cand.reshape(-1, cand.shape[-1]), self.samples, sub_state,
                                  sub_hist)
            good, r = good.reshape(len(todo), -1), r.reshape(len(todo), -1)
            dist = (cand - prop[todo, None, :]).norm(dim=-1)
            nearest = torch.where(good, dist, torch.full_like(dist, np.inf)).argmin(1)
            found = good.any(1)
            pick = cand[torch.arange(len(todo)), nearest]
            executed[todo[found]], done[todo[found]] = pick[found], True
            top = r.argmax(1)
            top_r = r[torch.arange(len(todo)), top]
            better = top_r > best_rob[todo]
            best[todo[better]] = cand[torch.arange(len(todo)), top][better]
            best_rob[todo[better]] = top_r[better]
        for i in torch.nonzero(~done).reshape(-1).tolist():
            if self.z3_ok:
                point = {k: float(v[i]) for k, v in state.items()}
                found = projection.z3_project(rules.program, point, prop[i].numpy(),
                                              self.z3_timeout_ms)
                if found is not None:
                    executed[i] = torch.as_tensor(found, dtype=rules.dtype)
                    done[i] = True
        fallback = torch.zeros_like(done)
        if self.fallback is not None and (~done).any():
            fb = torch.as_tensor(self.fallback, dtype=rules.dtype).expand_as(prop)
            good, _, _, _ = check(fb)
            fallback = good & ~done
            executed[fallback], done = fb[fallback], done | good
        dead = ~done
        executed[dead] = best[dead]
        native, ok_exec, bodies = self._quantize(executed, done, check)
        self.monitor.commit(bodies)
        info = self._info(ok_prop, ok_exec, vetoed, dead, fallback)
        info["projection_distance"] = (torch.as_tensor(native, dtype=rules.dtype) - prop) \
            .norm(dim=-1).numpy()
        return native.reshape(proposed.shape), info

    def _quantize(self, executed: Tensor, done: Tensor, check) -> tuple[np.ndarray, Tensor, dict]:
        """Cast to the env's dtype and re-check what the env will really receive.

        A clamp to 0.3 becomes float32 0.30000001, which breaks ``torque <= 0.3``;
        such rows step one ulp toward the inside (either direction is tried).
        """
        dtype = np.dtype(getattr(self.action_space, "dtype", None) or np.float32)
        native = executed.numpy().astype(dtype)
        good, _, ok, bodies = check(torch.as_tensor(native, dtype=executed.dtype))
        broken = done & ~good
        for direction in (np.inf, -np.inf):
            if not broken.any():
                break
            rows = broken.numpy()
            trial = native.copy()
            trial[rows] = np.nextafter(native[rows], dtype.type(direction))
            t_good, _, _, _ = check(torch.as_tensor(trial, dtype=executed.dtype))
            fixed = (broken & t_good).numpy()
            native[fixed] = trial[fixed]
            broken = broken & ~t_good
        if (done & ~good).any():
            _, _, ok, bodies = check(torch.as_tensor(native, dtype=executed.dtype))
        return native, ok, bodies

    # ---- bookkeeping -------------------------------------------------------
    def _info(self, ok_proposed: Tensor, ok_executed: Tensor, vetoed: Tensor, dead: Tensor,
              fallback: Tensor) -> dict[str, AnyType]:
        hard = self.rules.hard
        names = self.rules.names
        bad_prop = (~ok_proposed & hard).numpy()
        first = [names[int(np.argmax(row))] if row.any() else "" for row in bad_prop]
        return {
            "vetoed": vetoed.numpy().astype(bool),
            "dead_end": dead.numpy().astype(bool),
            "fallback": fallback.numpy().astype(bool),
            "cost": (~ok_executed).sum(-1).numpy().astype(np.float64),
            "executed_violation": (~ok_executed & hard).any(-1).numpy(),
            "rule": first,
        }
