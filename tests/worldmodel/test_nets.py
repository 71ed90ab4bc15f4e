"""LatentLinear: the heads' first layer, which takes the sampled latent classes instead of
multiplying by the one-hot. It must be nn.Linear exactly, forward and backward."""
import pytest
import torch

from worldmodel.nets import MLP, LatentLinear
from worldmodel.rssm import RSSM
from worldmodel.ssm import SSMDynamics

D, G, C = 5, 4, 3  # dense width, latent groups, classes per group


def features(rows: int, seed: int = 0, absent_rows: int = 2):
    """x (rows, D + G*C) = [dense | one-hot per group], its flat index (rows, G); the first
    `absent_rows` have a zero latent (an initial state), index G*C."""
    gen = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, C, (rows, G), generator=gen)
    onehot = torch.nn.functional.one_hot(cls, C).float()
    onehot[:absent_rows] = 0.0
    index = cls + torch.arange(G) * C
    index[:absent_rows] = G * C
    return torch.cat([torch.randn(rows, D, generator=gen), onehot.flatten(1)], 1), index


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dense", [D, 0])
def test_latent_linear_equals_linear_forward_and_backward(bias, dense):
    x, index = features(9)
    if dense == 0:
        x = x[:, D:]
    layer = LatentLinear(dense + G * C, 7, bias, dense=dense, groups=G, classes=C)
    x = x.reshape(3, 3, -1).requires_grad_(True)  # leading batch dims are kept
    index = index.reshape(3, 3, G)
    grad = torch.randn(3, 3, 7)

    fast = layer(x, index)
    gx_fast, *gp_fast = torch.autograd.grad(fast, [x, *layer.parameters()], grad)
    slow = layer(x)  # no index: the plain dense product
    gx_slow, *gp_slow = torch.autograd.grad(slow, [x, *layer.parameters()], grad)
    manual = x @ layer.weight.t() + (layer.bias if bias else 0.0)
    assert torch.allclose(slow, manual, atol=1e-6)
    assert torch.allclose(fast, slow, atol=1e-5)
    # gradients, including the straight-through one into the latent columns, are nn.Linear's
    assert torch.allclose(gx_fast, gx_slow, atol=1e-6)
    for a, b in zip(gp_fast, gp_slow):
        assert torch.allclose(a, b, atol=1e-5)


def test_latent_linear_sees_weight_updates():
    # the gathered table is cached per weight version: an optimizer step must invalidate it
    x, index = features(6)
    layer = LatentLinear(D + G * C, 4, dense=D, groups=G, classes=C)
    before = layer(x, index)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(x).pow(2).sum().backward()
    opt.step()
    after = layer(x, index)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, layer(x), atol=1e-5)
    with torch.no_grad():
        layer.weight.mul_(2.0)  # an in-place edit outside an optimizer
    assert torch.allclose(layer(x, index), layer(x), atol=1e-5)


def test_mlp_with_index_matches_mlp_without_and_keeps_its_state_dict():
    x, index = features(8)
    mlp = MLP(D + G * C, 3, 6, 2, latent=(D, G, C))
    assert torch.allclose(mlp(x, index), mlp(x), atol=1e-5)
    plain = MLP(D + G * C, 3, 6, 2)
    assert mlp.state_dict().keys() == plain.state_dict().keys()  # old checkpoints still load
    plain.load_state_dict(mlp.state_dict())
    assert torch.allclose(plain(x), mlp(x, index), atol=1e-5)
    head_only = MLP(D + G * C, 3, 6, 0, latent=(D, G, C))  # no hidden layer: the head gathers
    assert torch.allclose(head_only(x, index), head_only(x), atol=1e-5)


@pytest.mark.parametrize("backbone", [RSSM, SSMDynamics])
def test_every_state_carries_the_index_of_its_latent(backbone):
    torch.manual_seed(0)
    model = backbone(action_dim=2, embed_dim=5, deter=D, stoch=G, classes=C, hidden=8)
    B, T = 3, 6
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    post, prior = model.observe(torch.randn(B, T, 5), torch.randn(B, T, 2), first)

    def points_at_the_ones(state):
        stoch, index = state["stoch"].detach(), state["index"]
        picked = stoch.gather(-1, index.clamp(max=G * C - 1))
        return bool(((picked - 1).abs() < 1e-5).all()) and bool(((stoch != 0).sum(-1) == G).all())

    assert points_at_the_ones(post) and points_at_the_ones(prior)
    init = model.initial(B)
    assert bool((init["index"] == G * C).all())  # a zero latent gathers nothing
    start = {k: v[:, -1] for k, v in post.items()}
    for sample in (True, False):
        feats, _, last, index = model.imagine(start, torch.zeros(B, 4, 2), 4, sample=sample, indices=True)
        assert index.shape == (B, 5, G)
        assert torch.equal(index[:, 0], start["index"]) and torch.equal(index[:, -1], last["index"])
        stoch = feats[..., D:]
        assert torch.allclose(stoch.gather(-1, index), torch.ones(B, 5, G), atol=1e-5)
    step = model.obs_step(init, torch.randn(B, 2), torch.randn(B, 5), torch.ones(B, dtype=torch.bool))
    assert points_at_the_ones(step)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])  # REINFORCE; gradients through the dynamics
def test_an_update_is_the_same_with_and_without_the_gather(env_id):
    import gymnasium as gym
    import numpy as np

    from benchmarks.speed import _fake_batch
    from envs.spaces import action_spec, obs_spec
    from worldmodel.agent import Agent
    from worldmodel.config import load_config

    cfg = load_config(["debug"], {"env.id": env_id})
    env = gym.make(env_id)
    results = []
    for enabled in (True, False):
        LatentLinear.enabled = enabled
        try:
            torch.manual_seed(0)
            agent = Agent(cfg, obs_spec(env.observation_space), action_spec(env.action_space))
            batch = _fake_batch(agent, cfg, np.random.default_rng(0))
            metrics = [agent.train_step(batch) for _ in range(2)]
            results.append((metrics, [p.detach().clone() for p in agent.planner.parameters()]))
        finally:
            LatentLinear.enabled = True
    (m_on, p_on), (m_off, p_off) = results
    for a, b in zip(m_on, m_off):
        for key in ("loss/rec", "loss/reward", "loss/dyn", "actor_loss", "critic_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    for a, b in zip(p_on, p_off):
        assert torch.allclose(a, b, atol=1e-5)


def test_latent_linear_sees_a_fused_adam_step():
    # fused Adam updates the weight without bumping its version counter
    from worldmodel.nets import adam
    x, index = features(6)
    layer = LatentLinear(D + G * C, 4, dense=D, groups=G, classes=C)
    opt = adam(layer.parameters(), lr=0.1, eps=1e-8)
    before = layer(x, index)
    layer(x).pow(2).sum().backward()
    opt.step()
    assert not torch.allclose(before, layer(x, index))
    assert torch.allclose(layer(x, index), layer(x), atol=1e-5)
