"""Dream videos: the CLI writes a real MP4 with the frames it promises; imagined states render
through the env's own renderer (CartPole, Pendulum) or, for an env without render(), as line
charts; the shield verdict path runs; the training hook writes videos without touching the
training RNG and never kills a run."""
import json
import shutil

import gymnasium as gym
import imageio_ffmpeg
import imageio.v3 as iio
import numpy as np
import pytest

import worldmodel
from worldmodel import video
from worldmodel.cli import main


class NoRenderEnv(gym.Env):
    """3 numbers drifting with the action; no render() at all; 40 steps per episode."""
    observation_space = gym.spaces.Box(-10, 10, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.x = 0, np.zeros(3, np.float32)
        return self.x.copy(), {}

    def step(self, action):
        self.t += 1
        self.x = (self.x + (0.1 if action else -0.1) * np.array([1.0, 0.5, -1.0], np.float32)).astype(np.float32)
        return self.x.copy(), float(action), False, self.t >= 40, {}


def _train(root, name, env, **overrides):
    logdir = root / name
    worldmodel.train(env=env, presets=["debug"],
                     overrides={"run.logdir": str(logdir), "run.steps": 120, **overrides})
    return logdir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_runs")
    return {"cartpole": _train(root, "cartpole", "CartPole-v1"),
            "pendulum": _train(root, "pendulum", "Pendulum-v1"),
            "norender": _train(root, "norender", NoRenderEnv)}


def _frames(path):
    """(frame count, (height, width)) decoded back from the file."""
    count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return count, iio.imread(path, index=0).shape[:2]


def test_dream_cli_writes_mp4_with_expected_frames(runs, tmp_path, capsys):
    out = tmp_path / "dream.mp4"
    # Pendulum never terminates before 200 steps: exactly context + horizon frames
    assert main(["dream", "--run", str(runs["pendulum"]), "--out", str(out),
                 "--context", "3", "--horizon", "10"]) == 0
    assert "13 frames" in capsys.readouterr().out
    count, (h, w) = _frames(out)
    assert count == 13
    assert h == video.HEADER_H + video.PANEL_H and w % 2 == 0
    assert w >= 3 * video.PANEL_H  # real | imagined | difference, square Pendulum frames


def test_state_setters_reproduce_the_real_render():
    # Writing env A's observation into env B must make B draw exactly A's picture.
    for env_id in ("CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0"):
        a, b = gym.make(env_id, render_mode="rgb_array"), gym.make(env_id, render_mode="rgb_array")
        obs, _ = a.reset(seed=1)
        for _ in range(3):
            obs, *_ = a.step(a.action_space.sample())
        b.reset(seed=2)
        if hasattr(a.unwrapped, "last_u"):
            a.unwrapped.last_u = None  # Pendulum draws the last torque; the setter clears it
        video.STATE_SETTERS[type(b.unwrapped).__name__](b.unwrapped, np.asarray(obs))
        assert np.array_equal(a.render(), b.render()), env_id
        a.close()
        b.close()


@pytest.mark.parametrize("name", ["cartpole", "pendulum"])
def test_state_rendering_path(runs, tmp_path, name):
    result = video.dream(runs[name], tmp_path / "d.mp4", context=4, horizon=8)
    assert result["method"] == "state"
    ep = result["episodes"][0]
    assert result["frames"] == ep["context"] + ep["imagined"] and ep["imagined"] >= 1
    count, (h, w) = _frames(result["path"])
    assert count == result["frames"] and (w, h) == result["size"]
    # the imagined panel is a rendered picture, not a blank: it has several colours
    frame = iio.imread(result["path"], index=result["frames"] - 1)
    third = (w - 2 * video.GAP) // 3
    imagined = frame[video.HEADER_H + 30:, third + video.GAP: 2 * third]
    assert len(np.unique(imagined.reshape(-1, 3) // 32, axis=0)) >= 3


def test_chart_fallback_for_env_without_render(runs, tmp_path):
    result = video.dream(runs["norender"], tmp_path / "c.mp4", context=3, horizon=10, env=NoRenderEnv)
    assert result["method"] == "chart"
    assert result["frames"] == 13  # 40-step episodes: the whole horizon has a real side
    count, _ = _frames(result["path"])
    assert count == 13


def test_policy_mode_with_spread_and_several_episodes(runs, tmp_path):
    plain = video.dream(runs["pendulum"], tmp_path / "a.mp4", context=2, horizon=6, mode="policy")
    spread = video.dream(runs["pendulum"], tmp_path / "b.mp4", context=2, horizon=6, mode="policy",
                         planner_spread=True, episodes=2)
    assert plain["frames"] == 8 and spread["frames"] == 16
    assert spread["size"][0] > plain["size"][0]  # the spread chart is a fourth panel
    assert _frames(spread["path"])[0] == 16


def test_shield_verdicts_on_the_overlay(tmp_path):
    run = _train(tmp_path, "shielded", "CartPole-v1", **{"shield.rules": "cartpole_track"})
    result = video.dream(run, tmp_path / "s.mp4", context=3, horizon=5)
    assert result["frames"] >= 4 and _frames(result["path"])[0] == result["frames"]
    # three header lines (step, reward, shield) leave text lower in the header than two
    frame = iio.imread(result["path"], index=0)
    assert frame[44:video.HEADER_H - 2].max() > 100


@pytest.mark.parametrize("argv,message", [
    (["dream", "--run", "/nonexistent/run"], "not a run directory"),
    (["plot", "--run", "/nonexistent/run"], "not a run directory"),
])
def test_missing_run_is_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_run_without_checkpoint_is_one_line_exit_2(runs, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(runs["cartpole"] / "config.yaml", bare / "config.yaml")
    assert main(["dream", "--run", str(bare), "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no checkpoint" in err and "\n" not in err


def test_training_hook_writes_videos_and_leaves_training_unchanged(tmp_path):
    hooked = _train(tmp_path, "hooked", "CartPole-v1", **{"run.video_every": 60})
    assert (hooked / "dream_60.mp4").exists() and (hooked / "dream_120.mp4").exists()
    assert (hooked / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _frames(hooked / "dream_120.mp4")[0] >= 2
    plain = _train(tmp_path, "plain", "CartPole-v1")
    assert not list(plain.glob("dream_*.mp4"))  # the debug preset turns videos off
    last = lambda run: json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])  # noqa: E731
    a, b = last(hooked), last(plain)
    assert {k: v for k, v in a.items() if k.startswith("loss/")} == \
           {k: v for k, v in b.items() if k.startswith("loss/")}


def test_failing_video_only_warns(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("no codec\nsecond line")
    monkeypatch.setattr(video, "training_snapshot", broken)
    run = _train(tmp_path, "broken", "CartPole-v1", **{"run.video_every": 100})
    assert (run / "checkpoints").exists()
    err = capsys.readouterr().err
    assert "warning: dream video at step 100 failed: RuntimeError: no codec" in err
    assert "second line" not in err
