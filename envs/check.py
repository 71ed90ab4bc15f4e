"""`worldmodel check-env TARGET`: will this env train, and what will the agent see?

Each check prints one line `PASS|WARN|FAIL  name  detail`. FAIL marks a blocker (the env
cannot be created, breaks the API, or has a space the agent cannot use) and makes the
exit code 1; WARN explains something that works but may surprise (dropped keys, no
render, a slow env, a replay that will not fit in RAM).
"""
from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env, data_equivalence

from envs.driver import Driver, EnvError
from envs.resolve import EnvFactory, make_factory, one_line
from envs.spaces import ActionSpec, ObsSpec, SpaceError, action_spec, obs_spec

ROLLOUT_STEPS = 500
DRIVER_STEPS = 50
SLOW_STEPS_PER_S = 200.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class _Line:
    status: str  # "PASS" | "WARN" | "FAIL"
    name: str
    detail: str
    notes: tuple[str, ...] = ()  # indented sub-lines (e.g. each gymnasium warning)


class _Report:
    def __init__(self) -> None:
        self.lines: list[_Line] = []

    def add(self, status: str, name: str, detail: str, notes: tuple[str, ...] = ()) -> None:
        self.lines.append(_Line(status, name, detail.replace("\n", " "), notes))

    @property
    def blockers(self) -> list[_Line]:
        return [ln for ln in self.lines if ln.status == "FAIL"]

    def text(self) -> str:
        out = []
        for ln in self.lines:
            out.append(f"{ln.status:<4}  {ln.name:<10} {ln.detail}")
            out += [f"{'':<16}- {note}" for note in ln.notes]
        return "\n".join(out)


def _gymnasium_checker(factory: EnvFactory, report: _Report) -> None:
    """gymnasium's own check_env on the user's env (without our wrappers), warnings captured."""
    try:
        env = factory().unwrapped
    except Exception as exc:  # noqa: BLE001 - reported, the other checks still run
        report.add("FAIL", "gymnasium", f"could not create a second instance: {one_line(exc)}")
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # Render modes are checked below, for rgb_array only ("human" would open a window).
            check_env(env, skip_render_check=True)
            error = None
        except Exception as exc:  # noqa: BLE001
            error = exc
        finally:
            env.close()
    notes = []
    for w in caught:
        msg = _ANSI.sub("", str(w.message)).removeprefix("WARN: ").replace("\n", " ").strip()
        if msg not in notes:
            notes.append(msg)
    if error is not None:
        report.add("FAIL", "gymnasium", f"check_env failed: {one_line(error)}", tuple(notes))
    elif notes:
        report.add("WARN", "gymnasium", f"check_env passed with {len(notes)} warning(s)", tuple(notes))
    else:
        report.add("PASS", "gymnasium", "check_env passed without warnings")


def _spaces(env: gym.Env, report: _Report) -> tuple[ObsSpec | None, ActionSpec | None]:
    spec = act = None
    try:
        spec = obs_spec(env.observation_space)
        for key in spec.keys:
            report.add("PASS", "obs", f"'{key.name}' {key.kind} {key.shape}: {key.source}")
        if spec.dropped:
            report.add("WARN", "obs", spec.notice or "")
    except SpaceError as exc:
        report.add("FAIL", "obs", str(exc))
    try:
        act = action_spec(env.action_space)
        how = {"discrete": "one-hot", "multidiscrete": "concatenated one-hots",
               "continuous": "in [-1, 1], scaled to the bounds"}[act.kind]
        report.add("PASS", "action", f"{env.action_space} -> {act.kind}, {how} ({act.dim},)")
    except SpaceError as exc:
        report.add("FAIL", "action", str(exc))
    return spec, act


