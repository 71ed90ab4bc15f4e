"""The shield wired into training and evaluation, on the built-in constrained task."""
import json

import gymnasium as gym

import envs  # noqa: F401  (registers worldmodel/ envs)
from worldmodel.cli import main

# a small discrete actor-critic (8 features, 3 actions) for the tests of masked acting
AC_KW = dict(units=16, layers=1, horizon=4, gamma=0.9, lam=0.95, entropy=3e-4, unimix=0.01, min_std=0.1,
             max_std=1.0, slow_rate=0.02, slowreg=1.0, grad="auto", bins=31, actor_lr=3e-3, critic_lr=1e-3,
             actor_clip=100.0, critic_clip=100.0, retnorm_rate=0.01)


def test_corridor_layout_satisfies_the_declared_invariant():
    # safe_corridor.rules assumes at most two hazard neighbours; check every reachable cell
    env = gym.make("worldmodel/SafeCorridor-v0").unwrapped
    env.reset(seed=0)
    hazard = env.hazard if hasattr(env, "hazard") else None
    assert hazard is not None
    rows, cols = hazard.shape
    for y in range(rows):
        for x in range(cols):
            if hazard[y, x]:
                continue
            around = [hazard[y + dy, x + dx] for dx, dy in ((0, -1), (1, 0), (0, 1), (-1, 0))
                      if 0 <= y + dy < rows and 0 <= x + dx < cols]
            assert sum(around) <= 2


def test_shielded_training_never_executes_a_violation(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--env", "worldmodel/SafeCorridor-v0",
                 "--rules", "safe_corridor", "--logdir", str(run), "--steps", "400"]) == 0
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["shield/vetoes"] > 0, "a random early policy should have proposed hazards"
    assert last["shield/executed_violations"] == 0
    assert "loss/cost" in last  # the cost head learns from the shield's labels
    episodes = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    # a hazard ends an episode with reward -1; with the shield on that never happens
    assert all(e["return"] > -1.0 for e in episodes)
    assert main(["eval", "--run", str(run), "--episodes", "3"]) == 0
    assert "0 executed violations" in capsys.readouterr().out
    assert main(["eval", "--run", str(run), "--episodes", "3", "--shield", "off"]) == 0
    assert "judging only (no veto)" in capsys.readouterr().out  # off still counts violations
    # no veto, the agent under its own learned verdicts; the rules judge what it executes
    assert main(["eval", "--run", str(run), "--episodes", "3", "--shield", "learned"]) == 0
    assert "judging only (no veto)" in capsys.readouterr().out


def test_allowed_logmass_hand_computed():
    import math

    import torch

    from worldmodel.dists import MultiCategorical
    # one head of 3 actions with probabilities 0.5 / 0.3 / 0.2 (no unimix), action 2 forbidden
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    dist = MultiCategorical(logits, (3,), unimix=0.0)
    got = dist.allowed_logmass(torch.tensor([[True, True, False]]))
    assert torch.allclose(got, torch.tensor([math.log(0.8)]), atol=1e-6)
    # nothing allowed (a dead end) is the fallback's business, not a loss: 0, not -inf
    assert dist.allowed_logmass(torch.tensor([[False, False, False]])).item() == 0.0
    # two heads multiply: P(allowed) = 0.8 * 0.5
    two = MultiCategorical(torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.5, 0.5]])), (3, 2), unimix=0.0)
    mask = torch.tensor([[True, True, False, False, True]])
    assert torch.allclose(two.allowed_logmass(mask).exp(), torch.tensor([0.4]), atol=1e-6)


