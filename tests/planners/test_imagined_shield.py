"""The shield in imagination: what it decodes, and that skipping work never changes a verdict."""
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
    """feat (..., 1) is the predicted x itself; counts the states it decodes."""

    def __init__(self) -> None:
        self.decoded = 0

    def decode(self, feat):
        self.decoded += feat.shape[:-1].numel()
        return {"obs": feat}

    def cost(self, feat):
        return torch.zeros(feat.shape[:-1])


def test_the_last_state_is_decoded_only_when_a_rule_looks_ahead():
    spec = action_spec(gym.spaces.Box(-1.0, 1.0, (1,), np.float32))
    torch.manual_seed(0)
    feats = torch.randn(64, 6, 1)        # N = 64 candidates, H = 5
    actions = torch.rand(64, 5, 1) * 2 - 1
    for text, reads_last in ((NOW, False), (AHEAD, True)):
        shield = ImaginationShield(RuleSet.from_string(text), spec)
        assert shield.reads_last == reads_last
        model = Decoder()
        check = shield.check(model, feats, actions)
        assert model.decoded == 64 * (6 if reads_last else 5)
        shield.reads_last = True  # decode everything: the verdicts must not change
        full = shield.check(Decoder(), feats, actions)
        assert torch.equal(check.violations, full.violations) and torch.equal(check.first_step, full.first_step)
        assert torch.allclose(check.robustness, full.robustness)
        assert 0 < int((check.violations > 0).sum()) < 64  # the case is not trivial
