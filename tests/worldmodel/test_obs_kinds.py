"""Every kind of observation and action trains end to end on the debug preset."""
import json

import gymnasium as gym
import numpy as np
import pytest

from worldmodel.cli import main


def _train(tmp_path, *args) -> dict:
    run = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--logdir", str(run), "--steps", "120", *args]) == 0
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]


def test_pixels_from_render(tmp_path):
    last = _train(tmp_path, "--env", "CartPole-v1", "--obs", "pixels", "--env.image_size", "32")
    assert last["updates"] > 0 and np.isfinite(last["loss/rec"])


def test_custom_env_from_a_test_module(tmp_path):
    last = _train(tmp_path, "--env", "tests.envs.fake_envs:GoodEnv")
    assert last["updates"] > 0


class DictEnv(gym.Env):
    """Dict obs mixing an image, a vector, a Discrete and a Text key; MultiDiscrete actions."""
    observation_space = gym.spaces.Dict({
        "image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
        "pos": gym.spaces.Box(-1, 1, (2,), np.float32),
        "dir": gym.spaces.Discrete(4),
        "mission": gym.spaces.Text(10),
    })
    action_space = gym.spaces.MultiDiscrete([3, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return {"image": self.np_random.integers(0, 255, (16, 16, 3), dtype=np.uint8),
                "pos": self.np_random.uniform(-1, 1, 2).astype(np.float32), "dir": int(self.t % 4),
                "mission": "go"}

    def step(self, action):
        self.t += 1
        return self._obs(), float(action[0] == 1), False, self.t >= 15, {}


def test_dict_observations_and_multidiscrete_actions(tmp_path):
    import worldmodel
    from envs.spaces import obs_spec
    spec = obs_spec(DictEnv.observation_space)
    assert spec.dropped == ("mission",)  # text cannot be learned from: dropped with a notice
    assert {k.name: k.kind for k in spec.keys} == {"image": "image", "pos": "vector", "dir": "vector"}
    result = worldmodel.train(env=DictEnv, presets=["debug"],
                              overrides={"run.logdir": str(tmp_path / "d"), "run.steps": 120})
    last = [json.loads(line) for line in (tmp_path / "d" / "metrics.jsonl").read_text().splitlines()][-1]
    assert result["logdir"] and last["updates"] > 0 and np.isfinite(last["loss/rec"])


def test_minigrid_dict_obs(tmp_path):
    pytest.importorskip("minigrid")
    last = _train(tmp_path, "--env", "MiniGrid-LavaGapS5-v0", "--rules", "minigrid_lava")
    assert last["shield/executed_violations"] == 0