def test_proposal_loss_teaches_the_actor_to_avoid_forbidden_actions():
    import torch

    from planners.actor_critic import ActorCritic

    class Model:  # a fixed one-step world: every state stays itself, reward 0
        def imagine(self, start, policy, horizon, time_major=False):
            feat = start["feat"]
            feats = [feat]
            for _ in range(horizon):
                policy(feat)
                feats.append(feat)
            return torch.stack(feats, 0), None, None

        def feat(self, state):
            return state["feat"]

        def reward(self, feat):
            return torch.zeros(feat.shape[:-1])

        def cont(self, feat):
            return torch.ones(feat.shape[:-1])

        def requires_grad_(self, flag):
            return self

    torch.manual_seed(0)
    kw = dict(units=16, layers=1, horizon=3, gamma=0.9, lam=0.95, entropy=3e-4, unimix=0.01, min_std=0.1,
              max_std=1.0, slow_rate=0.02, slowreg=1.0, grad="auto", bins=31, actor_lr=3e-3, critic_lr=1e-3,
              actor_clip=100.0, critic_clip=100.0, retnorm_rate=0.01)
    feat = torch.randn(64, 8)
    allowed = torch.ones(64, 4, dtype=torch.bool)
    allowed[:32, 2] = False  # half of the states forbid action 2
    weight, cont = torch.ones(64), torch.ones(64)
    risks = {}
    for loss in (0.0, 1.0):
        torch.manual_seed(0)
        ac = ActorCritic(8, 4, (4,), proposal_loss=loss, **kw)
        for _ in range(150):
            out = ac.update(Model(), {"feat": feat}, cont, weight, allowed)
        _, info = ac.act(Model(), {"feat": feat[:32]}, allowed[:32])
        risks[loss] = float(info["proposal_risk"].mean())
    assert risks[0.0] > 0.15            # untaught, about a quarter of the mass is on action 2
    assert risks[1.0] < 0.5 * risks[0.0]  # taught by the shield's labels
    assert risks[1.0] > 0.02  # ...down to about the margin (0.05), not to the unimix floor
    assert "proposal_risk" in out and "proposal_loss" in out


def test_shield_labels_go_to_replay_and_the_metrics(tmp_path):
    from worldmodel.resume import load_replay
    run = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--env", "worldmodel/SafeCorridor-v0",
                 "--rules", "safe_corridor", "--logdir", str(run), "--steps", "300",
                 "--shield.proposal_loss", "1.0"]) == 0
    replay = load_replay(run)
    allowed = replay.data["allowed"][0, : int(replay.count[0])]
    assert allowed.all(-1).mean() < 1.0, "next to a hazard some action must be forbidden"
    assert allowed.any(-1).all()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("shield/proposal_risk" in r for r in rows)
    assert any("proposal_loss" in r for r in rows)


def test_actor_imagines_under_the_predicted_verdicts():
    """With imagine_masked set, no imagined action is one the model predicts the rules
    forbid: the actor never learns from the model's guess about its outcome."""
    import torch

    from planners.actor_critic import ActorCritic

    taken = []

    class Model:  # states stay themselves; the verdict forbids action 1 where feat[0] > 0
        verdict_head = True

        def imagine(self, start, policy, horizon, time_major=False):
            feat = start["feat"]
            feats = [feat]
            for _ in range(horizon):
                taken.append(policy(feat))
                feats.append(feat)
            return torch.stack(feats, 0), None, None

        def allowed(self, feat):
            p = torch.ones(feat.shape[0], 3)
            p[:, 1] = (feat[:, 0] <= 0).float() * 0.9 + 0.05
            return p

        def reward(self, feat):  # action-independent here; the mask is what is tested
            return torch.zeros(feat.shape[:-1])

        def cont(self, feat):
            return torch.ones(feat.shape[:-1])

        def requires_grad_(self, flag):
            return self

    torch.manual_seed(0)
    feat = torch.randn(256, 8)
    labels = torch.ones(256, 3, dtype=torch.bool)
    ac = ActorCritic(8, 3, (3,), **AC_KW)
    ac.imagine_masked = True
    out = ac.update(Model(), {"feat": feat}, torch.ones(256), torch.ones(256), labels)
    actions = torch.stack(taken)  # (H, N, 3) one-hots
    positive = feat[:, 0] > 0
    assert actions[:, positive, 1].sum() == 0           # never forbidden in imagination
    assert actions[:, ~positive, 1].sum() > 0           # ...but still taken where allowed
    assert abs(out["imag_forbidden"] - positive.float().mean().item() / 3) < 1e-6
    taken.clear()
    ac.imagine_masked = False  # without it the same actor does imagine the forbidden action
    ac.update(Model(), {"feat": feat}, torch.ones(256), torch.ones(256), labels)
    assert torch.stack(taken)[:, positive, 1].sum() > 0


