"""Which deterministic path the world model uses: `model.dynamics` gru | ssm | hybrid.

Every backbone has the RSSM's verbs (initial, feat, img_step, obs_step, observe, imagine,
kl_loss, feat_dim) and a flat-dict State with a leading batch dim, so the world model,
planners, shield and videos work with any of them unchanged.
"""
from __future__ import annotations

from torch import nn

BACKBONES = ("gru", "ssm", "hybrid")


def make_dynamics(kind: str, action_dim: int, embed_dim: int, *, deter: int, stoch: int, classes: int,
                  hidden: int, unimix: float, ssm_layers: int = 2, ssm_state: int = 16,
                  window: int = 16) -> nn.Module:
    """gru: the RSSM (GRU). ssm: diagonal selective SSM layers, one scan per layer over a sequence.
    hybrid: SSM layers interleaved with attention over the last `window` steps."""
    common = dict(deter=deter, stoch=stoch, classes=classes, hidden=hidden, unimix=unimix)
    if kind == "gru":
        from worldmodel.rssm import RSSM
        return RSSM(action_dim, embed_dim, **common)
    if kind == "ssm":
        from worldmodel.ssm import SSMDynamics
        return SSMDynamics(action_dim, embed_dim, layers=ssm_layers, ssm_state=ssm_state, **common)
    if kind == "hybrid":
        from worldmodel.hybrid import HybridDynamics
        return HybridDynamics(action_dim, embed_dim, layers=ssm_layers, ssm_state=ssm_state,
                              window=window, **common)
    raise ValueError(f"unknown dynamics {kind!r}; choose one of {', '.join(BACKBONES)}")
