import math

import torch

from worldmodel.dists import (BoundedNormal, MultiCategorical, TwoHot, categorical_kl, onehot_sample,
                              symexp, symlog, unimix_logits)


def test_symlog_hand_values_and_inverse():
    x = torch.tensor([-100.0, -1.0, 0.0, 0.5, 1000.0])
    expected = torch.tensor([-math.log(101), -math.log(2), 0.0, math.log(1.5), math.log(1001)])
    assert torch.allclose(symlog(x), expected)
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-5)


def test_twohot_hand_computed_weights():
    th = TwoHot(bins=3, low=-1.0, high=1.0)  # bins at -1, 0, 1 in symlog space
    y = symexp(torch.tensor([0.25]))  # symlog(y) = 0.25: 3/4 on bin 0, 1/4 on bin 1
    assert torch.allclose(th.encode(y), torch.tensor([[0.0, 0.75, 0.25]]), atol=1e-6)
    # beyond the range: all weight on the edge bin
    assert torch.allclose(th.encode(torch.tensor([1e6])), torch.tensor([[0.0, 0.0, 1.0]]))


def test_twohot_round_trip_and_loss_minimum():
    th = TwoHot(255)
    y = torch.tensor([-300.0, -1.5, 0.0, 0.3, 7.0, 499.0])
    logits = torch.log(th.encode(y) + 1e-12)
    assert torch.allclose(th.mean(logits), y, rtol=1e-4, atol=1e-4)
    # the loss is lower for the right target than for a wrong one
    assert (th.loss(logits, y) < th.loss(logits, 10.0 - y)).all()


def test_unimix_floor():
    logits = torch.tensor([[100.0, -100.0, -100.0, -100.0]])
    probs = unimix_logits(logits, 0.01).exp()
    assert torch.allclose(probs.sum(-1), torch.ones(1))
    assert probs.min() >= 0.01 / 4 - 1e-7


def test_straight_through_sample_is_onehot_with_gradient():
    logits = torch.randn(64, 8, 5, requires_grad=True)
    sample, _ = onehot_sample(torch.log_softmax(logits, -1))
    assert torch.allclose(sample.detach().sum(-1), torch.ones(64, 8))
    assert set(sample.detach().round().unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(sample.detach(), sample.detach().round(), atol=1e-6)
    (sample * torch.randn_like(sample)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_categorical_kl_hand_value():
    p = torch.log(torch.tensor([[[0.5, 0.5]]]))
    q = torch.log(torch.tensor([[[0.25, 0.75]]]))
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert torch.allclose(categorical_kl(p, q), torch.tensor([expected]), atol=1e-6)


def test_masked_actor_never_nan_and_respects_mask():
    logits = torch.randn(4, 3)
    mask = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1]], dtype=torch.bool)
    dist = MultiCategorical(logits, (3,), 0.01, mask)
    for _ in range(20):
        a = dist.sample()
        assert not torch.isnan(a).any()
        assert a[0, 0] == 1 and a[1, 0] == 0
    assert torch.isfinite(dist.entropy()).all() and torch.isfinite(dist.log_prob(dist.sample())).all()


def test_discrete_actor_rsample_is_onehot_with_the_probabilities_gradient():
    # actor.grad: dynamics on a discrete env (it had no rsample: an AttributeError at the first update)
    logits = torch.randn(6, 5, requires_grad=True)
    dist = MultiCategorical(logits, (2, 3), 0.01)
    action = dist.rsample()
    assert torch.allclose(action.detach().sum(-1), torch.full((6,), 2.0))  # one-hot per head
    assert torch.allclose(action.detach(), action.detach().round(), atol=1e-6)
    weight = torch.randn(5)
    (action * weight).sum().backward()
    # straight-through: the gradient is that of sum(probs * weight), head by head
    ref = logits.detach().clone().requires_grad_(True)
    probs = torch.cat([lp.exp() for lp in MultiCategorical(ref, (2, 3), 0.01).logps], -1)
    (probs * weight).sum().backward()
    assert torch.allclose(logits.grad, ref.grad, atol=1e-6)


def test_bounded_normal_in_bounds():
    dist = BoundedNormal(torch.randn(100, 4) * 5, 0.1, 1.0)
    assert ((dist.std >= 0.1 - 1e-6) & (dist.std <= 1.0 + 1e-6)).all()
    assert dist.rsample().abs().max() <= 1.0
