"""Turn what the user typed (`--env`, `--env-kwargs`, `--env-import`, `--obs`) into an env constructor.

Accepted targets:
  registered id        CartPole-v1, worldmodel/SafeCorridor-v0, MiniGrid-LavaGapS5-v0
  module:Class         examples.custom_env:TargetEnv   (any gymnasium.Env subclass)
  module:factory       mypkg.envs:make_env             (a function returning a gymnasium.Env)
  module:Id-v0         mypkg:MyEnv-v0                  (import mypkg, then make the registered id)
  dmc:DOMAIN-TASK      dmc:ball_in_cup-catch           (any dm_control.suite task; the dmc extra)
  a Python callable    TargetEnv, functools.partial(make_env, hard=True)

Every env the factory builds is wrapped, inside out: the user's env -> CheckedEnv (API
breaks become one-line EnvErrors) -> PixelObservation (obs="pixels") or ResizeImages
(images that are not image_size x image_size).
"""
from __future__ import annotations

import difflib
import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym

from envs.builtin import BUILTINS, DMC_IDS, NAMESPACE
from envs.checked import CheckedEnv
from envs.dmc import DMC_HINT, DMC_PREFIX, has_dm_control, make_dmc
from envs.driver import EnvError
from envs.pixels import PixelObservation, ResizeImages, needs_resize

OBS_MODES = ("state", "pixels")
MINIGRID_PREFIXES = ("MiniGrid-", "BabyAI-")
MINIGRID_HINT = 'pip install -e ".[minigrid]"'


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, short enough for a CLI error line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parse_env_kwargs(text: str | None) -> dict[str, Any]:
    """`--env-kwargs` JSON text -> dict ('' or None -> {})."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EnvError(f"--env-kwargs is not valid JSON ({exc.msg} at column {exc.colno}); "
                       """write a JSON object, e.g. --env-kwargs '{"size": 8}'""") from None
    if not isinstance(value, dict):
        raise EnvError(f"--env-kwargs must be a JSON object, got {type(value).__name__}; "
                       """e.g. --env-kwargs '{"size": 8}'""")
    return value


def _import(module: str, flag: str) -> Any:
    """Import `module`; on failure raise a one-line EnvError saying what to do.

    A console script's sys.path does not contain the working directory, so a module the
    user wrote next to their shell (`examples.custom_env`) is retried with it added, the
    way `python -m` would find it.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        own = module == missing or module.startswith(missing + ".")
        cwd = os.getcwd()
        if own and cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
            importlib.invalidate_caches()
            return _import(module, flag)
        if own:
            raise EnvError(f"{flag}: module '{module}' not found (No module named '{missing}'); "
                           "check the dotted path, run from the directory that contains it, "
                           "or pip install the package") from None
        raise EnvError(f"{flag}: importing '{module}' failed: No module named '{missing}'; "
                       f"pip install {missing.split('.')[0]}") from None
    except Exception as exc:  # noqa: BLE001 - any error inside the user's module
        raise EnvError(f"{flag}: importing '{module}' raised {one_line(exc)}") from None


def _closest_id(target: str) -> str | None:
    ids = list(gym.registry)
    by_lower = {i.lower(): i for i in ids}
    match = difflib.get_close_matches(target.lower(), list(by_lower), n=1, cutoff=0.5)
    return by_lower[match[0]] if match else None


def _resolve_id(target: str) -> str:
    if target not in gym.registry and target.startswith(MINIGRID_PREFIXES):
        try:
            importlib.import_module("minigrid")  # registers the MiniGrid-/BabyAI- ids
        except ImportError:
            raise EnvError(f"{target} needs the minigrid extra: {MINIGRID_HINT}") from None
    if target in dict(DMC_IDS) and not has_dm_control():
        raise EnvError(f"{target} needs the dmc extra (dm_control is not installed): {DMC_HINT}")
    if target not in gym.registry:
        close = _closest_id(target)
        hint = f"; did you mean '{close}'?" if close else ""
        raise EnvError(f"unknown env id '{target}'{hint} (run `worldmodel envs` to list ids; "
                       "for your own env pass module:Class)")
    return target


