"""`run.compile` (CUDA) compiles the world-model loss and the imagined step. A graph break
would silently send the ops between the pieces back through Python, one kernel launch each,
which is what compiling is for, so each path must trace as ONE graph (`fullgraph=True`) for
every backbone, and give eager's results. The `aot_eager` backend traces exactly what
inductor would compile (dynamo + autograd) without generating code, so this runs on a CPU."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from benchmarks.speed import _fake_batch
from envs.spaces import action_spec, obs_spec
from worldmodel.agent import Agent
from worldmodel.config import load_config

BACKBONES = ["gru", "ssm", "hybrid"]


def agent(dynamics: str = "gru", **over) -> Agent:
    torch.manual_seed(0)
    cfg = load_config(["debug"], {"model.dynamics": dynamics, "replay.length": 4, "replay.batch": 2,
                                  "behavior.horizon": 3, **over})
    env = gym.make("CartPole-v1")
    return Agent(cfg, obs_spec(env.observation_space), action_spec(env.action_space))


def reseed(obj, name: str, seed: int) -> None:
    """Make obj.name (a method, compiled or not) re-seed torch's RNG before each call."""
    fn = getattr(obj, name)

    def reseeded(*args, **kwargs):
        torch.manual_seed(seed)
        return fn(*args, **kwargs)
    setattr(obj, name, reseeded)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("dynamics", BACKBONES)
def test_imagined_step_is_one_graph_and_matches_eager(dynamics):
    rssm = agent(dynamics).model.rssm
    state = rssm.img_step(rssm.initial(5), torch.zeros(5, 2))
    action = torch.eye(2)[torch.tensor([0, 1, 1, 0, 1])]
    step = torch.compile(rssm.img_step, backend="aot_eager", fullgraph=True)  # raises on a graph break
    with torch.no_grad():
        for sample in (False, True):  # the prior's mode, then a sample from the same RNG state
            torch.manual_seed(1)
            eager = rssm.img_step(state, action, sample=sample)
            torch.manual_seed(1)
            compiled = step(state, action, sample=sample)
            assert eager.keys() == compiled.keys()
            for key in eager:
                torch.testing.assert_close(compiled[key], eager[key], rtol=0, atol=1e-6)


def test_world_model_loss_is_one_graph_and_matches_eager():
    ag = agent("gru")
    batch = ag.to_batch(_fake_batch(ag, ag.cfg, np.random.default_rng(0)))
    loss = torch.compile(ag.model.loss, backend="aot_eager", fullgraph=True)
    torch.manual_seed(2)
    total_eager, terms_eager, _ = ag.model.loss(batch)
    torch.manual_seed(2)
    total, terms, _ = loss(batch)
    torch.testing.assert_close(total, total_eager, rtol=1e-5, atol=1e-6)
    assert terms.keys() == terms_eager.keys()
    total.backward()  # the compiled graph's backward reaches the parameters
    assert all(p.grad is not None for p in ag.model.rssm.parameters())


