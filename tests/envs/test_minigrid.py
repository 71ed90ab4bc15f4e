"""MiniGrid through the optional extra (skipped when minigrid is not installed)."""
from __future__ import annotations

import numpy as np
import pytest

import envs

pytest.importorskip("minigrid")


def test_minigrid_dict_obs_through_the_driver() -> None:
    factory = envs.make_factory("MiniGrid-LavaGapS5-v0")  # minigrid imported automatically
    driver = envs.Driver(factory, num_envs=2, seed=0)
    spec = driver.obs_spec
    assert spec.dropped == ("mission",) and "'mission'" in (spec.notice or "")
    keys = {k.name: (k.kind, k.shape) for k in spec.keys}
    assert keys == {"direction": ("vector", (4,)), "image": ("vector", (147,))}
    step = driver.reset()
    assert step.obs["direction"].sum(-1).tolist() == [1.0, 1.0]  # one-hot
    assert step.obs["image"].shape == (2, 147) and step.obs["image"].max() <= 10
    assert "mission" in step.raw_obs  # the shield can still read it
    for _ in range(20):
        step = driver.step(np.random.default_rng(0).integers(0, 3, 2))
    driver.close()


def test_minigrid_pixels() -> None:
    env = envs.make_factory("MiniGrid-LavaGapS5-v0", obs="pixels")()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8


def test_minigrid_check_env_report() -> None:
    text, code = envs.check_env_report("MiniGrid-LavaGapS5-v0", steps=100)
    assert code == 0, text
