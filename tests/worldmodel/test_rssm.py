import torch

from worldmodel.rssm import RSSM


def make(deter=16, stoch=4, classes=3):
    torch.manual_seed(0)
    return RSSM(action_dim=2, embed_dim=5, deter=deter, stoch=stoch, classes=classes, hidden=8)


def test_observe_and_imagine_shapes():
    rssm = make()
    B, T = 3, 7
    post, prior = rssm.observe(torch.randn(B, T, 5), torch.randn(B, T, 2), torch.zeros(B, T, dtype=torch.bool))
    assert post["deter"].shape == (B, T, 16) and post["stoch"].shape == (B, T, 12)
    assert post["logits"].shape == prior["logits"].shape == (B, T, 4, 3)
    start = {k: v[:, -1] for k, v in post.items()}
    feats, actions, last = rssm.imagine(start, lambda f: torch.zeros(f.shape[0], 2), 4)
    assert feats.shape == (B, 5, 16 + 12) and actions.shape == (B, 4, 2)
    feats2, _, _ = rssm.imagine(start, torch.zeros(B, 4, 2), 4)
    assert feats2.shape == feats.shape


def test_state_resets_at_is_first():
    rssm = make()
    B, T = 2, 6
    embed, action = torch.randn(B, T, 5), torch.randn(B, T, 2)
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    first[0, 3] = True  # env 0 starts a new episode at t=3
    post, _ = rssm.observe(embed, action, first)
    # after a reset the deterministic state depends on nothing before it: it equals the
    # state of a fresh sequence that starts at t=3
    fresh, _ = rssm.observe(embed[:, 3:], action[:, 3:], first[:, 3:] | torch.tensor([[True, False, False]]))
    assert torch.allclose(post["deter"][0, 3], fresh["deter"][0, 0], atol=1e-6)
    # ...while env 1, which did not reset, carries history
    assert not torch.allclose(post["deter"][1, 3], fresh["deter"][1, 0], atol=1e-3)


def test_kl_balancing_and_free_bits():
    post = torch.randn(5, 4, 3, requires_grad=True)
    prior = torch.randn(5, 4, 3, requires_grad=True)
    dyn, rep, raw = RSSM.kl_loss(torch.log_softmax(post, -1), torch.log_softmax(prior, -1), free_nats=0.0)
    assert torch.allclose(dyn, rep) and torch.allclose(dyn, raw)
    # dyn trains only the prior, rep only the posterior
    g_post = torch.autograd.grad(dyn.sum(), post, retain_graph=True, allow_unused=True)[0]
    assert g_post is None or g_post.abs().sum() == 0
    g_prior = torch.autograd.grad(rep.sum(), prior, allow_unused=True)[0]
    assert g_prior is None or g_prior.abs().sum() == 0
    # free bits: below the threshold the loss is the constant and has no gradient
    same = torch.log_softmax(torch.randn(2, 4, 3), -1).requires_grad_(True)
    dyn, rep, _ = RSSM.kl_loss(same, same, free_nats=1.0)
    assert torch.allclose(dyn, torch.ones(2)) and torch.allclose(rep, torch.ones(2))
    assert torch.autograd.grad(rep.sum(), same, allow_unused=True)[0].abs().sum() == 0
