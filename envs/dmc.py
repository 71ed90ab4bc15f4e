"""DeepMind Control Suite tasks (proprioceptive) as Gymnasium envs, through dm_control.

Optional extra: `pip install -e ".[dmc]"` (dm_control 1.0.50 with mujoco < 4). Nothing here
imports dm_control until an env is made, so `import envs` works without it, and a missing
extra is one line naming the fix.

  DMCEnv("cartpole", "swingup")              # or gym.make("worldmodel/dmc-cartpole-swingup-v0")
  --env worldmodel/dmc-reacher-easy-v0       # registered ids (envs/builtin)
  --env dmc:ball_in_cup-catch                # any task of dm_control.suite.ALL_TASKS

What the agent sees:
  observation  float32 (D,): the time step's observation dict flattened and concatenated in
               the task's own key order (`obs_keys`; `obs_slices[key]` finds a key again),
               e.g. cartpole: position (3,) + velocity (2,). The world model concatenates
               a Dict of vectors into one MLP input anyway, so a flat Box trains the same
               and keeps `obs[i]` indexing for rules and the whole vector in video charts.
  action       Box(float32) with the action_spec's bounds (all suite tasks: [-1, 1]).
  reward       the sum of the per-frame rewards over the repeated frames (each in [0, 1]).
  episode end  dm_env's LAST step: terminated when its discount is 0 (a true end), else
               truncated (the suite's time limit, 1000 frames: the agent bootstraps).

Steps and frames: `action_repeat` (default 2, DreamerV3's DMC setting in its 2023 release;
its 2025 configs use 1) applies each action for that many physics control steps ("frames").
Every step this project counts (`--steps`, `run.steps`, the learning benchmark's budgets,
the x axis of every curve) is one *agent* step = `action_repeat` frames, so an episode is
500 steps and a 50,000-step run is 100,000 frames. DreamerV3's published DMC step counts are
frames (its logger multiplies its agent-step counter by the action repeat): compare a run
of N steps here with DreamerV3 at N * action_repeat.

Rendering (`render_mode="rgb_array"`, frames height x width from `camera_id`) needs an
OpenGL backend. dm_control picks it from MUJOCO_GL at its first import; when MUJOCO_GL is
unset on a machine without a display, this module sets it first (egl when libEGL exists,
else osmesa when libOSMesa exists, else disable), because dm_control's own default there
(GLFW) fails on the first frame and aborts the process on the second. Without a backend,
render() raises a one-line EnvError; state observations never need rendering.
"""
from __future__ import annotations

import ctypes.util
import difflib
import functools
import importlib.util
import os
import sys
from typing import Any

import gymnasium as gym
import numpy as np

from envs.driver import EnvError

DMC_PREFIX = "dmc:"  # --env dmc:DOMAIN-TASK
DMC_HINT = 'pip install -e ".[dmc]"'
_OFF = ("off", "disable", "disabled", "false", "0")  # dm_control's names for "no renderer"

# Process-wide: why rendering failed, once it has. A failed GL context is never retried (a
# second GLFW attempt after a failed one aborts the whole process in MuJoCo's C++ code).
_render_failure: str | None = None


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def has_dm_control() -> bool:
    """Whether dm_control can be imported (without importing it: that takes ~1.5 s)."""
    try:
        return importlib.util.find_spec("dm_control") is not None
    except (ImportError, ValueError):
        return False


def _choose_gl_backend() -> str | None:
    """Set MUJOCO_GL before dm_control's first import on a headless machine; returns what
    was set, or None when the user's (or dm_control's own) choice stands."""
    if "MUJOCO_GL" in os.environ or "dm_control._render" in sys.modules:  # read at its import
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None  # a desktop: GLFW works
    if ctypes.util.find_library("EGL"):
        backend = "egl"
    elif ctypes.util.find_library("OSMesa"):
        backend = "osmesa"
    else:
        backend = "disable"
    os.environ["MUJOCO_GL"] = backend
    return backend


def _import_suite(label: str) -> Any:
    """dm_control.suite, or a one-line EnvError saying what is missing."""
    global _render_failure
    pyopengl_platform = os.environ.get("PYOPENGL_PLATFORM")
    chosen = _choose_gl_backend()
    try:
        from dm_control import suite
        return suite
    except ModuleNotFoundError as exc:
        raise EnvError(f"{label} needs the dmc extra (no module named '{exc.name}'): {DMC_HINT}") from None
    except Exception as exc:  # noqa: BLE001 - a renderer that failed to initialise at import
        if chosen in (None, "disable"):
            raise EnvError(f"{label}: importing dm_control failed with MUJOCO_GL="
                           f"{os.environ.get('MUJOCO_GL', '(unset)')} ({_first_line(exc)}); set "
                           "MUJOCO_GL=egl, osmesa or disable (state observations need no renderer)") from None
        _render_failure = f"MUJOCO_GL={chosen} failed at import, {_first_line(exc)}"
    # The backend this module picked (e.g. EGL without a usable device) broke dm_control's
    # import: forget the half-imported package and import it again without a renderer.
    for name in [m for m in sys.modules if m == "dm_control" or m.startswith("dm_control.")]:
        del sys.modules[name]
    os.environ["MUJOCO_GL"] = "disable"
    if pyopengl_platform is None:
        os.environ.pop("PYOPENGL_PLATFORM", None)
    from dm_control import suite
    return suite


def _mujoco_hint() -> str:
    try:
        import mujoco
        major = int(str(mujoco.__version__).split(".")[0])
    except Exception:  # noqa: BLE001
        return ""
    return (f"; mujoco {mujoco.__version__} is installed and dm_control 1.0.50 needs mujoco<4: "
            f"{DMC_HINT}") if major >= 4 else ""