def _resolve_entry_point(target: str) -> str | Callable[..., gym.Env]:
    module_name, attr = target.split(":", 1)
    module = _import(module_name, f"--env {target}")
    if not hasattr(module, attr):
        if attr in gym.registry:  # gymnasium's own "module:Id-v0" form
            return attr
        names = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, names, n=1)
        hint = f"; did you mean '{module_name}:{close[0]}'?" if close else ""
        raise EnvError(f"--env {target}: module '{module_name}' has no attribute '{attr}'{hint}")
    return _check_creator(getattr(module, attr), f"--env {target}")


def _check_creator(obj: Any, label: str) -> Callable[..., gym.Env]:
    if isinstance(obj, type) and not issubclass(obj, gym.Env):
        raise EnvError(f"{label}: class {obj.__name__} is not a gymnasium.Env; "
                       "subclass gymnasium.Env, or point at a function that returns one")
    if isinstance(obj, gym.Env):
        raise EnvError(f"{label}: is an env instance, not a constructor; "
                       "point at the class or a function that returns a new env")
    if not callable(obj):
        raise EnvError(f"{label}: {type(obj).__name__} object is not callable; "
                       "point at a gymnasium.Env class or a function that returns one")
    return obj


def _render_modes(creator: Any) -> list[str] | None:
    """The env's declared render modes, or None when they cannot be known before making it."""
    if isinstance(creator, str):
        spec = gym.registry[creator]
        entry = spec.entry_point
        if isinstance(entry, str):
            try:
                entry = gym.envs.registration.load_env_creator(entry)
            except Exception:  # noqa: BLE001 - gym.make will report it properly
                return None
        creator = entry
    metadata = getattr(creator, "metadata", None)
    return list(metadata.get("render_modes", [])) if isinstance(metadata, dict) else None


@dataclass
class EnvFactory:
    """A zero-argument, picklable env constructor (what make_factory returns)."""

    target: str | Callable[..., gym.Env]  # a registered id or a constructor
    label: str  # how messages name the env
    kwargs: dict[str, Any] = field(default_factory=dict)
    imports: tuple[str, ...] = ()
    obs: str = "state"
    image_size: int = 64
    render: bool = False

    def _make(self, kwargs: dict[str, Any]) -> gym.Env:
        if isinstance(self.target, str):
            # CheckedEnv must see the env's own step(): gymnasium's PassiveEnvChecker and
            # TimeLimit unpack 5 values and would fail first, cryptically, on a 4-tuple. So
            # CheckedEnv replaces the passive checker, and __call__ adds the TimeLimit
            # outside it (`max_episode_steps` in --env-kwargs overrides the registered one).
            return gym.make(self.target, max_episode_steps=-1, disable_env_checker=True, **kwargs)
        return self.target(**kwargs)

    def _time_limit(self) -> int | None:
        if not isinstance(self.target, str):
            return None
        limit = self.kwargs.get("max_episode_steps", gym.spec(self.target).max_episode_steps)
        return None if limit is None or limit < 0 else int(limit)

    def __call__(self) -> gym.Env:
        for module in self.imports:  # again: a spawned worker process starts without them
            _import(module, "--env-import")
        if isinstance(self.target, str) and self.target.startswith(MINIGRID_PREFIXES):
            _resolve_id(self.target)
        kwargs = dict(self.kwargs)
        for key in ("max_episode_steps", "disable_env_checker"):  # gym.make's, set in _make
            kwargs.pop(key, None)
        want_frames = self.obs == "pixels" or self.render
        modes = _render_modes(self.target)
        if want_frames and "render_mode" not in kwargs and (modes is None or "rgb_array" in modes):
            kwargs["render_mode"] = "rgb_array"
        try:
            env = self._make(kwargs)
        except TypeError as exc:
            # A constructor without render_mode: fine for optional videos, fatal for pixels
            # (PixelObservation below says so).
            if "render_mode" in str(exc) and "render_mode" not in self.kwargs:
                kwargs.pop("render_mode")
                env = self._make_or_fail(kwargs)
            else:
                raise self._create_error(exc, kwargs) from None
        except EnvError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's constructor
            raise self._create_error(exc, kwargs) from None
        if not isinstance(env, gym.Env):
            raise EnvError(f"{self.label} returned a {type(env).__name__}, not a gymnasium.Env; "
                           "return an instance of a gymnasium.Env subclass")
        env = CheckedEnv(env)
        limit = self._time_limit()
        if limit is not None:
            env = gym.wrappers.TimeLimit(env, limit)
        if self.obs == "pixels":
            env = PixelObservation(env, self.image_size)
        elif needs_resize(env.observation_space, self.image_size):
            env = ResizeImages(env, self.image_size)
        return env

    def _make_or_fail(self, kwargs: dict[str, Any]) -> gym.Env:
        try:
            return self._make(kwargs)
        except Exception as exc:  # noqa: BLE001
            raise self._create_error(exc, kwargs) from None

    def _create_error(self, exc: Exception, kwargs: dict[str, Any]) -> EnvError:
        user_kwargs = {k: v for k, v in kwargs.items() if k in self.kwargs}
        hint = "; check --env-kwargs" if isinstance(exc, TypeError) and user_kwargs else ""
        return EnvError(f"could not create {self.label} with kwargs {user_kwargs}: {one_line(exc)}{hint}")


