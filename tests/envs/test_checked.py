"""Broken envs fail with one-line messages that say what broke and how to fix it."""
from __future__ import annotations

import numpy as np
import pytest

import envs
from envs import EnvError, SpaceError

FAKE = "tests.envs.fake_envs:"


def _run(target: str) -> None:
    env = envs.make_factory(FAKE + target)()
    env.reset(seed=0)
    for _ in range(3):
        env.step(env.action_space.sample())


@pytest.mark.parametrize("target, match", [
    ("FourTupleEnv", "step() returned a 4-tuple (old Gym API: obs, reward, done, info), expected 5 values"),
    ("OutOfSpaceEnv", "step() returned an observation outside observation_space"),
    ("WrongShapeEnv", "reset() returned an observation outside observation_space: obs has shape (3,)"),
    ("NoSeedEnv", "reset() does not accept seed=/options="),
    ("OldResetEnv", "reset() returned ndarray, expected (obs, info: dict)"),
    ("NanRewardEnv", "step() returned reward nan"),
    ("IntFlagEnv", "step() returned terminated=0 of type int"),
])
def test_api_breaks_are_one_line_env_errors(target: str, match: str) -> None:
    with pytest.raises(EnvError) as info:
        _run(target)
    msg = str(info.value)
    assert "\n" not in msg and match in msg, msg
    assert msg.startswith(target), msg  # names the env


@pytest.mark.parametrize("target, match", [
    ("FourTupleEnv", "4-tuple"),
    ("OutOfSpaceEnv", "outside observation_space"),
])
def test_api_breaks_surface_unwrapped_from_the_driver(target: str, match: str) -> None:
    driver = envs.Driver(envs.make_factory(FAKE + target), num_envs=2)
    driver.reset()
    with pytest.raises(EnvError) as info:
        driver.step(np.zeros(2, np.int64))
    assert match in str(info.value) and "env.step() failed" not in str(info.value)


@pytest.mark.parametrize("target, match", [
    ("InfBoxActionEnv", "has infinite bounds"),
    ("TextActionEnv", "is not supported; use Discrete, MultiDiscrete or a float Box"),
    ("TextObsEnv", "is not supported; use Box, Discrete"),
])
def test_unsupported_spaces_are_one_line_space_errors(target: str, match: str) -> None:
    with pytest.raises(SpaceError) as info:
        envs.Driver(envs.make_factory(FAKE + target))
    assert "\n" not in str(info.value) and match in str(info.value)


def test_observation_check_is_sparse_after_the_first_steps() -> None:
    from envs.checked import CHECK_EVERY, FULL_CHECKS, CheckedEnv
    from tests.envs.fake_envs import GoodEnv

    class LateBreak(GoodEnv):
        def step(self, action):
            obs, r, _, trunc, info = super().step(action)
            return obs * 0 + (5.0 if self.t > FULL_CHECKS else 0.0), r, False, trunc, info

    env = CheckedEnv(LateBreak(length=10_000))
    env.reset(seed=0)
    with pytest.raises(EnvError):
        for _ in range(CHECK_EVERY + 1):
            env.step(0)
    # It was caught at a scheduled check, not at the first bad step.
    assert FULL_CHECKS + 1 < env.unwrapped.t <= CHECK_EVERY


def test_registered_broken_env_gets_the_same_message() -> None:
    """gymnasium's own wrappers (TimeLimit, PassiveEnvChecker) must not fail first."""
    env = envs.make_factory("FakeFourTuple-v0", imports=("tests.envs.fake_register",))()
    env.reset(seed=0)
    with pytest.raises(EnvError, match="step\\(\\) returned a 4-tuple"):
        env.step(0)


def test_registered_time_limit_kept_and_overridable() -> None:
    def episode_length(kwargs: dict) -> tuple[int, bool]:
        env = envs.make_factory("Pendulum-v1", kwargs)()
        env.reset(seed=0)
        n = 0
        while True:
            n += 1
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                return n, truncated

    assert episode_length({}) == (200, True)
    assert episode_length({"max_episode_steps": 7}) == (7, True)
