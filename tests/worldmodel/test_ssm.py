"""SSM and hybrid dynamics (issue 10): the parallel scan over a sequence and the recurrent
step give the same states (resets at is_first included), the State contract planners rely
on holds, and each backbone trains, evaluates and refuses a backbone change on the CLI."""
import pytest
import torch

from worldmodel.hybrid import HybridDynamics
from worldmodel.ssm import SSMDynamics, selective_scan

BACKBONES = {"ssm": (SSMDynamics, {}), "hybrid": (HybridDynamics, {"window": 3})}


def _argmax_sample(logits, generator=None):
    # The scan-vs-step checks compare the deterministic path, so take the mode of each
    # categorical instead of a sample: the two orders of computation then see equal z.
    # Returns (stoch (..., S*C), flat index (..., S)) as SSMDynamics._sample does.
    cls = logits.argmax(-1)
    index = cls + torch.arange(cls.shape[-1]) * logits.shape[-1]
    return torch.nn.functional.one_hot(cls, logits.shape[-1]).to(logits.dtype).flatten(-2), index


def make(kind, seed=0, **overrides):
    cls, extra = BACKBONES[kind]
    torch.manual_seed(seed)
    model = cls(action_dim=2, embed_dim=5, deter=16, stoch=4, classes=3, hidden=8, layers=2,
                ssm_state=4, **{**extra, **overrides}).double()
    model._sample = _argmax_sample
    return model


def inputs(B=3, T=11, seed=1):
    g = torch.Generator().manual_seed(seed)
    embed = torch.randn(B, T, 5, generator=g, dtype=torch.float64)
    action = torch.randn(B, T, 2, generator=g, dtype=torch.float64)
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    first[0, 4] = True   # resets inside the sequence, at different steps per row
    first[1, 7] = True
    first[0, 5] = True   # two in a row: a one-step episode
    return embed, action, first


