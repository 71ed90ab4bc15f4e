"""This project's own small envs, registered under the `worldmodel/` namespace.

Registration is cheap (string entry points, nothing imported) and runs when `envs` is
imported, so `--env worldmodel/SafeCorridor-v0` needs no `--env-import`.
"""
from __future__ import annotations

import gymnasium as gym

NAMESPACE = "worldmodel"

# (id, entry point, max_episode_steps, one-line description for `worldmodel envs`)
BUILTINS: tuple[tuple[str, str, int | None, str], ...] = (
    ("worldmodel/SafeCorridor-v0", "envs.builtin.safe_corridor:SafeCorridorEnv", 100,
     "3-row corridor to a goal past hazard cells; hazard = violation (shield demo)"),
    ("worldmodel/CueMemory-v0", "envs.builtin.cue_memory:CueMemoryEnv", None,
     "a cue shown once decides the rewarded final action after `length` blank steps"),
)


def register_builtins() -> None:
    """Register the built-in envs with Gymnasium (idempotent)."""
    for env_id, entry_point, max_steps, _ in BUILTINS:
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)