@pytest.mark.parametrize("imagination", ["step", "losses"])
def test_compiled_agent_trains_like_the_eager_one(imagination):
    """Agent.compile (what run.compile calls): the same update, step for step, with either
    what CUDA compiles besides the loss (the imagined step) or what the CPU does (the
    actor-critic's losses)."""
    eager, compiled = agent("gru"), agent("gru")
    compiled.compile(backend="aot_eager", imagination=imagination)
    if imagination == "step":
        assert compiled.model.rssm.img_step is not type(compiled.model.rssm).img_step  # the loops use it
    else:
        assert compiled.behavior.losses is not type(compiled.behavior).losses.__get__(compiled.behavior)
        assert compiled.model.rssm.img_step.__func__ is type(compiled.model.rssm).img_step
    # A compiled graph with autograd draws its random numbers in another order than eager
    # (the loss itself agrees), so both agents re-seed before imagining: from there on the
    # actor-critic's imagination runs the compiled code and must give eager's numbers.
    for ag in (eager, compiled):
        reseed(ag.behavior, "gradients", 4)
    batch = _fake_batch(eager, eager.cfg, np.random.default_rng(0))
    for _ in range(2):
        torch.manual_seed(3)
        want = eager.train_step(batch)
        torch.manual_seed(3)
        got = compiled.train_step(batch)
        for key in ("loss/rec", "loss/reward", "critic_loss", "actor_loss", "imag_return"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key


def _graph_ops(fn, *args, **kwargs) -> list[str]:
    """Compile `fn` as one graph (raises on a break) and return the ops of its FX graph."""
    seen: list[str] = []

    def backend(gm, example_inputs):
        seen.extend(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return gm
    torch.compile(fn, backend=backend, fullgraph=True)(*args, **kwargs)
    return seen


def test_compiled_latent_product_gathers_on_the_cpu():
    """Under torch.compile a LatentLinear given the latent index still gathers its latent
    columns (an embedding bag) rather than multiplying a one-hot, with and without
    gradients, and agrees with eager in values and gradients."""
    from worldmodel.nets import LatentLinear
    torch.manual_seed(0)
    layer = LatentLinear(3 + 2 * 4, 5, dense=3, groups=2, classes=4)
    index = torch.tensor([[1, 6], [0, 4], [3, 8]])  # flat indices; 8 = absent (the zero row)
    onehot = torch.zeros(3, 8)
    for row, cols in enumerate(index.tolist()):
        onehot[row, [c for c in cols if c < 8]] = 1.0
    x = torch.cat([torch.randn(3, 3), onehot], 1)
    with torch.no_grad():
        assert any("embedding_bag" in op for op in _graph_ops(layer, x, index))
        torch.testing.assert_close(torch.compile(layer, backend="aot_eager")(x, index), layer(x, index))
    xg = x.clone().requires_grad_()
    assert any("embedding_bag" in op or "LatentProduct" in op or "autograd_function" in op
               for op in _graph_ops(layer, xg, index))
    layer(xg, index).square().sum().backward()
    want = (xg.grad.clone(), layer.weight.grad.clone())
    xg.grad, layer.weight.grad = None, None
    torch.compile(layer, backend="aot_eager", fullgraph=True)(xg, index).square().sum().backward()
    torch.testing.assert_close(xg.grad, want[0])
    torch.testing.assert_close(layer.weight.grad, want[1])


@pytest.mark.parametrize("env_id,latent", [("CartPole-v1", "sample"), ("CartPole-v1", "mode"),
                                            ("Pendulum-v1", "sample")])
def test_compiled_mpc_decides_like_eager(env_id, latent):
    """run.compile on the CPU compiles MPC's imagination: the actor's proposals
    (`_proposals`, its random draws given as a tensor) and the scoring of all candidates
    (`_returns`: imagination and heads), each as one graph; a compiled agent decides as the
    eager one does from the same seed (aot_eager draws the same random numbers as eager)."""
    over = {"planner.kind": "mppi", "planner.samples": 16, "planner.elites": 4, "planner.horizon": 3,
            "planner.iterations": 2, "planner.latent": latent, "planner.policy_fraction": 0.25}
    env = gym.make(env_id)

    def build() -> Agent:
        torch.manual_seed(0)
        cfg = load_config(["debug"], {"env.id": env_id, **over})
        return Agent(cfg, obs_spec(env.observation_space), action_spec(env.action_space))
    eager, compiled = build(), build()
    compiled.compile(backend="aot_eager")
    for name in ("_returns", "_proposals"):  # instance attributes shadow the methods
        assert name in vars(compiled.planner) and name not in vars(eager.planner), name
    mpc, A = eager.planner, eager.act_spec.dim
    state = {k: v.repeat_interleave(8, 0) for k, v in eager.model.initial(2).items()}
    actions = torch.rand(16, 3, A) * 2 - 1 if not mpc.sizes else torch.eye(A)[torch.randint(0, A, (16, 3))]
    noise = mpc.actor.noise((3, 16), torch.Generator().manual_seed(0), torch.device("cpu"))
    with torch.no_grad():  # each traces whole (fullgraph), with the latent products gathered
        assert any("embedding_bag" in op for op in _graph_ops(mpc._returns, eager.model, state, actions))
        assert any("embedding_bag" in op for op in _graph_ops(mpc._proposals, eager.model, state, None, noise))
    # Compiled code skips random draws whose results are unused (the proposals' last latent),
    # so the global random stream moves on differently: both re-seed before each scoring.
    for ag in (eager, compiled):
        reseed(ag.planner, "_returns", 6)
    obs, _ = env.reset(seed=0)
    state_e = state_c = None
    for _ in range(4):
        torch.manual_seed(5)
        act_e, state_e = eager.act(obs, state_e, explore=True)
        torch.manual_seed(5)
        act_c, state_c = compiled.act(obs, state_c, explore=True)
        np.testing.assert_allclose(act_c, act_e, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(compiled.planner.last_plan, eager.planner.last_plan, rtol=1e-5, atol=1e-6)
        obs = env.step(act_e)[0]


def test_a_compiled_planner_serves_any_number_of_envs():
    """A compiled MPC planner meets new batch sizes (training with N env workers, evaluation
    with one, a shield's mask or none): each recompiles once, with dynamic sizes after the
    first change, and plans as the eager planner does."""
    over = {"planner.kind": "mppi", "planner.samples": 8, "planner.elites": 2, "planner.horizon": 2,
            "planner.iterations": 1, "planner.policy_fraction": 0.25}
    eager, compiled = agent("gru", **over), agent("gru", **over)
    compiled.compile(backend="aot_eager")
    for ag in (eager, compiled):  # see test_compiled_mpc_decides_like_eager
        reseed(ag.planner, "_returns", 6)
    rng = np.random.default_rng(0)
    for B, masked in ((1, False), (3, False), (2, True), (1, True)):
        obs = {"obs": rng.normal(size=(B, 4)).astype(np.float32)}
        first = np.ones(B, bool)
        mask = np.array([[True, False]] * B) if masked else None
        out = []
        for ag in (eager, compiled):
            torch.manual_seed(7)
            action, _, _ = ag.policy(obs, first, ag.initial(B), mask=mask, explore=True)
            out.append(action)
        np.testing.assert_allclose(out[1], out[0], rtol=1e-5, atol=1e-6)
        if masked:
            assert (out[1].argmax(-1) == 0).all()  # the mask's allowed action, first step


def test_mpc_imagination_compiles_with_the_cpp_wrapper(monkeypatch):
    """With inductor, MPC's imagination calls its kernels from C++ (`cpp_wrapper`); other
    backends take no inductor options."""
    from planners.mpc import LatentMPC
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: (seen.append(kw), fn)[1])
    mpc = agent("gru", **{"planner.kind": "mppi"}).planner
    assert isinstance(mpc, LatentMPC)
    mpc.compile_imagination()
    assert seen == [{"backend": "inductor", "options": {"cpp_wrapper": True}}] * 2
    seen.clear()
    mpc.compile_imagination("aot_eager")
    assert seen == [{"backend": "aot_eager"}] * 2
