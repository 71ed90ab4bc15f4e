"""WorldModel heads at initialisation: what each head sends back into the features."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.spaces import action_spec, obs_spec
from worldmodel.agent import build_model
from worldmodel.config import ConfigError, load_config


def _model(**overrides):
    torch.manual_seed(0)
    cfg = load_config(["debug"], {"env.id": "CartPole-v1", **overrides})
    obs = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    return build_model(cfg, obs_spec(obs), action_spec(gym.spaces.Discrete(2)))


def _batch(B: int = 3, T: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    terminal = torch.zeros(B, T, dtype=torch.bool)
    terminal[:, -1] = True
    return {"obs": torch.randn(B, T, 4, generator=g), "action": torch.eye(2)[torch.randint(0, 2, (B, T), generator=g)],
            "reward": torch.randn(B, T, generator=g), "is_first": torch.arange(T).expand(B, T) == 0,
            "is_terminal": terminal, "mask": torch.ones(B, T)}


def _cont_grad(model) -> float:
    """Norm of the continue loss's gradient on the dynamics' parameters."""
    model.zero_grad(set_to_none=True)
    _, losses, _ = model.loss(_batch())
    losses["cont"].backward()
    return sum(float(p.grad.norm()) for p in model.rssm.parameters() if p.grad is not None)


def test_continue_head_starts_at_one_half_and_leaves_the_features_alone():
    model = _model()  # default model.cont_outscale = 0
    feat = torch.randn(7, model.feat_dim)
    assert torch.equal(model.cont(feat), torch.full((7,), 0.5))  # sigmoid(0): zero output layer
    assert torch.allclose(model.reward(feat), torch.zeros(7), atol=1e-6)  # the reward head, likewise
    # the loss is log 2 per step, and none of its gradient reaches the dynamics yet
    _, losses, _ = model.loss(_batch())
    assert float(losses["cont"]) == pytest.approx(np.log(2.0), abs=1e-6)
    assert _cont_grad(model) == 0.0


def test_cont_outscale_one_is_dreamerv3s_random_start():
    model = _model(**{"model.cont_outscale": "1.0"})
    cont = model.cont(torch.randn(7, model.feat_dim))
    assert float(cont.std()) > 1e-3
    assert _cont_grad(model) > 0.0


def test_reward_outscale_one_starts_the_reward_head_random():
    model = _model(**{"model.reward_outscale": "1.0"})
    reward = model.reward(torch.randn(7, model.feat_dim))
    assert float(reward.std()) > 1e-3  # no longer the same (zero) prediction everywhere
    assert torch.allclose(_model().reward(torch.randn(7, model.feat_dim)), torch.zeros(7), atol=1e-6)


def test_negative_reward_outscale_is_refused():
    with pytest.raises(ConfigError, match="model.reward_outscale"):
        load_config([], {"model.reward_outscale": "-0.5"})


def test_negative_cont_outscale_is_refused():
    with pytest.raises(ConfigError, match="model.cont_outscale"):
        load_config([], {"model.cont_outscale": "-1"})
