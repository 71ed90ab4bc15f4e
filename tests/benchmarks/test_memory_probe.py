"""The memory probe's synthetic episodes are CueMemory's, as replay stores them, and the
probe runs for each backbone."""
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers worldmodel/ envs)
from benchmarks.memory_probe import cue_in_latent, episodes, main


@pytest.mark.parametrize("reward,reveal", [("cue", False), ("xor", False), ("xor", True)])
def test_episodes_match_the_env(reward, reveal):
    batch = episodes(np.random.default_rng(3), 8, 3, reward, reveal=reveal)
    env = gym.make("worldmodel/CueMemory-v0", length=3, reveal=reveal)
    for i in range(8):
        obs, _ = env.reset(seed=i)
        cue = int(batch["obs"][i, 0, :2].argmax())
        env.unwrapped._cue = cue
        obs = env.unwrapped._obs()
        rewards = [0.0]
        observations = [obs]
        for t in range(4):  # distance + 1 actions; the last one answers
            obs, r, terminated, _, _ = env.step(int(batch["action"][i, t].argmax()))
            observations.append(obs)
            rewards.append(r)
            if terminated:
                break
        assert np.array_equal(np.stack(observations), batch["obs"][i])
        if reward == "xor":  # CueMemory's own reward; "cue" replaces only the last one
            assert np.array_equal(np.array(rewards, np.float32), batch["reward"][i])
        assert not batch["reward"][i, :-1].any()
        answer = int(batch["action"][i, 3].argmax())
        want = (cue == 0) if reward == "cue" else (answer == cue)
        assert batch["reward"][i, -1] == (1.0 if want else -1.0)
    assert batch["is_first"][:, 0].all() and batch["is_terminal"][:, -1].all()
    assert not batch["action"][:, -1].any()  # nothing is taken at the terminal obs


@pytest.mark.parametrize("backbone", ["gru", "ssm", "hybrid"])
def test_probe_runs_and_records(backbone, results, capsys):
    assert main(["--backbones", backbone, "--distances", "1", "--rewards", "cue", "--updates", "4",
                 "--every", "2", "--preset", "debug"]) == 0
    row = json.loads((results / "memory_probe.jsonl").read_text().splitlines()[-1])["rows"][0]
    assert row["backbone"] == backbone and len(row["curve"]) == 2
    assert all(0.0 <= acc <= 1.0 for _, acc in row["curve"])
    assert [t[0] for t in row["trace"]] == [2, 4] and all(t[1] >= 0 and t[2] >= 0 for t in row["trace"])
    out = capsys.readouterr().out
    assert "updates to learn" in out and f"{backbone} distance 1 seed 0: update 4, sign accuracy" in out
    from benchmarks.report import report
    table = report(results)
    assert "### Memory probe" in table and f"| world-model |  | cue | 1 | {backbone} | 0 | not within 4 |" in table


@pytest.mark.parametrize("extra, shown", [(["--set", "model.loss_scales.rec=0.0"], "model.loss_scales.rec=0.0"),
                                          (["--answer-p0", "0.75"], "answer P(0)=0.75")])
def test_report_keeps_ablations_apart(results, extra, shown):
    """A probe run with --set overrides or biased answers gets its own row; it does not
    replace the plain one."""
    args = ["--backbones", "gru", "--distances", "1", "--rewards", "xor", "--every", "2", "--preset", "debug"]
    assert main(args + ["--updates", "2"]) == 0
    assert main(args + ["--updates", "4", *extra]) == 0
    from benchmarks.report import report
    table = report(results)
    assert "| world-model |  | xor | 1 | gru | 0 | not within 2 |" in table
    assert f"| world-model | {shown} | xor | 1 | gru | 0 | not within 4 |" in table


@pytest.mark.parametrize("readout", ["mse", "twohot", "twohot-every"])
def test_readout_trains_only_the_backbone_and_its_readout(readout, monkeypatch):
    """--readout: the encoder, the dynamics and the readout learn; the world model's decoder
    and heads are left as they were built."""
    import torch

    from benchmarks import memory_probe
    from worldmodel.agent import Agent
    built = []
    original = Agent.__init__

    def keep(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append((self, {k: v.detach().clone() for k, v in self.model.state_dict().items()}))

    monkeypatch.setattr(Agent, "__init__", keep)
    row = memory_probe.probe("gru", 1, "cue", 3, 3, 0.95, 0, ["debug"], 4, {}, readout)
    assert row["readout"] == readout and len(row["curve"]) == 1
    agent, before = built[0]
    after = agent.model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"vec_encoder", "rssm"}


