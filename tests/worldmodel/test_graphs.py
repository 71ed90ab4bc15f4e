"""`run.cuda_graphs` (worldmodel/graphs.py): an update's two gradient steps are captured as
CUDA graphs. A capture fails (or worse, records a stale value) where the code reads a tensor
back to the host, so on a CPU the steps run here with every host read raising; on a CUDA
machine the captured update must also train like the eager one."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from benchmarks.speed import _fake_batch
from envs.spaces import action_spec, obs_spec
from worldmodel.agent import Agent
from worldmodel.config import load_config
from worldmodel import graphs as graphs_module
from worldmodel.graphs import UpdateGraphs
from worldmodel.nets import CAPTURING

READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy")


def agent(env_id: str = "CartPole-v1", device: str = "cpu", **over) -> Agent:
    torch.manual_seed(0)
    cfg = load_config(["debug"], {"replay.length": 6, "replay.batch": 3, "behavior.horizon": 4, **over})
    env = gym.make(env_id)
    spaces = (obs_spec(env.observation_space), action_spec(env.action_space), device,
              env.observation_space, env.action_space)
    env.close()
    return Agent(cfg, *spaces)


def batch_for(ag: Agent) -> dict[str, np.ndarray]:
    data = _fake_batch(ag, ag.cfg, np.random.default_rng(0))
    data["is_first"][1, 3] = True  # a reset inside a sequence: the GRU's masked path
    data["is_terminal"][2, 4] = True
    if ag.cfg.shield.rules:
        data["allowed"] = np.random.default_rng(1).random((*data["reward"].shape, ag.act_spec.dim)) > 0.3
    return data


class HostRead(AssertionError):
    pass


def no_host_reads(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise HostRead("a tensor was read back to the host inside a step that a CUDA graph captures")
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, refuse)


CASES = {
    "gru discrete": ("CartPole-v1", {}),
    "gru continuous (dynamics gradients)": ("Pendulum-v1", {}),
    "ssm": ("CartPole-v1", {"model.dynamics": "ssm"}),
    "hybrid": ("Pendulum-v1", {"model.dynamics": "hybrid"}),
    "explore + replay loss + starts": ("Pendulum-v1", {"behavior.explore": 1.0, "critic.replay_loss": 1.0,
                                                       "behavior.starts": 7}),
    "shielded, learned verdicts, proposals": ("worldmodel/SafeCorridor-v0",
                                              {"shield.rules": "safe_corridor", "shield.proposal_loss": 0.5}),
    "mppi planner": ("Pendulum-v1", {"planner.kind": "mppi"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gradient_steps_read_nothing_back(case, monkeypatch):
    env_id, over = CASES[case]
    ag = agent(env_id, **over)
    batch = ag.to_batch(batch_for(ag))
    with monkeypatch.context() as m:
        no_host_reads(m)
        CAPTURING[0] = True
        try:
            total, losses, post = ag._model_gradients(batch)
            out = ag._behavior_gradients(batch, post)
        finally:
            CAPTURING[0] = False
    assert all(p.grad is not None for p in ag.model.rssm.parameters())
    assert {"actor_loss", "critic_loss", "imag_return", "return_scale"} <= out.keys()
    assert all(torch.is_tensor(v) for v in out.values())
    # and the host steps after them train: finite metrics, no update skipped
    metrics = ag.behavior.apply(out)
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    if over.get("shield.rules"):
        assert "proposal_loss" in metrics and "imag_forbidden" in metrics


def test_the_probe_catches_a_host_read(monkeypatch):
    """The check above can fail: the GRU's reset mask is read back unless it is capturing."""
    ag = agent()
    batch = ag.to_batch(batch_for(ag))
    with monkeypatch.context() as m:
        no_host_reads(m)
        with pytest.raises(HostRead):
            ag._model_gradients(batch)


def test_split_update_matches_the_planners_update():
    """Agent.train_step runs the planner as gradients + apply; the planner's own update is the same."""
    a, b = agent("Pendulum-v1"), agent("Pendulum-v1")
    data = batch_for(a)
    torch.manual_seed(5)
    got = a.train_step(data)
    batch = b.to_batch(data)
    torch.manual_seed(5)
    total, losses, post = b._model_gradients(batch)
    torch.nn.utils.clip_grad_norm_(b.model.parameters(), b.model_clip)
    b.model_opt.step()
    start = {k: v.detach().flatten(0, 1) for k, v in post.items()}
    want = b.planner.update(b.model, start, 1.0 - batch["is_terminal"].float().flatten(),
                            batch["mask"].float().flatten())
    for key in ("actor_loss", "critic_loss", "imag_return", "actor_grad_norm", "return_scale"):
        assert got[key] == pytest.approx(want[key], rel=1e-5), key
    for p, q in zip(a.planner.parameters(), b.planner.parameters()):
        torch.testing.assert_close(p, q)


def test_inputs_are_fixed_tensors_and_a_new_shape_starts_over():
    graphs = UpdateGraphs(warmup=2)
    first = {"x": torch.zeros(2, 3), "y": torch.ones(2)}
    static = graphs.inputs(first)
    assert static["x"] is not first["x"] and not graphs.warm
    again = graphs.inputs({"x": torch.full((2, 3), 7.0), "y": torch.zeros(2)})
    assert again["x"] is static["x"] and float(static["x"].sum()) == 42.0  # copied in place
    graphs.inputs({"x": torch.zeros(2, 3), "y": torch.zeros(2)})
    assert graphs.warm  # the third update is captured
    graphs.graphs["model"] = "stale"
    fresh = graphs.inputs({"x": torch.zeros(4, 3), "y": torch.zeros(4)})
    assert fresh["x"].shape == (4, 3) and not graphs.warm and graphs.graphs == {}


