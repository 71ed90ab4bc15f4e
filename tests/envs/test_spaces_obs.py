"""Dict observations: images vs small id grids, dropped keys and their notice."""
from __future__ import annotations

import gymnasium as gym
import numpy as np

import envs


def test_small_uint8_grid_is_a_vector_and_large_is_an_image() -> None:
    grid = envs.obs_spec(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8))
    assert grid.keys[0].kind == "vector" and grid.keys[0].shape == (147,)
    image = envs.obs_spec(gym.spaces.Box(0, 255, (16, 16, 3), np.uint8))
    assert image.keys[0].kind == "image"


def test_dict_with_text_key_drops_it_with_a_one_line_notice(capsys) -> None:
    factory = envs.make_factory("tests.envs.fake_envs:DictTextEnv")
    driver = envs.Driver(factory, num_envs=2)
    spec = driver.obs_spec
    assert spec.dropped == ("mission",)
    assert {k.name: k.kind for k in spec.keys} == {"pos": "vector", "camera": "image", "grid": "vector"}
    assert spec.notice is not None and "\n" not in spec.notice and "'mission' (Text)" in spec.notice
    step = driver.reset()
    assert set(step.obs) == {"pos", "camera", "grid"}
    assert step.obs["camera"].shape == (2, 64, 64, 3)  # resized to image_size
    assert step.obs["grid"].shape == (2, 75) and step.obs["grid"].dtype == np.float32
    driver.step(np.zeros(2, np.int64))
    driver.close()
    envs.Driver(factory).close()  # a second driver does not repeat the notice
    err = capsys.readouterr().err
    assert err.count("'mission'") <= 1  # printed once per process (maybe by an earlier test)


def test_no_notice_without_dropped_keys() -> None:
    assert envs.obs_spec(gym.spaces.Discrete(3)).notice is None


def test_multidiscrete_obs_with_start_is_one_hot() -> None:
    from envs.spaces import encode_obs
    space = gym.spaces.MultiDiscrete([3, 2], start=[1, -1])
    spec = envs.obs_spec(space)
    out = encode_obs(spec, space, np.array([[3, 0]]))["obs"]
    np.testing.assert_array_equal(out, [[0, 0, 1, 0, 1]])
