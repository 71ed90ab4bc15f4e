"""The shield in imagination: its verdicts on decoded imagined states, counted by hand."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from envs.spaces import action_spec
from planners.imagined_shield import ImaginationShield
from symbolic import RuleSet

NOW = """
signals:
  x = obs[0] in [-10, 10]
actions:
  u = action[0] in [-1, 1]
rule low (hard) "x stays above the action": x >= u - 2
"""
AHEAD = NOW + 'rule ahead (hard) "the next x stays above -2.5": next(x >= -2.5)\n'


class Decoder:
    """feat (..., 1) is the predicted x itself."""

    def decode(self, feat):
        return {"obs": feat}

    def cost(self, feat):
        return torch.zeros(feat.shape[:-1])


def test_imagined_violations_match_a_count_by_hand():
    spec = action_spec(gym.spaces.Box(-1.0, 1.0, (1,), np.float32))
    torch.manual_seed(0)
    feats = torch.randn(64, 6, 1) * 2     # N = 64 candidates, H = 5: x_0 .. x_5
    actions = torch.rand(64, 5, 1) * 2 - 1
    x, u = feats[..., 0], actions[..., 0]
    low = x[:, :5] < u - 2                # rule `low` broken at step t (reads x_t, u_t)
    ahead = x[:, 1:] < -2.5               # rule `ahead` at step t reads x_{t+1}, the last step x_5
    for text in (NOW, AHEAD):
        check = ImaginationShield(RuleSet.from_string(text), spec).check(Decoder(), feats, actions)
        expect = low.sum(1) + (ahead.sum(1) if text == AHEAD else 0)
        assert torch.equal(check.violations, expect.float())
        first = low[:, 0] | (ahead[:, 0] if text == AHEAD else False)
        assert torch.equal(check.first_step, first)
        assert 0 < int((check.violations > 0).sum()) < 64  # the case is not trivial
