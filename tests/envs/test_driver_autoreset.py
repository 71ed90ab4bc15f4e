"""NEXT_STEP autoreset as the agent sees it, on envs with short and uneven episodes."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from tests.envs.fake_envs import GoodEnv


@settings(max_examples=15, deadline=None)
@given(lengths=st.lists(st.integers(1, 4), min_size=1, max_size=3), steps=st.integers(1, 25))
def test_is_first_never_with_is_last_and_zero_reward(lengths: list[int], steps: int) -> None:
    # The Driver calls one factory per env; hand out one length per call, in order, so
    # episodes end on different steps in each column.
    factories = [envs.make_factory(GoodEnv, {"length": n}) for n in lengths]
    made = iter(factories)
    driver = envs.Driver(lambda: next(made)(), num_envs=len(lengths))
    step = driver.reset()
    t = np.zeros(len(lengths), int)  # steps since is_first, per env
    for _ in range(steps):
        step = driver.step(np.zeros(len(lengths), np.int64))
        assert not (step.is_first & step.is_last).any()
        assert (step.reward[step.is_first] == 0).all()
        assert not step.is_terminal[step.is_first].any()
        t = np.where(step.is_first, 0, t + 1)
        # GoodEnv gives reward 1 every real step and terminates after `length` steps.
        assert (step.reward[~step.is_first] == 1).all()
        np.testing.assert_array_equal(step.is_last, t == np.array(lengths))
        np.testing.assert_array_equal(step.is_terminal, step.is_last)
    for i, ret, length in step.ended:
        assert ret == length == lengths[i]
    driver.close()


def test_time_limit_truncation_is_last_but_not_terminal() -> None:
    import gymnasium as gym

    driver = envs.Driver(lambda: gym.wrappers.TimeLimit(GoodEnv(length=100), 3), num_envs=2)
    driver.reset()
    flags = []
    for _ in range(8):
        step = driver.step(np.zeros(2, np.int64))
        flags.append((bool(step.is_first[0]), bool(step.is_last[0]), bool(step.is_terminal[0])))
    # 3 steps, the third truncated (last, not terminal: the agent bootstraps), then a reset step.
    assert flags[:4] == [(False, False, False), (False, False, False), (False, True, False),
                         (True, False, False)]
    driver.close()
