"""Turn what the user typed (`--env`) into an env constructor."""
from __future__ import annotations

import difflib
from typing import Any, Callable

import gymnasium as gym

from envs.driver import EnvError


def make_factory(target: str | Callable[[], gym.Env], kwargs: dict[str, Any] | None = None,
                 imports: tuple[str, ...] = (), obs: str = "state",
                 image_size: int = 64) -> Callable[[], gym.Env]:
    """A zero-argument constructor for the env named by `target` (a registered id)."""
    kwargs = dict(kwargs or {})
    if callable(target):
        return lambda: target(**kwargs)
    if target not in gym.registry:
        close = difflib.get_close_matches(target, list(gym.registry), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; run `worldmodel envs` to list ids"
        raise EnvError(f"unknown env id '{target}'{hint}")
    return lambda: gym.make(target, **kwargs)
