"""The shield wired into training and evaluation, on the built-in constrained task."""
import json

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers worldmodel/ envs)
from worldmodel.cli import main


def test_corridor_layout_satisfies_the_declared_invariant():
    # safe_corridor.rules assumes at most two hazard neighbours; check every reachable cell
    env = gym.make("worldmodel/SafeCorridor-v0").unwrapped
    env.reset(seed=0)
    hazard = env.hazard if hasattr(env, "hazard") else None
    assert hazard is not None
    rows, cols = hazard.shape
    for y in range(rows):
        for x in range(cols):
            if hazard[y, x]:
                continue
            around = [hazard[y + dy, x + dx] for dx, dy in ((0, -1), (1, 0), (0, 1), (-1, 0))
                      if 0 <= y + dy < rows and 0 <= x + dx < cols]
            assert sum(around) <= 2


def test_shielded_training_never_executes_a_violation(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--env", "worldmodel/SafeCorridor-v0",
                 "--rules", "safe_corridor", "--logdir", str(run), "--steps", "400"]) == 0
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["shield/vetoes"] > 0, "a random early policy should have proposed hazards"
    assert last["shield/executed_violations"] == 0
    assert "loss/cost" in last  # the cost head learns from the shield's labels
    episodes = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    # a hazard ends an episode with reward -1; with the shield on that never happens
    assert all(e["return"] > -1.0 for e in episodes)
    assert main(["eval", "--run", str(run), "--episodes", "3"]) == 0
    assert "0 executed violations" in capsys.readouterr().out
    assert main(["eval", "--run", str(run), "--episodes", "3", "--shield", "off"]) == 0
