"""DeepMind Control through the optional `dmc` extra (envs/dmc.py).

Tests that step a real task are skipped when dm_control is not installed; the one-line
error for a missing extra is tested either way (simulated when dm_control is installed).
"""
from __future__ import annotations

import pickle
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import EnvError
from envs.builtin import DMC_IDS
from envs.dmc import DMCEnv

CARTPOLE = "worldmodel/dmc-cartpole-swingup-v0"
HINT = 'pip install -e ".[dmc]"'


@pytest.fixture
def dm_env():
    pytest.importorskip("dm_control")
    return pytest.importorskip("dm_env")


def _can_render() -> bool:
    env = DMCEnv("cartpole", "swingup", render_mode="rgb_array")
    env.reset(seed=0)
    try:
        return env.render().shape == (64, 64, 3)
    except EnvError:
        return False


def _one_line(exc: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg
    return msg


def test_missing_extra_is_one_line_naming_the_fix(monkeypatch, capsys, tmp_path) -> None:
    # Simulate an install without dm_control (the real case needs no patch).
    for name in [m for m in sys.modules if m == "dm_control" or m.startswith("dm_control.")] + ["dm_control"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(EnvError) as info:
        envs.make_factory(CARTPOLE)  # refused before any training starts
    _one_line(info, CARTPOLE, "dmc extra", "dm_control", HINT)
    with pytest.raises(EnvError) as info:
        DMCEnv("cartpole", "swingup")  # gym.make and worker processes get the same line
    _one_line(info, "dmc extra", "no module named 'dm_control'", HINT)
    with pytest.raises(EnvError) as info:
        envs.make_factory("dmc:cartpole-swingup")
    _one_line(info, "dmc extra", HINT)
    from worldmodel.cli import main
    assert main(["train", "--preset", "debug", "--env", CARTPOLE, "--logdir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert HINT in err and "\n" not in err and "Traceback" not in err


def test_gymnasium_check_env_passes_without_warnings(dm_env) -> None:
    env = gym.make(CARTPOLE, render_mode="rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=not _can_render())
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("env_id", [env_id for env_id, _ in DMC_IDS])
def test_registered_listed_and_resolvable(env_id: str, dm_env) -> None:
    assert env_id in dict(envs.list_envs())
    env = envs.make_factory(env_id)()
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert isinstance(env.action_space, gym.spaces.Box)
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert isinstance(reward, float) and 0.0 <= reward <= 2.0  # 2 frames, each in [0, 1]
    assert not terminated and not truncated


def test_observation_is_the_dict_flattened_in_key_order(dm_env) -> None:
    env = DMCEnv("reacher", "easy")
    assert env.obs_keys == ("position", "to_target", "velocity")
    assert env.obs_slices == {"position": slice(0, 2), "to_target": slice(2, 4), "velocity": slice(4, 6)}
    obs, _ = env.reset(seed=1)
    physics = env._env.physics
    np.testing.assert_allclose(obs[env.obs_slices["position"]], physics.position(), rtol=1e-6)
    np.testing.assert_allclose(obs[env.obs_slices["velocity"]], physics.velocity(), rtol=1e-6)


def _fake_steps(monkeypatch, env: DMCEnv, steps: list) -> list[int]:
    """Make the dm_env return `steps` in order; returns a list counting the calls."""
    calls: list[int] = []

    def step(action):
        calls.append(1)
        return steps[len(calls) - 1]
    monkeypatch.setattr(env._env, "step", step)
    return calls


def test_last_with_discount_0_terminates_and_discount_1_truncates(monkeypatch, dm_env) -> None:
    env = DMCEnv("cartpole", "swingup", action_repeat=2)
    obs_dict = env._env.reset().observation
    env.reset(seed=0)
    # A true end (discount 0) on the second repeated frame: terminated, rewards summed.
    calls = _fake_steps(monkeypatch, env, [dm_env.transition(0.25, obs_dict),
                                           dm_env.termination(0.5, obs_dict)])
    _, reward, terminated, truncated, _ = env.step(np.zeros(1))
    assert (terminated, truncated, reward, len(calls)) == (True, False, 0.75, 2)
    with pytest.raises(EnvError, match="after the episode ended"):
        env.step(np.zeros(1))
    # The time limit (LAST with discount 1) on the first frame: truncated, no second frame.
    env.reset(seed=0)
    calls = _fake_steps(monkeypatch, env, [dm_env.truncation(0.5, obs_dict), dm_env.transition(1.0, obs_dict)])
    _, reward, terminated, truncated, _ = env.step(np.zeros(1))
    assert (terminated, truncated, reward, len(calls)) == (False, True, 0.5, 1)
    # Mid-episode: neither.
    env.reset(seed=0)
    _fake_steps(monkeypatch, env, [dm_env.transition(0.1, obs_dict)] * 2)
    assert env.step(np.zeros(1))[2:4] == (False, False)


def test_time_limit_truncates_after_1000_frames(dm_env) -> None:
    for repeat, steps in ((2, 500), (3, 334)):  # 334 = ceil(1000 / 3): the last step has 1 frame
        env = DMCEnv("cartpole", "swingup", action_repeat=repeat)
        env.reset(seed=0)
        n, terminated, truncated = 0, False, False
        while not (terminated or truncated):
            _, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
            n += 1
        assert (n, terminated, truncated) == (steps, False, True)


def test_truncation_reaches_the_driver_as_last_not_terminal(dm_env) -> None:
    driver = envs.Driver(envs.make_factory(CARTPOLE), num_envs=1, seed=0)
    driver.reset()
    last = []
    for t in range(1, 502):
        step = driver.step(np.zeros((1, 1), np.float32))
        if step.is_last[0]:
            last.append((t, bool(step.is_terminal[0])))
    driver.close()
    assert last == [(500, False)]


def test_action_repeat_sums_the_rewards_of_its_frames(dm_env) -> None:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (20, 1)).astype(np.float32)
    once, twice = DMCEnv("cartpole", "swingup", action_repeat=1), DMCEnv("cartpole", "swingup", action_repeat=2)
    np.testing.assert_array_equal(once.reset(seed=5)[0], twice.reset(seed=5)[0])
    for action in actions:
        r1 = once.step(action)[1]
        obs1, r2, *_ = once.step(action)
        obs2, reward, *_ = twice.step(action)
        assert reward == pytest.approx(r1 + r2, abs=1e-12)
        np.testing.assert_array_equal(obs2, obs1)


def test_reset_with_a_seed_is_deterministic(dm_env) -> None:
    actions = np.random.default_rng(1).uniform(-1, 1, (30, 1)).astype(np.float32)

    def rollout(env: DMCEnv, seed: int) -> np.ndarray:
        obs = [env.reset(seed=seed)[0]]
        obs += [env.step(a)[0] for a in actions]
        return np.stack(obs)

    env = DMCEnv("cartpole", "swingup")
    first = rollout(env, 123)
    rollout(env, 7)  # a different episode in between
    np.testing.assert_array_equal(rollout(env, 123), first)
    np.testing.assert_array_equal(rollout(DMCEnv("cartpole", "swingup"), 123), first)  # a fresh instance
    assert not np.array_equal(rollout(env, 124)[0], first[0])
    # Unseeded resets after a seeded one continue its stream: reproducible, but new episodes.
    env.reset(seed=3)
    a, b = env.reset()[0], env.reset()[0]
    env.reset(seed=3)
    np.testing.assert_array_equal(env.reset()[0], a)
    assert not np.array_equal(a, b)


def test_generic_dmc_target(dm_env) -> None:
    factory = envs.make_factory("dmc:ball_in_cup-catch", {"action_repeat": 4})
    env = pickle.loads(pickle.dumps(factory))()  # AsyncVectorEnv ships factories to workers
    assert (env.unwrapped.domain, env.unwrapped.task, env.unwrapped.action_repeat) == ("ball_in_cup", "catch", 4)
    assert env.observation_space.contains(env.reset(seed=0)[0])
    with pytest.raises(EnvError) as info:
        envs.make_factory("dmc:cartpole-swingupp")
    _one_line(info, "unknown DMC task 'cartpole-swingupp'", "did you mean 'dmc:cartpole-swingup'?")


def test_render_gives_a_frame_or_one_line_error(dm_env) -> None:
    env = DMCEnv("cartpole", "swingup", render_mode="rgb_array", height=48, width=80)
    env.reset(seed=0)
    assert DMCEnv("cartpole", "swingup").render() is None  # no render_mode: no frame
    try:
        frame = env.render()
    except EnvError as exc:  # no OpenGL backend here: a clear line, and state training still works
        assert "\n" not in str(exc) and "MUJOCO_GL" in str(exc)
        with pytest.raises(EnvError):
            env.render()  # asked again: the same line, never a second GL attempt
        return
    assert frame.shape == (48, 80, 3) and frame.dtype == np.uint8 and frame.std() > 0