def test_verdict_head_is_built_and_trained_only_for_a_shielded_discrete_agent(tmp_path):
    import torch

    from envs.spaces import action_spec, obs_spec
    from worldmodel.agent import Agent
    from worldmodel.config import load_config

    env = gym.make("worldmodel/SafeCorridor-v0")
    spaces = (obs_spec(env.observation_space), action_spec(env.action_space), torch.device("cpu"),
              env.observation_space, env.action_space)
    on = Agent(load_config(["debug"], {"shield.rules": "safe_corridor"}), *spaces)
    assert on.model.verdict_head is not None and on.planner.imagine_masked
    # shield off: the same weights (so `eval --shield off` loads them), but no masked imagination
    off = Agent(load_config(["debug"], {"shield.rules": "safe_corridor", "shield.mode": "off"}), *spaces)
    assert off.model.verdict_head is not None and not off.planner.imagine_masked
    for overrides in ({"shield.rules": "safe_corridor", "shield.imagine": False}, {}):
        agent = Agent(load_config(["debug"], overrides), *spaces)
        assert agent.model.verdict_head is None and not agent.planner.imagine_masked
    # end to end: the verdict loss is logged and the actor imagines under it
    run = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--env", "worldmodel/SafeCorridor-v0", "--rules", "safe_corridor",
                 "--logdir", str(run), "--steps", "300"]) == 0
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["loss/verdict"] < 4 * 0.7  # 4 actions: below chance (log 2 each) after 300 steps
    assert 0.0 <= last["imag_forbidden"] < 1.0


def test_narrow_mask_keeps_the_rules_word_where_the_guess_leaves_nothing():
    import torch

    from worldmodel.dists import narrow_mask
    exact = torch.tensor([[True, True, False], [True, False, False]])
    learned = torch.tensor([[True, False, True], [False, True, True]])
    # row 0: both allow action 0 only; row 1: nothing in common -> the rules' own mask
    assert narrow_mask(exact, learned, (3,)).tolist() == [[True, False, False], [True, False, False]]
    # per head: head 1 (2 actions) has something in common, head 0 does not
    exact2 = torch.tensor([[True, False, True, True, False]])
    learned2 = torch.tensor([[False, True, False, True, True]])
    assert narrow_mask(exact2, learned2, (3, 2)).tolist() == [[True, False, True, True, False]]


def test_acting_under_learned_verdicts_lowers_the_proposal_risk():
    """The agent's own proposal (actor masked by its learned verdicts) avoids what its
    world model predicts the rules forbid, without the shield's mask; the proposal risk
    is measured on that proposal, so it falls as the verdicts are learned."""
    import torch

    from planners.actor_critic import ActorCritic

    class Model:  # the learned verdict forbids action 1 where feat[0] > 0
        verdict_head = True

        def feat(self, state):
            return state["feat"]

        def allowed(self, feat):
            p = torch.ones(feat.shape[0], 3)
            p[:, 1] = (feat[:, 0] <= 0).float() * 0.9 + 0.05
            return p

    torch.manual_seed(0)
    feat = torch.randn(512, 8)
    positive = feat[:, 0] > 0
    exact = torch.ones(512, 3, dtype=torch.bool)
    exact[:, 1] = ~positive  # the rules agree with the learned verdict
    ac = ActorCritic(8, 3, (3,), **AC_KW)
    ac.imagine_masked = True
    action, _ = ac.act(Model(), {"feat": feat}, None)  # no shield mask: the agent's own judgement
    assert action[positive, 1].sum() == 0 and action[~positive, 1].sum() > 0
    _, info = ac.act(Model(), {"feat": feat}, exact)
    assert info["proposal_risk"].max() < 1e-6  # it never proposes what the rules forbid
    ac.imagine_masked = False  # the bare actor: about a third of its mass on action 1
    action, info = ac.act(Model(), {"feat": feat}, None)
    assert action[positive, 1].sum() > 0
    _, info = ac.act(Model(), {"feat": feat}, exact)
    assert 0.2 < info["proposal_risk"][positive].mean() < 0.5
    # the learned verdicts forbid everything in a head: the rules' mask decides alone
    class Blind(Model):
        def allowed(self, feat):
            return torch.zeros(feat.shape[0], 3)
    ac.imagine_masked = True
    action, _ = ac.act(Blind(), {"feat": feat}, exact)
    assert action[positive, 1].sum() == 0 and action.sum() == 512
