"""SSM and hybrid dynamics (issue 10): the parallel scan over a sequence and the recurrent
step give the same states (resets at is_first included), the State contract planners rely
on holds, and each backbone trains, evaluates and refuses a backbone change on the CLI."""
import pytest
import torch

from worldmodel.hybrid import HybridDynamics
from worldmodel.ssm import SSMDynamics, parallel_scan

BACKBONES = {"ssm": (SSMDynamics, {}), "hybrid": (HybridDynamics, {"window": 3})}


def _argmax_sample(logits, generator=None):
    # The scan-vs-step checks compare the deterministic path, so take the mode of each
    # categorical instead of a sample: the two orders of computation then see equal z.
    return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype).flatten(-2)


def make(kind, seed=0):
    cls, extra = BACKBONES[kind]
    torch.manual_seed(seed)
    model = cls(action_dim=2, embed_dim=5, deter=16, stoch=4, classes=3, hidden=8, layers=2,
                ssm_state=4, **extra).double()
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


@pytest.mark.parametrize("T", [1, 2, 5, 8, 13, 32])
def test_parallel_scan_matches_the_loop(T):
    g = torch.Generator().manual_seed(T)
    a = torch.rand(2, T, 3, 4, generator=g, dtype=torch.float64)
    a[:, T // 2] = 0.0  # a reset
    b = torch.randn(2, T, 3, 4, generator=g, dtype=torch.float64)
    h, ref = torch.zeros(2, 3, 4, dtype=torch.float64), []
    for t in range(T):
        h = a[:, t] * h + b[:, t]
        ref.append(h)
    assert torch.allclose(parallel_scan(a, b), torch.stack(ref, 1), atol=1e-12)


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
