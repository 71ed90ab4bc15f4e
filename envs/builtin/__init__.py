"""This project's own small envs, registered under the `worldmodel/` namespace.

Registration is cheap (string entry points, nothing imported) and runs when `envs` is
imported, so `--env worldmodel/SafeCorridor-v0` needs no `--env-import`. The DeepMind
Control ids are registered the same way; dm_control (the `dmc` extra) is only imported
when one of them is made (envs/dmc.py).
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

# DeepMind Control Suite tasks (the `dmc` extra): (domain, task), registered as
# worldmodel/dmc-DOMAIN-TASK-v0 with envs.dmc.DMCEnv. No max_episode_steps: the suite's own
# time limit (1000 frames = 500 steps at the default action repeat 2) truncates episodes.
DMC_TASKS: tuple[tuple[str, str], ...] = (
    ("cartpole", "swingup"),
    ("pendulum", "swingup"),
    ("reacher", "easy"),
)
DMC_ENTRY_POINT = "envs.dmc:DMCEnv"


def dmc_id(domain: str, task: str) -> str:
    return f"{NAMESPACE}/dmc-{domain}-{task}-v0"


# (id, one-line description for `worldmodel envs`)
DMC_IDS: tuple[tuple[str, str], ...] = tuple(
    (dmc_id(domain, task), f"DeepMind Control {domain}-{task}: proprio, action repeat 2 (dmc extra)")
    for domain, task in DMC_TASKS)


def register_builtins() -> None:
    """Register the built-in envs with Gymnasium (idempotent)."""
    for env_id, entry_point, max_steps, _ in BUILTINS:
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)
    for domain, task in DMC_TASKS:
        if dmc_id(domain, task) not in gym.registry:
            gym.register(id=dmc_id(domain, task), entry_point=DMC_ENTRY_POINT,
                         kwargs={"domain": domain, "task": task})
