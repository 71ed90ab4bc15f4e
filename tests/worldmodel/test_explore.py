"""Exploration by disagreement (behavior.explore): the ensemble, the model's `novelty` verb,
and the bonus in the actor-critic's rewards."""
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.spaces import action_spec, obs_spec
from planners.actor_critic import ActorCritic
from tests.worldmodel.cli_helpers import assert_one_line_error, run_cli
from worldmodel.agent import build_model, build_planner
from worldmodel.config import ConfigError, load_config
from worldmodel.explore import Ensemble


def test_heads_agree_where_they_were_trained_and_disagree_elsewhere():
    torch.manual_seed(0)
    ens = Ensemble(4, 3, heads=5, units=32, layers=2)
    target_w = torch.randn(4, 3)
    seen = torch.randn(256, 4) * 0.5  # the "visited" region, around the origin
    unseen = torch.randn(256, 4) * 0.5 + 4.0
    before = float(ens.disagreement(seen).mean())
    opt = torch.optim.Adam(ens.parameters(), lr=3e-3)
    for _ in range(300):
        opt.zero_grad()
        ens.loss(seen, torch.tanh(seen @ target_w)).mean().backward()
        opt.step()
    after_seen = float(ens.disagreement(seen).mean())
    after_unseen = float(ens.disagreement(unseen).mean())
    assert before > 0.1  # heads start different (independent initialisations)
    assert after_seen < 0.25 * before  # training makes them agree on the data...
    assert after_unseen > 3.0 * after_seen  # ...but not away from it


def test_ensemble_evaluates_every_head_like_its_own_mlp():
    torch.manual_seed(1)
    ens = Ensemble(3, 2, heads=4, units=8, layers=1)
    x = torch.randn(5, 7, 3)
    pred = ens(x)  # (K, 5, 7, 2)
    assert pred.shape == (4, 5, 7, 2)
    for k in range(4):
        h = x @ ens.weights[0][k] + ens.biases[0][k]
        h = torch.nn.functional.silu(torch.nn.functional.layer_norm(h, (8,), eps=1e-4))
        assert torch.allclose(pred[k], h @ ens.weights[1][k] + ens.biases[1][k], atol=1e-5)
    assert torch.allclose(ens.disagreement(x), pred.std(0).mean(-1))


def _model(explore: float):
    torch.manual_seed(0)
    cfg = load_config(["debug"], {"env.id": "CartPole-v1", "behavior.explore": explore})
    obs = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    act = action_spec(gym.spaces.Box(-1.0, 1.0, (1,), np.float32))
    return cfg, build_model(cfg, obs_spec(obs), act), act


def _batch(B: int = 3, T: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"obs": torch.randn(B, T, 4, generator=g), "action": torch.rand(B, T, 1, generator=g) * 2 - 1,
            "reward": torch.zeros(B, T), "is_first": torch.arange(T).expand(B, T) == 0,
            "is_terminal": torch.zeros(B, T, dtype=torch.bool), "is_last": torch.zeros(B, T, dtype=torch.bool),
            "mask": torch.ones(B, T)}


def test_model_without_explore_has_no_ensemble_and_zero_novelty():
    _, model, _ = _model(0.0)
    assert model.explore is None
    feat = torch.randn(2, 3, model.feat_dim)
    assert torch.equal(model.novelty(feat), torch.zeros(2, 3))
    _, losses, _ = model.loss(_batch())
    assert "explore" not in losses


def test_explore_loss_trains_only_the_ensemble():
    _, model, _ = _model(1.0)
    assert model.explore is not None and model.explore.heads == 5
    _, losses, _ = model.loss(_batch())
    losses["explore"].backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("explore."))
    # detached inputs and targets: the bonus never shapes the representation
    assert all(g is None for n, g in grads.items() if not n.startswith("explore."))
    feat = torch.randn(7, model.feat_dim)
    assert model.novelty(feat).shape == (7,) and bool((model.novelty(feat) > 0).all())


def test_imagined_reward_carries_the_weighted_bonus():
    """The reward head starts at zero (its output layer is zeros), so at initialisation the
    imagined reward is exactly explore x bonus; without explore it is zero."""
    for weight in (0.0, 2.5):
        cfg, model, act = _model(weight)
        planner = build_planner(cfg, model.feat_dim, act)
        assert isinstance(planner, ActorCritic) and planner.explore == weight
        _, _, post = model.loss(_batch())
        start = {k: v.detach().flatten(0, 1) for k, v in post.items()}
        n = len(start["deter"])
        out = planner.update(model, start, torch.ones(n), torch.ones(n))
        if weight:
            assert out["imag_bonus"] > 0
            assert out["imag_reward"] == pytest.approx(weight * out["imag_bonus"], rel=1e-4)
        else:
            assert "imag_bonus" not in out and out["imag_reward"] == pytest.approx(0.0, abs=1e-6)


def test_replayed_returns_include_the_bonus(monkeypatch):
    cfg, model, act = _model(1.0)
    planner = build_planner(cfg, model.feat_dim, act)
    seen = []
    original = planner.twohot.mixture_loss

    def capture(logits, targets):
        seen.append(targets[0][0].clone())
        return original(logits, targets)

    monkeypatch.setattr(planner.twohot, "mixture_loss", capture)
    feat = torch.randn(1, 4, model.feat_dim)
    replay = {"feat": feat, "reward": torch.zeros(1, 4), "cont": torch.ones(1, 4),
              "last": torch.zeros(1, 4, dtype=torch.bool), "mask": torch.ones(1, 4)}
    planner._replay_loss(replay)
    plain = seen[-1]
    replay["novelty"] = torch.full((1, 4), 0.5)
    planner._replay_loss(replay)
    # every lambda-return gains at least the next step's bonus (0.5), the value being ~0
    assert bool((seen[-1] - plain >= 0.5 - 1e-4).all())


def test_config_rejects_a_single_head_and_a_negative_weight():
    with pytest.raises(ConfigError, match="explore_heads"):
        load_config(["debug"], {"behavior.explore": 1.0, "behavior.explore_heads": 1})
    with pytest.raises(ConfigError, match="behavior.explore"):
        load_config(["debug"], {"behavior.explore": -0.1})
    code, _, err = run_cli(["train", "--preset", "debug", "--behavior.explore", "1", "--behavior.explore_heads", "1"])
    assert_one_line_error(code, err, "behavior.explore_heads")


def test_train_from_the_cli_with_exploration(tmp_path):
    code, _, err = run_cli(["train", "--preset", "debug", "--env", "Pendulum-v1", "--steps", "120",
                            "--behavior.explore", "1.0", "--run.logdir", str(tmp_path)])
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if "imag_bonus" in r]
    assert trained and all(r["imag_bonus"] > 0 and np.isfinite(r["loss/explore"]) for r in trained)