def _has_time_limit(env: gym.Env) -> int | None:
    """max_episode_steps of a TimeLimit anywhere in the wrapper chain, else None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return int(env._max_episode_steps)
        env = env.env
    return None


def _rollout(env: gym.Env, steps: int, report: _Report) -> float | None:
    """Random actions for `steps` steps; reports episode ends; returns steps/s."""
    terminated_n = truncated_n = both_n = 0
    lengths, length = [], 0
    env.action_space.seed(0)
    try:
        env.reset(seed=0)
        start = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            length += 1
            terminated_n += bool(terminated)
            truncated_n += bool(truncated)
            both_n += bool(terminated and truncated)
            if terminated or truncated:
                lengths.append(length)
                length = 0
                env.reset()
        elapsed = time.perf_counter() - start
    except EnvError as exc:
        report.add("FAIL", "api", str(exc))
        return None
    except Exception as exc:  # noqa: BLE001
        report.add("FAIL", "api", f"random stepping raised {one_line(exc)}")
        return None
    report.add("PASS", "api", f"{steps} random steps: step/reset return types and observations OK")
    limit = _has_time_limit(env)
    if lengths:
        detail = (f"{len(lengths)} episodes in {steps} random steps ({terminated_n} terminated, "
                  f"{truncated_n} truncated), mean length {np.mean(lengths):.1f}")
        if both_n:
            report.add("WARN", "episodes", detail + f"; {both_n} steps had terminated and truncated "
                       "both true (treated as terminated: no bootstrap)")
        else:
            report.add("PASS", "episodes", detail)
    elif limit is not None:
        report.add("PASS", "episodes", f"no episode ended in {steps} random steps; TimeLimit "
                   f"truncates at {limit}")
    else:
        report.add("WARN", "episodes", f"no episode ended in {steps} random steps and there is no "
                   "TimeLimit: episodes may never end; register with max_episode_steps or wrap "
                   "in gymnasium.wrappers.TimeLimit (truncated=True, the agent still bootstraps)")
    return steps / max(elapsed, 1e-9)


def _driver(factory: EnvFactory, report: _Report) -> None:
    try:
        driver = Driver(factory, num_envs=1, seed=0)
        step = driver.reset()
        rng = np.random.default_rng(0)
        for _ in range(DRIVER_STEPS):
            # Uniform scores: argmax gives a random discrete action, and continuous ones lie in [-1, 1].
            action = rng.uniform(-1, 1, (1, driver.act_spec.dim)).astype(np.float32)
            step = driver.step(driver.act_spec.to_env(action))
        driver.close()
        shapes = ", ".join(f"{k} {v.shape[1:]}" for k, v in step.obs.items())
        report.add("PASS", "driver", f"{DRIVER_STEPS} steps through the vector driver; agent sees {shapes}")
    except (EnvError, SpaceError) as exc:
        report.add("FAIL", "driver", str(exc))
    except Exception as exc:  # noqa: BLE001
        report.add("FAIL", "driver", f"vector driver failed: {one_line(exc)}")


def _seeding(factory: EnvFactory, report: _Report) -> None:
    try:
        env = factory()
        first, _ = env.reset(seed=123)
        env.reset(seed=7)
        for _ in range(3):
            env.step(env.action_space.sample())
        again, _ = env.reset(seed=123)
        env.close()
    except Exception as exc:  # noqa: BLE001
        report.add("WARN", "seeding", f"could not test: {one_line(exc)}")
        return
    if data_equivalence(first, again):
        report.add("PASS", "seeding", "reset(seed=123) twice gives the same observation")
    else:
        report.add("WARN", "seeding", "reset(seed=123) twice gives different observations: runs "
                   "are not reproducible; call super().reset(seed=seed) and draw from self.np_random")


def _render(factory: EnvFactory, report: _Report) -> None:
    render_factory = EnvFactory(factory.target, factory.label, factory.kwargs, factory.imports,
                                "state", factory.image_size, render=True)
    fallback = "videos of real and dreamed episodes fall back to line charts of observations"
    try:
        env = render_factory()
        env.reset(seed=0)
        frame = env.render()
        env.close()
    except Exception as exc:  # noqa: BLE001
        report.add("WARN", "render", f"render() raised {one_line(exc)}; {fallback}")
        return
    shape = None if frame is None else np.asarray(frame).shape
    if shape is not None and len(shape) == 3 and shape[-1] in (3, 4):
        report.add("PASS", "render", f"rgb_array frames {shape}: videos show real and dreamed frames")
    else:
        modes = env.metadata.get("render_modes", [])
        report.add("WARN", "render", f"no rgb_array frame (render_modes {modes}, got "
                   f"{'None' if shape is None else shape}); {fallback}")


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, else free physical pages, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _round_down(n: float) -> int:
    """Largest 1, 2 or 5 x 10^k not above n (a capacity a person would type)."""
    if n < 1:
        return 0
    k = 10 ** int(np.floor(np.log10(n)))
    return max(m * k for m in (1, 2, 5) if m * k <= n)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def _memory(spec: ObsSpec, act: ActionSpec, capacity: int, budget: int | None, report: _Report) -> None:
    # obs as stored by the agent + float32 action vector + float32 reward + 3 bool flags.
    per_step = spec.bytes_per_step() + 4 * act.dim + 4 + 3
    need = per_step * capacity
    source = "memory budget"
    if budget is None:
        budget, source = available_memory_bytes(), "available RAM"
    detail = f"replay of {capacity:,} steps x {per_step:,} B/step ~ {_gib(need)}"
    if budget is None:
        report.add("PASS", "memory", detail + " (available RAM unknown)")
    elif need <= 0.8 * budget:
        report.add("PASS", "memory", detail + f", fits in {source} {_gib(budget)}")
    else:
        suggest = _round_down(0.5 * budget / per_step)
        report.add("WARN", "memory", detail + f", more than 80% of {source} {_gib(budget)}; "
                   f"use a replay capacity of about {suggest:,}")


def check_env_report(target: str | Callable[..., gym.Env], kwargs: dict[str, Any] | None = None,
                     imports: tuple[str, ...] = (), obs: str = "state",
                     replay_capacity: int = 1_000_000, memory_budget_bytes: int | None = None,
                     steps: int = ROLLOUT_STEPS) -> tuple[str, int]:
    """The check-env report text and exit code (1 on a blocker, else 0)."""
    report = _Report()
    label = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
    try:
        factory = make_factory(target, kwargs, imports, obs)
        env = factory()
        report.add("PASS", "create", f"{factory.label} (obs={obs}) -> {env}")
    except (EnvError, SpaceError) as exc:
        report.add("FAIL", "create", str(exc))
        return _finish(f"check-env {label}", report)
    except Exception as exc:  # noqa: BLE001
        report.add("FAIL", "create", f"could not create {label}: {one_line(exc)}")
        return _finish(f"check-env {label}", report)

    _gymnasium_checker(factory, report)
    spec, act = _spaces(env, report)
    speed = _rollout(env, steps, report)
    env.close()
    if spec is not None and act is not None:
        _driver(factory, report)
    _seeding(factory, report)
    _render(factory, report)
    if speed is not None:
        status = "PASS" if speed >= SLOW_STEPS_PER_S else "WARN"
        slow = "" if status == "PASS" else "; a slow env: training will wait on env steps"
        report.add(status, "speed", f"{speed:,.0f} env steps/s with random actions{slow}")
    if spec is not None and act is not None:
        _memory(spec, act, replay_capacity, memory_budget_bytes, report)
    return _finish(f"check-env {label} (obs={obs})", report)


def _finish(header: str, report: _Report) -> tuple[str, int]:
    blockers = report.blockers
    warns = sum(ln.status == "WARN" for ln in report.lines)
    if blockers:
        verdict = f"verdict: not usable: {blockers[0].name}: {blockers[0].detail}"
    else:
        verdict = "verdict: usable" + (f" ({warns} warning{'s' * (warns != 1)})" if warns else "")
    return "\n".join([header, report.text(), verdict]), 1 if blockers else 0
