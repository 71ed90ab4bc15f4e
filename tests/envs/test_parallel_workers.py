"""Env stepping in worker processes (gymnasium AsyncVectorEnv)."""
import numpy as np
import pytest

from envs import Driver, EnvError, make_factory


def test_async_workers_step_and_reset_like_sync():
    make = make_factory("tests.envs.crashy_envs:CountEnv")
    results = []
    for parallel in (False, True):
        driver = Driver(make, num_envs=3, seed=0, parallel=parallel)
        step = driver.reset()
        seen = [step.obs["obs"][:, 0].copy()]
        firsts = [step.is_first.copy()]
        for _ in range(12):
            step = driver.step(np.zeros(3, np.int64))
            seen.append(step.obs["obs"][:, 0].copy())
            firsts.append(step.is_first.copy())
            assert not (step.is_first & step.is_last).any()
        driver.close()
        results.append((np.array(seen), np.array(firsts)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    # episodes of 5 steps, then the reset observation with is_first
    assert results[1][1][6].all() and results[1][0][5].tolist() == [5.0, 5.0, 5.0]


@pytest.mark.parametrize("target,words", [("tests.envs.crashy_envs:RaisingEnv", "simulator exploded"),
                                          ("tests.envs.crashy_envs:DyingEnv", "worker")])
def test_crashed_worker_is_reported_not_hung(target, words):
    driver = Driver(make_factory(target), num_envs=2, seed=0, parallel=True)
    driver.reset()
    with pytest.raises(EnvError) as err:
        for _ in range(5):
            driver.step(np.zeros(2, np.int64))
    assert words in str(err.value) and "\n" not in str(err.value)
    driver.close()