def test_cuda_graphs_are_cuda_only(capsys):
    ag = agent(**{"run.cuda_graphs": True})
    assert ag.graphs is None  # a CPU has nothing to capture: the eager update
    err = capsys.readouterr().err
    assert "run.cuda_graphs needs a CUDA device" in err and err.count("\n") == 1  # one line says so
    ag.train_step(batch_for(ag))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("env_id,over", [("CartPole-v1", {}), ("Pendulum-v1", {"model.dynamics": "ssm"}),
                                         ("Pendulum-v1", {"run.precision": "bf16", "critic.replay_loss": 1.0})])
def test_captured_updates_train_like_eager_ones(env_id, over):
    eager = agent(env_id, "cuda", **over)
    graphed = agent(env_id, "cuda", **{"run.cuda_graphs": True, **over})
    data = batch_for(eager)
    runs = {}
    for name, ag in (("eager", eager), ("graphs", graphed)):
        torch.manual_seed(1)
        runs[name] = [ag.train_step(data) for _ in range(12)]
    assert graphed.graphs.captures == 2 and not graphed.graphs.failed
    # the warm-up updates are eager: the same numbers
    assert runs["graphs"][0]["loss/rec"] == pytest.approx(runs["eager"][0]["loss/rec"], rel=1e-4)
    before = [p.detach().clone() for p in graphed.model.parameters()]
    actor_before = [p.detach().clone() for p in graphed.behavior.actor.parameters()]
    last = graphed.train_step(data)  # a replay
    assert any(not torch.equal(p, q) for p, q in zip(before, graphed.model.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(actor_before, graphed.behavior.actor.parameters()))
    assert graphed.skipped_updates == 0 and all(np.isfinite(v) for v in last.values() if isinstance(v, float))
    # replays draw new random numbers and learn as the eager updates do (same batch, 12 updates)
    for key in ("loss/rec", "loss/reward", "critic_loss"):
        want, got = runs["eager"][-1][key], runs["graphs"][-1][key]
        assert got == pytest.approx(want, rel=0.25, abs=0.05), key
    assert runs["graphs"][-1]["loss/rec"] < runs["graphs"][0]["loss/rec"]
    assert runs["graphs"][-1]["imag_return"] != runs["graphs"][-2]["imag_return"]


class FakeCuda:
    """Stand-ins for the torch.cuda calls UpdateGraphs makes, recording what happens: a
    capture runs fn once (recording), a replay re-runs the recorded fn."""

    def __init__(self, fail_capture: bool = False):
        self.fail_capture, self.events = fail_capture, []
        cuda = self

        class Stream:
            def wait_stream(self, other):
                pass

        class Graph:
            def replay(self):
                cuda.events.append("replay")
                self.fn()

        class graph:  # noqa: N801 (torch's spelling)
            def __init__(self, g, stream=None, capture_error_mode="global"):
                assert capture_error_mode == "thread_local"  # the prefetch thread may copy meanwhile
                self.g = g

            def __enter__(self):
                cuda.events.append("capture")
                cuda.capturing = self.g
                assert CAPTURING[0]
                return self

            def __exit__(self, *exc):
                cuda.capturing = None
                if cuda.fail_capture:
                    raise RuntimeError("operation not permitted when stream is capturing")
                return False

        class stream:  # noqa: N801
            def __init__(self, s):
                pass

            def __enter__(self):
                cuda.events.append("eager")

            def __exit__(self, *exc):
                return False

        self.Stream, self.CUDAGraph, self.graph, self.stream = Stream, Graph, graph, stream
        self.current_stream = Stream
        self.capturing = None

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(graphs_module, "_SIDE_STREAMS", {})
        for name in ("Stream", "CUDAGraph", "graph", "stream", "current_stream"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))


def test_warm_up_then_one_capture_then_replays(monkeypatch):
    cuda = FakeCuda()
    cuda.install(monkeypatch)
    graphs, calls = UpdateGraphs(warmup=2), []

    def step():
        calls.append(1)
        if cuda.capturing is not None:
            cuda.capturing.fn = step
        return {"loss": torch.tensor(float(len(calls)))}
    outs = []
    for _ in range(5):
        graphs.inputs({"x": torch.zeros(2)})
        outs.append(graphs.run("model", step))
    assert cuda.events == ["eager", "eager", "capture", "replay", "replay", "replay"]
    assert graphs.captures == 1 and not graphs.failed and not CAPTURING[0]
    assert outs[2] is outs[3] is outs[4]  # a replay hands back the captured outputs
    # a second agent's graphs use the same side stream (PyTorch keeps a cuBLAS workspace per stream)
    other = UpdateGraphs(warmup=2)
    other.inputs({"x": torch.zeros(2)})
    other.run("model", step)
    assert other._stream is graphs._stream


def test_a_step_that_cannot_be_captured_stays_eager(monkeypatch, capsys):
    FakeCuda(fail_capture=True).install(monkeypatch)
    graphs, flags = UpdateGraphs(warmup=1), []
    for _ in range(4):
        graphs.inputs({"x": torch.zeros(2)})
        out = graphs.run("behavior", lambda: flags.append(CAPTURING[0]) or 7)
        assert out == 7
    assert flags == [False, True, False, False, False]  # warm-up, the failed capture, then eager
    err = capsys.readouterr().err
    assert err.count("could not be captured") == 1 and "runs eagerly" in err and "\n" == err[-1]
    assert "behavior" in graphs.failed and graphs.captures == 0 and not CAPTURING[0]
