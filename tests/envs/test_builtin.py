"""Contract tests over every built-in env: Gymnasium's checker and a Driver round trip."""
from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.builtin import BUILTINS
from envs.builtin.cue_memory import CueMemoryEnv
from envs.builtin.safe_corridor import OBS_HAZARD, RIGHT, UP, SafeCorridorEnv

BUILTIN_IDS = [env_id for env_id, *_ in BUILTINS]


@pytest.mark.parametrize("env_id", BUILTIN_IDS)
def test_gymnasium_check_env_passes_without_warnings(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("env_id", BUILTIN_IDS)
def test_listed_and_resolvable_without_imports(env_id: str) -> None:
    assert env_id in dict(envs.list_envs())
    env = envs.make_factory(env_id)()
    assert env.observation_space.contains(env.reset(seed=0)[0])


@pytest.mark.parametrize("env_id", BUILTIN_IDS)
def test_driver_round_trip(env_id: str) -> None:
    driver = envs.Driver(envs.make_factory(env_id), num_envs=3, seed=0)
    step = driver.reset()
    assert step.is_first.all() and not step.is_last.any()
    rng = np.random.default_rng(0)
    prev_last = np.zeros(3, bool)
    episodes = 0
    for _ in range(300):
        act = rng.uniform(-1, 1, (3, driver.act_spec.dim)).astype(np.float32)
        step = driver.step(driver.act_spec.to_env(act))
        for key in driver.obs_spec.keys:
            assert step.obs[key.name].shape == (3, *key.shape)
            assert np.isfinite(step.obs[key.name]).all()
        assert step.reward.shape == step.is_first.shape == step.is_last.shape == (3,)
        np.testing.assert_array_equal(step.is_first, prev_last)  # is_first right after is_last
        assert not (step.is_first & step.is_last).any()
        assert (step.reward[step.is_first] == 0).all()
        assert not step.is_terminal[step.is_first].any()
        assert (step.is_terminal <= step.is_last).all()
        prev_last = step.is_last.copy()
        episodes += len(step.ended)
    assert episodes > 0
    driver.close()


@pytest.mark.parametrize("env_id", BUILTIN_IDS)
def test_renders_rgb_frames(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


def test_safe_corridor_safe_path_reaches_goal_and_hazard_is_violation() -> None:
    env = SafeCorridorEnv(length=9)
    obs, _ = env.reset(seed=0)
    # right x3, up, right x2, down, right x3: the detour over the blocked column 4.
    total, info = 0.0, {}
    for i, a in enumerate([1, 1, 1, 0, 1, 1, 2, 1, 1, 1]):
        obs, r, terminated, truncated, info = env.step(a)
        assert not info["violation"]
        assert terminated == (i == 9)
        total += r
    assert total == pytest.approx(1.0 - 0.09)
    # From the start, two steps right puts the agent beside hazards above and below.
    env.reset(seed=0)
    env.step(RIGHT)
    obs, *_ = env.step(RIGHT)
    assert obs[OBS_HAZARD + UP] == 1.0  # so the rule forbids UP here
    obs, r, terminated, _, info = env.step(UP)
    assert terminated and info["violation"] and r == -1.0


@pytest.mark.parametrize("length", [1, 5])
def test_cue_memory_pays_for_remembering(length: int) -> None:
    env = CueMemoryEnv(length=length, n_cues=3)
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        cue = int(np.argmax(obs[:3]))
        assert obs[:3].sum() == 1 and obs[3] == 0
        for t in range(length):
            obs, r, terminated, _, _ = env.step(0)
            assert r == 0 and not terminated and obs[:3].sum() == 0
        assert obs[3] == 1  # the query flag
        _, r, terminated, _, info = env.step(cue if seed % 2 else (cue + 1) % 3)
        assert terminated and r == (1.0 if seed % 2 else -1.0) and info["correct"] == bool(seed % 2)


@pytest.mark.parametrize("reveal", [False, True])
def test_cue_memory_reveal_shows_the_cue_only_after_the_answer(reveal: bool) -> None:
    env = envs.make_factory("worldmodel/CueMemory-v0", {"length": 3, "reveal": reveal})()
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        cue = int(np.argmax(obs[:2]))
        for _ in range(3):
            obs, *_ = env.step(0)
            assert obs[:2].sum() == 0  # the gap and the query stay blank either way
        obs, _, terminated, _, _ = env.step(cue)
        assert terminated
        assert obs[:2].tolist() == ([1.0 * (i == cue) for i in range(2)] if reveal else [0.0, 0.0])


def test_cue_memory_refuses_a_non_boolean_reveal() -> None:
    with pytest.raises(ValueError, match="reveal must be true or false"):
        CueMemoryEnv(reveal="yes")


def test_cue_memory_length_kwarg_through_make_factory() -> None:
    env = envs.make_factory("worldmodel/CueMemory-v0", {"length": 4})()
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(0)
        steps, done = steps + 1, terminated or truncated
    assert steps == 5
