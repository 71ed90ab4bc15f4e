"""CLI smoke tests on the debug preset: train -> checkpoint -> resume -> eval, and the
one-line errors with exit code 2."""
import json

import pytest

from worldmodel.cli import main


def test_train_checkpoint_resume_eval(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--logdir", str(run), "--steps", "200"]) == 0
    assert (run / "config.yaml").exists()
    ckpts = sorted((run / "checkpoints").glob("step_*.pt"))
    assert ckpts and ckpts[-1].name == "step_000000200.pt"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 200 and metrics[-1]["updates"] > 0
    assert all(k in metrics[-1] for k in ("loss/rec", "loss/dyn", "loss/reward", "actor_loss"))
    # same command with more steps resumes where it stopped
    assert main(["train", "--preset", "debug", "--logdir", str(run), "--steps", "260"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "step_000000200.pt" in out
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 260
    assert main(["eval", "--run", str(run), "--episodes", "2"]) == 0
    assert "return over 2 episodes" in capsys.readouterr().out


def test_python_api_load_and_act(tmp_path):
    import gymnasium as gym
    import worldmodel
    result = worldmodel.train(env="Pendulum-v1", presets=["debug"],
                              overrides={"run.logdir": str(tmp_path / "p"), "run.steps": 120})
    agent = worldmodel.load(result["logdir"])
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    state = None
    for _ in range(5):
        action, state = agent.act(obs, state)
        assert env.action_space.contains(action)
        obs, *_ = env.step(action)


@pytest.mark.parametrize("argv,message", [
    (["train", "--preset", "debug", "--model.detr", "3"], "did you mean 'model.deter'"),
    (["train", "--preset", "nope"], "unknown preset 'nope'"),
    (["train", "--preset", "debug", "--env", "CartPol-v1"], "CartPole-v1"),
    (["train", "--preset", "debug", "--model.deter", "big"], "must be an integer"),
    (["eval", "--run", "/nonexistent/run"], "not a run directory"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    code = main(argv + (["--logdir", str(tmp_path / "r")] if argv[0] == "train" else []))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "\n" not in err and "Traceback" not in err


def test_resume_refuses_incompatible_change(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--preset", "debug", "--logdir", run, "--steps", "100"]) == 0
    assert main(["train", "--preset", "debug", "--logdir", run, "--model.deter", "64"]) == 2
    assert "'model.deter' changed from 32 to 64" in capsys.readouterr().err


def test_help_lists_every_key(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for key in ("--model.deter", "--train.ratio", "--replay.capacity", "--env.id", "--run.device"):
        assert key in out