def test_mse_readout_learns_to_carry_a_cue():
    """The readout probe can succeed: a GRU carries a cue over two blank steps and its sign
    is read right on 95% of fresh episodes within 400 updates (seed 0 needs 150)."""
    from benchmarks.memory_probe import probe
    row = probe("gru", 2, "cue", 400, 50, 0.95, 0, ["small"], 16, {}, "mse")
    assert row["reached"] is not None, row["curve"]


def test_readout_loss_covers_the_terminal_step_or_every_step():
    """`twohot` learns from the last step's reward only; `twohot-every` from every step's."""
    import torch

    from benchmarks.memory_probe import Readout
    from worldmodel.config import load_config
    from worldmodel.dists import TwoHot
    cfg = load_config(["debug"], {})

    class Model:
        feat_dim, twohot = 6, TwoHot(cfg.model.bins)

    feat = torch.randn(3, 4, 6)
    reward = torch.tensor([[0.0, 0.0, 0.0, 1.0]] * 3)
    last, every = Readout("twohot", Model, cfg), Readout("twohot-every", Model, cfg)
    torch.nn.init.normal_(last.net.head.weight)  # a zero output layer would give equal losses
    every.net.load_state_dict(last.net.state_dict())
    logits = last.net(feat)
    want_last = Model.twohot.loss(logits[:, -1], reward[:, -1]).mean()
    want_every = Model.twohot.loss(logits, reward).mean()
    assert torch.allclose(last.loss(feat, reward), want_last)
    assert torch.allclose(every.loss(feat, reward), want_every)
    assert not torch.allclose(want_last, want_every)
    assert torch.allclose(every.predict(feat), Model.twohot.mean(logits[:, -1]))


def test_cue_in_latent_hand_computed():
    """Two latent groups of 2 classes, 4 episodes (cues 0, 0, 1, 1), 3 steps. Group 0 encodes
    the cue exactly at step 0, group 1 only leans (0.75 / 0.25 against 0.25 / 0.75): total
    variation 1 + 0.5. At the blank step (1) group 0 is uniform (ln 2 nats) and group 1 is
    certain (0 nats): 0.5 ln 2 per group on average."""
    p = torch.full((4, 3, 2, 2), 0.5)
    cue0 = torch.tensor([True, True, False, False])
    p[:2, 0, 0] = torch.tensor([1.0, 0.0])
    p[2:, 0, 0] = torch.tensor([0.0, 1.0])
    p[:2, 0, 1] = torch.tensor([0.75, 0.25])
    p[2:, 0, 1] = torch.tensor([0.25, 0.75])
    p[:, 1, 1] = torch.tensor([1.0, 0.0])
    groups, entropy = cue_in_latent(p.clamp_min(1e-30).log(), cue0, 1)
    assert groups == pytest.approx(1.5, abs=1e-6)
    assert entropy == pytest.approx(0.5 * np.log(2.0), abs=1e-6)


def test_answer_bias_draws_answers_apart_from_the_cue():
    """--answer-p0: the answer is 0 with that probability whatever the cue, and the xor
    reward still follows the answer; 0.5 keeps the original draw."""
    batch = episodes(np.random.default_rng(0), 4000, 2, "xor", answer_p0=0.75)
    cue, answer = batch["obs"][:, 0, :2].argmax(1), batch["action"][:, 2].argmax(1)
    assert abs((answer == 0).mean() - 0.75) < 0.03
    for c in (0, 1):  # independent of the cue
        assert abs((answer[cue == c] == 0).mean() - 0.75) < 0.05
    assert np.array_equal(batch["reward"][:, -1], np.where(answer == cue, 1.0, -1.0))
    plain = episodes(np.random.default_rng(0), 64, 2, "xor")
    assert np.array_equal(plain["action"], episodes(np.random.default_rng(0), 64, 2, "xor", answer_p0=0.5)["action"])


def test_answer_bias_out_of_range_is_refused(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--answer-p0", "1.5", "--updates", "1"])
    assert err.value.code == 2 and "--answer-p0 is a probability" in capsys.readouterr().err