def _scan_inputs(T, seed, B=2, D=3, N=4):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    delta = torch.nn.functional.softplus(rand(B, T, D))
    A = -torch.rand(D, N, generator=g, dtype=torch.float64) * 2
    keep = torch.ones(B, T, dtype=torch.float64)
    keep[0, T // 2] = 0.0  # resets inside the sequence, at different steps per row
    keep[1, T - 1] = 0.0
    return [delta, A, rand(B, T, N), rand(B, T, N), rand(B, T, D), keep, rand(B, D, N)]


def _scan_loop(delta, A, B, C, u, keep, s0):
    """The recurrence written the obvious way, one step at a time: the reference."""
    s, states = s0, []
    for t in range(delta.shape[1]):
        a = torch.exp(delta[:, t, :, None] * A) * keep[:, t, None, None]
        s = a * s + u[:, t, :, None] * B[:, t, None, :]
        states.append(s)
    s = torch.stack(states, 1)
    return (s * C[:, :, None, :]).sum(-1), s


@pytest.mark.parametrize("T,chunk", [(1, 0), (2, 1), (5, 0), (8, 3), (13, 4), (32, 5), (32, 32)])
def test_selective_scan_matches_the_loop_with_gradients(T, chunk):
    """Values and every gradient of the chunked scan with its hand-written backward equal
    autograd through the plain loop, whatever the chunk size; gradients reach y and s."""
    ref_in = [x.requires_grad_(i != 5) for i, x in enumerate(_scan_inputs(T, seed=T))]
    new_in = [x.detach().clone().requires_grad_(i != 5) for i, x in enumerate(ref_in)]
    y_ref, s_ref = _scan_loop(*ref_in)
    y, s = selective_scan(*new_in, chunk=chunk)
    assert torch.allclose(y, y_ref, atol=1e-12) and torch.allclose(s, s_ref, atol=1e-12)
    g = torch.Generator().manual_seed(0)
    gy = torch.randn(y.shape, generator=g, dtype=y.dtype)
    gs = torch.randn(s.shape, generator=g, dtype=s.dtype)
    ((y_ref * gy).sum() + (s_ref * gs).sum()).backward()
    ((y * gy).sum() + (s * gs).sum()).backward()
    for i, (a, b) in enumerate(zip(new_in, ref_in)):
        if i != 5:
            assert torch.allclose(a.grad, b.grad, atol=1e-10), f"input {i}: {(a.grad - b.grad).abs().max()}"
    # y alone (the usual case: the states are handed out but left out of the loss)
    ref_in = [x.detach().clone().requires_grad_(i != 5) for i, x in enumerate(ref_in)]
    new_in = [x.detach().clone().requires_grad_(i != 5) for i, x in enumerate(ref_in)]
    _scan_loop(*ref_in)[0].sum().backward()
    selective_scan(*new_in, chunk=chunk)[0].sum().backward()
    for i, (a, b) in enumerate(zip(new_in, ref_in)):
        if i != 5:
            assert torch.allclose(a.grad, b.grad, atol=1e-10), f"input {i} (y only)"


def test_selective_scan_gradcheck():
    inputs = [x.requires_grad_(i != 5) for i, x in enumerate(_scan_inputs(7, seed=3))]
    assert torch.autograd.gradcheck(lambda *x: selective_scan(*x, chunk=3), inputs)


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_sequence_scan_equals_recurrent_step(kind):
    model = make(kind)
    embed, action, first = inputs()
    post, prior = model.observe(embed, action, first)
    state, steps = model.initial(3), []
    for t in range(embed.shape[1]):
        state = model.obs_step(state, action[:, t], embed[:, t], first[:, t])
        steps.append(state)
    assert set(post) == set(steps[0])
    for key, value in post.items():
        stepped = torch.stack([s[key] for s in steps], 1)
        assert value.shape == stepped.shape, key
        assert torch.allclose(value, stepped, atol=1e-5), f"{key}: {(value - stepped).abs().max()}"
    # the prior of a stepped imagination from the same state matches the sequence's prior
    prev = {k: v[:, 2] for k, v in post.items()}
    imagined = model.img_step(prev, action[:, 3])
    assert torch.allclose(imagined["deter"][1:], prior["deter"][1:, 3], atol=1e-5)  # rows without a reset
    assert torch.allclose(imagined["logits"][1:], prior["logits"][1:, 3], atol=1e-5)


@pytest.mark.parametrize("window", [1, 4, 16])
def test_hybrid_scan_equals_step_for_any_window(window):
    """The blocked attention of a sequence (blocks of W queries, padded when W does not
    divide T, W above T too) sees exactly the stepped rolling cache."""
    model = make("hybrid", window=window)
    embed, action, first = inputs()
    post, _ = model.observe(embed, action, first)
    state = model.initial(3)
    for t in range(embed.shape[1]):
        state = model.obs_step(state, action[:, t], embed[:, t], first[:, t])
        for key, value in state.items():
            assert torch.allclose(post[key][:, t], value, atol=1e-5), (key, t)


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_observe_continues_from_a_state(kind):
    """Two halves, the second started from the first's last state, equal the whole: the
    incoming SSM state and attention cache are used exactly like the stepped ones."""
    model = make(kind)
    embed, action, first = inputs(T=12)
    whole, _ = model.observe(embed, action, first)
    head, _ = model.observe(embed[:, :6], action[:, :6], first[:, :6])
    tail, _ = model.observe(embed[:, 6:], action[:, 6:], first[:, 6:], {k: v[:, -1] for k, v in head.items()})
    for key in whole:
        assert torch.allclose(torch.cat([head[key], tail[key]], 1), whole[key], atol=1e-5), key


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_reset_forgets_the_previous_episode(kind):
    model = make(kind)
    embed, action, first = inputs()
    post, _ = model.observe(embed, action, first)
    fresh_first = first[:, 7:].clone()
    fresh_first[:, 0] = True
    fresh, _ = model.observe(embed[:, 7:], action[:, 7:], fresh_first)
    assert torch.allclose(post["deter"][1, 7:], fresh["deter"][1], atol=1e-6)  # row 1 reset at 7
    assert not torch.allclose(post["deter"][2, 7], fresh["deter"][2, 0], atol=1e-3)  # row 2 did not


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_state_is_a_flat_batch_dict_that_planners_can_flatten(kind):
    model = make(kind)
    embed, action, first = inputs(B=2, T=8)
    post, _ = model.observe(embed, action, first)
    assert all(torch.is_tensor(v) and v.shape[:2] == (2, 8) for v in post.values())
    starts = {k: v.flatten(0, 1) for k, v in post.items()}  # what the trainer does: N = B*T = 16
    starts = {k: v.repeat_interleave(3, 0) for k, v in starts.items()}  # what MPC does
    feats, acts, last = model.imagine(starts, lambda f: torch.zeros(f.shape[0], 2, dtype=f.dtype), 4)
    assert feats.shape == (48, 5, model.feat_dim) and acts.shape == (48, 4, 2)
    assert set(last) == set(post)


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_gradients_flow_through_the_scan(kind):
    model = make(kind)
    embed, action, first = inputs()
    post, prior = model.observe(embed.requires_grad_(True), action, first)
    dyn, rep, _ = model.kl_loss(post["logits"], prior["logits"], free_nats=0.0)
    (dyn.mean() + rep.mean() + model.feat(post).pow(2).mean()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.blocks[0].A_log.grad.abs().sum() > 0  # the decay itself is learned


@pytest.mark.parametrize("kind", ["ssm", "hybrid"])
def test_cli_trains_evaluates_and_refuses_a_backbone_change(kind, tmp_path, capsys):
    from worldmodel.cli import main
    run = str(tmp_path / "run")
    assert main(["train", "--preset", "debug", "--model.dynamics", kind, "--logdir", run,
                 "--steps", "150"]) == 0
    from worldmodel.checkpoint import load_latest
    _, state = load_latest(tmp_path / "run" / "checkpoints")
    assert state["agent"]["dynamics"] == kind
    assert f"dynamics: {kind}" in (tmp_path / "run" / "config.yaml").read_text()
    assert main(["eval", "--run", run, "--episodes", "2"]) == 0
    assert "return over 2 episodes" in capsys.readouterr().out
    other = "gru" if kind != "gru" else "ssm"
    assert main(["eval", "--run", run, "--episodes", "1", "--model.dynamics", other]) == 2
    err = capsys.readouterr().err.strip()
    assert f"trained with model.dynamics '{kind}', not '{other}'" in err and "\n" not in err
    assert main(["train", "--preset", "debug", "--model.dynamics", other, "--logdir", run,
                 "--steps", "200"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"'model.dynamics' changed from '{kind}' to '{other}'" in err and "\n" not in err
