"""Rendered frames as observations, and the numpy resize behind them."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import EnvError
from envs.pixels import ResizeImages, resize_image


def test_cartpole_pixels_are_64x64_uint8() -> None:
    env = envs.make_factory("CartPole-v1", obs="pixels")()
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    for _ in range(5):  # the first steps move the cart less than one 64px pixel
        obs2, *_ = env.step(0)
    assert obs2.shape == (64, 64, 3) and not np.array_equal(obs, obs2)
    assert obs.min() == 0 and obs.max() == 255  # the cart and pole are there, not a blank frame
    spec = envs.obs_spec(env.observation_space)
    assert spec.image_keys[0].shape == (64, 64, 3)


def test_pixels_image_size() -> None:
    env = envs.make_factory("worldmodel/SafeCorridor-v0", obs="pixels", image_size=32)()
    assert env.reset(seed=0)[0].shape == (32, 32, 3)


def test_pixels_without_rgb_render_is_one_line() -> None:
    class NoRender(gym.Env):
        metadata = {"render_modes": []}
        observation_space = gym.spaces.Discrete(2)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return 0, {}

        def step(self, action):
            return 0, 0.0, True, False, {}

    with pytest.raises(EnvError) as info:
        envs.make_factory(NoRender, obs="pixels")()
    msg = str(info.value)
    assert "\n" not in msg and "--obs pixels needs NoRender to render rgb_array frames" in msg


def test_resize_area_downsample_matches_block_mean() -> None:
    img = np.random.default_rng(0).integers(0, 256, (128, 96, 3), dtype=np.uint8)
    out = resize_image(img, 32)
    ref = img.reshape(32, 4, 32, 3, 3).astype(np.float64).mean((1, 3))
    assert out.shape == (32, 32, 3) and np.abs(out - ref).max() <= 0.5 + 1e-6


def test_resize_keeps_constants_and_handles_grayscale_and_floats() -> None:
    assert np.all(resize_image(np.full((10, 30, 3), 77, np.uint8), 64) == 77)
    assert resize_image(np.zeros((20, 20), np.uint8), 8).shape == (8, 8, 1)
    assert np.all(resize_image(np.ones((20, 20, 3), np.float32), 8) == 255)


def test_resize_images_wrapper_only_touches_large_images() -> None:
    from tests.envs.fake_envs import DictTextEnv
    env = ResizeImages(DictTextEnv(), 64)
    assert env.observation_space["camera"].shape == (64, 64, 3)
    assert env.observation_space["grid"].shape == (5, 5, 3)
    obs, _ = env.reset(seed=0)
    assert obs["camera"].shape == (64, 64, 3) and obs["grid"].shape == (5, 5, 3)
    assert env.observation_space.contains(obs) or obs["mission"] == "reach the goal"