class DMCEnv(gym.Env[np.ndarray, np.ndarray]):
    """One dm_control.suite task; see the module docstring for spaces, episode ends and steps."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, domain: str = "cartpole", task: str = "swingup", action_repeat: int = 2,
                 render_mode: str | None = None, height: int = 64, width: int = 64,
                 camera_id: int = 0) -> None:
        if int(action_repeat) != action_repeat or action_repeat < 1:
            raise ValueError(f"action_repeat must be an integer >= 1, got {action_repeat!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.domain, self.task = domain, task
        self.name = f"DMC {domain}-{task}"
        self.action_repeat = int(action_repeat)
        self.render_mode = render_mode
        self.height, self.width, self.camera_id = int(height), int(width), int(camera_id)
        suite = _import_suite(self.name)
        # The task draws every episode's initial state from this RandomState; reset(seed=...)
        # reseeds it in place, which makes the episode reproducible.
        self._random = np.random.RandomState(0)
        try:
            self._env = suite.load(domain, task, task_kwargs={"random": self._random})
        except Exception as exc:  # noqa: BLE001 - unknown task, or a dm_control/mujoco mismatch
            raise EnvError(f"could not load {self.name}: {_first_line(exc)}{_mujoco_hint()}") from None
        spec = self._env.observation_spec()
        self.obs_keys: tuple[str, ...] = tuple(spec)
        sizes = [int(np.prod(spec[k].shape)) for k in self.obs_keys]
        offsets = np.cumsum([0, *sizes])
        self.obs_slices = {k: slice(int(offsets[i]), int(offsets[i + 1])) for i, k in enumerate(self.obs_keys)}
        # The specs are unbounded; "any finite float32" says the same without gymnasium's
        # infinite-bound warnings, and lets CheckedEnv reject a non-finite observation.
        big = float(np.finfo(np.float32).max)
        self.observation_space = gym.spaces.Box(-big, big, (int(offsets[-1]),), np.float32)
        act = self._env.action_spec()
        low = np.broadcast_to(act.minimum, act.shape).astype(np.float32)
        high = np.broadcast_to(act.maximum, act.shape).astype(np.float32)
        self.action_space = gym.spaces.Box(low, high, act.shape, np.float32)
        # A frame is one control step (cartpole 0.01 s), an agent step action_repeat of them.
        self.metadata = {**self.metadata,
                         "render_fps": round(1.0 / (self._env.control_timestep() * self.action_repeat))}
        self._seeded = False
        self._ended: bool | None = None  # None before the first reset

    def _obs(self, observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(observation[k], np.float32).reshape(-1) for k in self.obs_keys])

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self._random.seed(int(self.np_random.integers(2**31 - 1)))
            self._seeded = True
        time_step = self._env.reset()
        self._ended = False
        return self._obs(time_step.observation), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._ended is None or self._ended:
            when = "before reset()" if self._ended is None else "after the episode ended"
            raise EnvError(f"{self.name}: step() called {when}; call reset() first")
        action = np.asarray(action, np.float64).reshape(self.action_space.shape)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            reward += float(time_step.reward or 0.0)
            if time_step.last():
                break
        terminated = truncated = False
        if time_step.last():
            self._ended = True
            terminated = float(time_step.discount) == 0.0  # dm_env: discount 0 = true end
            truncated = not terminated  # the time limit: the value still bootstraps
        return self._obs(time_step.observation), reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        global _render_failure
        if self.render_mode != "rgb_array":
            return None
        backend = os.environ.get("MUJOCO_GL", "")
        if _render_failure is None and backend.lower() in _OFF:
            _render_failure = f"MUJOCO_GL={backend}"
        if _render_failure is None:
            try:
                return self._env.physics.render(self.height, self.width, camera_id=self.camera_id)
            except Exception as exc:  # noqa: BLE001 - no GL context could be made
                _render_failure = f"MUJOCO_GL={backend or '(unset)'}: {_first_line(exc)}"
        raise EnvError(f"{self.name} cannot render, no working OpenGL backend ({_render_failure}); set "
                       "MUJOCO_GL=egl (GPU or Mesa EGL) or MUJOCO_GL=osmesa (libosmesa6) before starting; "
                       "state observations need no rendering")

    def close(self) -> None:
        env = getattr(self, "_env", None)
        if env is not None:
            env.close()


def parse_target(target: str) -> tuple[str, str]:
    """'dmc:DOMAIN-TASK' -> (domain, task), checked against dm_control.suite.ALL_TASKS.
    Domain and task names use '_' inside ('ball_in_cup', 'swingup_sparse'), never '-'."""
    name = target[len(DMC_PREFIX):] if target.startswith(DMC_PREFIX) else target
    suite = _import_suite(f"--env {target}")
    known = [f"{d}-{t}" for d, t in suite.ALL_TASKS]
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"; did you mean '{DMC_PREFIX}{close[0]}'?" if close else ""
        raise EnvError(f"--env {target}: unknown DMC task '{name}'{hint} (write dmc:DOMAIN-TASK, "
                       "e.g. dmc:cartpole-swingup; tasks are dm_control.suite.ALL_TASKS)")
    domain, task = name.split("-", 1)
    return domain, task


def make_dmc(target: str) -> functools.partial:
    """A picklable constructor for `dmc:DOMAIN-TASK` (keyword arguments still pass through)."""
    domain, task = parse_target(target)
    return functools.partial(DMCEnv, domain=domain, task=task)