def make_factory(target: str | Callable[..., gym.Env], kwargs: dict[str, Any] | None = None,
                 imports: tuple[str, ...] = (), obs: str = "state", image_size: int = 64,
                 render: bool = False) -> EnvFactory:
    """A zero-argument constructor for the env named by `target` (see the module docstring).

    Name resolution happens now (so typos fail before any training starts); the env
    itself is created on each call. `render=True` asks for render_mode="rgb_array" when
    the env supports it (for videos); obs="pixels" requires it.
    """
    if obs not in OBS_MODES:
        raise EnvError(f"--obs must be one of {', '.join(OBS_MODES)}, got '{obs}'")
    if image_size < 8:
        raise EnvError(f"image size must be >= 8 pixels, got {image_size}")
    imports = tuple(imports)
    for module in imports:
        _import(module, "--env-import")
    resolved: str | Callable[..., gym.Env]
    if callable(target) and not isinstance(target, str):
        label = getattr(target, "__name__", None) or repr(target)
        resolved = _check_creator(target, label)
    elif isinstance(target, str) and target.startswith(DMC_PREFIX):
        label = target
        resolved = make_dmc(target)
    elif isinstance(target, str) and ":" in target:
        label = target
        resolved = _resolve_entry_point(target)
    elif isinstance(target, str):
        label = target
        resolved = _resolve_id(target)
    else:
        raise EnvError(f"--env must be an id, module:Class or a callable, got {type(target).__name__}")
    return EnvFactory(resolved, label, dict(kwargs or {}), imports, obs, image_size, render)


def list_envs() -> list[tuple[str, str]]:
    """(id, description) for `worldmodel envs`: this project's envs first, then every other
    registered Gymnasium id, grouped by namespace (description "<namespace>: <entry point>";
    ids without a namespace are grouped by the entry point's top-level package)."""
    rows = [(env_id, description) for env_id, _, _, description in BUILTINS] + list(DMC_IDS)
    ours = {env_id for env_id, _ in rows}
    others = []
    for env_id, spec in gym.registry.items():
        if env_id in ours or spec.namespace == NAMESPACE:
            continue
        entry = spec.entry_point if spec.entry_point is not None else spec.vector_entry_point
        if not isinstance(entry, str):  # a callable: name it the way a string entry point would
            entry = f"{getattr(entry, '__module__', '?')}:{getattr(entry, '__qualname__', entry)}"
        group = spec.namespace or entry.split(".")[0].split(":")[0]
        others.append((group, env_id, f"{group}: {entry}"))
    rows += [(env_id, description) for _, env_id, description in sorted(others)]
    return rows
