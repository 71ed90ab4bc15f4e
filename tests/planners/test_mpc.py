"""Latent MPC (CEM, MPPI) on toy world models with a known optimum, the shield in
imagination, warm start, and the CLI end to end on the debug preset."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.spaces import action_spec
from planners.actor_critic import ActorCritic
from planners.cem import CEM
from planners.mppi import MPPI
from symbolic import RuleSet

PLANNERS = {"cem": CEM, "mppi": MPPI}


class LineModel:
    """x' = x + clip(a, -1, 1), reward -(x')^2; feat = [x]. The best first action from x
    is clip(-x, -1, 1) (then stand still). `unsafe_below`: the cost head flags x' below it."""

    def __init__(self, unsafe_below: float | None = None) -> None:
        self.unsafe_below = unsafe_below

    def feat(self, state):
        return state["x"]

    def imagine(self, state, policy, horizon, time_major=False):
        x, feats, actions = state["x"], [state["x"]], []
        for t in range(horizon):
            a = policy[:, t] if torch.is_tensor(policy) else policy(feats[-1])
            x = x + a.clamp(-1, 1)
            feats.append(x)
            actions.append(a)
        return torch.stack(feats, 0 if time_major else 1), torch.stack(actions, 0 if time_major else 1), {"x": x}

    def reward(self, feat):
        return -feat[..., 0] ** 2

    def cont(self, feat):
        return torch.ones(feat.shape[:-1])

    def cost(self, feat):
        if self.unsafe_below is None:
            return torch.zeros(feat.shape[:-1])
        return (feat[..., 0] < self.unsafe_below).float()

    def decode(self, feat):
        return {"obs": feat}


class ChainModel:
    """A discrete chain: the reward of a step is `pay` dotted with the one-hot action;
    feat = [steps, last reward]."""

    def __init__(self, pay: list[float]) -> None:
        self.pay = torch.tensor(pay)

    def feat(self, state):
        return state["s"]

    def imagine(self, state, policy, horizon, time_major=False):
        s, feats, actions = state["s"], [state["s"]], []
        for t in range(horizon):
            a = policy[:, t] if torch.is_tensor(policy) else policy(feats[-1])
            s = torch.stack([s[:, 0] + 1, (a * self.pay).sum(-1)], -1)
            feats.append(s)
            actions.append(a)
        return torch.stack(feats, 0 if time_major else 1), torch.stack(actions, 0 if time_major else 1), {"s": s}

    def reward(self, feat):
        return feat[..., 1]

    def cont(self, feat):
        return torch.ones(feat.shape[:-1])

    def cost(self, feat):
        return torch.zeros(feat.shape[:-1])

    def decode(self, feat):
        return {"obs": feat}


def actor_critic(feat_dim: int, spec) -> ActorCritic:
    sizes = spec.sizes if spec.discrete else ()
    return ActorCritic(feat_dim, spec.dim, sizes, units=8, layers=1, horizon=3, gamma=1.0, lam=0.95,
                       entropy=3e-4, unimix=0.01, min_std=0.1, max_std=1.0, slow_rate=0.02, slowreg=1.0,
                       grad="auto", bins=31, actor_lr=1e-4, critic_lr=1e-4, actor_clip=100.0,
                       critic_clip=100.0, retnorm_rate=0.01)


BOX = action_spec(gym.spaces.Box(-1.0, 1.0, (1,), np.float32))


def line_planner(kind: str = "cem", **kwargs):
    opts = dict(samples=256, horizon=3, iterations=4, elites=16, policy_fraction=0.1, seed=0)
    opts.update(kwargs)
    return PLANNERS[kind](actor_critic(1, BOX), BOX, **opts)


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_continuous_finds_the_optimal_first_action(kind):
    torch.manual_seed(0)
    x0 = torch.tensor([[0.6], [-0.3], [1.5], [-2.0]])
    action, info = line_planner(kind).act(LineModel(), {"x": x0}, explore=False)
    assert action.shape == (4, 1)
    assert torch.allclose(action, (-x0).clamp(-1, 1), atol=0.1), action
    assert info["plan_return"].shape == (4,)


@pytest.mark.parametrize("kind", ["cem", "mppi"])
@pytest.mark.parametrize("space,best", [
    (gym.spaces.Discrete(3), [0, 1, 0]),                   # only action 1 pays
    (gym.spaces.MultiDiscrete([3, 2]), [0, 0, 1, 1, 0]),   # only (2, 0) pays
])
def test_discrete_finds_the_paying_action_and_stays_one_hot(kind, space, best):
    spec = action_spec(space)
    model = ChainModel(best)
    if spec.kind == "multidiscrete":  # pays only for the pair: reward = head0[2] * head1[0]
        model.imagine = _pair_imagine(model)
    planner = PLANNERS[kind](actor_critic(2, spec), spec, samples=64, horizon=3, iterations=3,
                             elites=8, policy_fraction=0.1, seed=1)
    start = {"s": torch.zeros(5, 2)}
    for explore in (False, True):
        action, info = planner.act(model, start, explore=explore)
        assert action.shape == (5, spec.dim)
        assert set(action.unique().tolist()) <= {0.0, 1.0}
        for head in action.split(list(spec.sizes), -1):  # exactly one choice per head
            assert torch.all(head.sum(-1) == 1)
        assert np.all(spec.to_env(action.numpy()) >= 0)
        assert info["preferences"].shape == (5, spec.dim)
    greedy, _ = planner.act(model, start, explore=False)
    assert torch.all(greedy == torch.tensor(best, dtype=torch.float32))


def _pair_imagine(model):
    def imagine(state, policy, horizon, time_major=False):
        s, feats, actions = state["s"], [state["s"]], []
        for t in range(horizon):
            a = policy[:, t] if torch.is_tensor(policy) else policy(feats[-1])
            s = torch.stack([s[:, 0] + 1, a[:, 2] * a[:, 3]], -1)
            feats.append(s)
            actions.append(a)
        return torch.stack(feats, 0 if time_major else 1), torch.stack(actions, 0 if time_major else 1), {"s": s}
    return imagine


def test_discrete_respects_the_real_step_mask():
    spec = action_spec(gym.spaces.Discrete(3))
    planner = CEM(actor_critic(2, spec), spec, samples=32, horizon=2, iterations=2, elites=4, seed=0)
    mask = torch.tensor([[True, False, True]])  # the paying action 1 is forbidden now
    action, _ = planner.act(ChainModel([0.0, 1.0, 0.0]), {"s": torch.zeros(1, 2)}, mask, explore=True)
    assert action[0, 1] == 0


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_more_samples_never_find_a_worse_plan_on_average(kind):
    def mean_return(samples: int) -> float:
        found = []
        for seed in range(8):
            planner = line_planner(kind, samples=samples, iterations=1, elites=2, policy_fraction=0.0, seed=seed)
            _, info = planner.act(LineModel(), {"x": torch.tensor([[0.8], [-1.7]])}, explore=False)
            found.append(info["plan_return"].mean().item())  # the toy is exact: predicted = true
        return float(np.mean(found))

    assert mean_return(512) >= mean_return(8)


FLOOR = """
signals:
  x = obs[0] in [-10, 10]
rule floor (hard) "x stays at or above LIMIT": x >= LIMIT
"""


@pytest.mark.parametrize("kind", ["cem", "mppi"])
@pytest.mark.parametrize("via", ["rules", "cost_head"])
def test_unsafe_plans_are_never_chosen_when_a_safe_one_exists(kind, via):
    # unconstrained, the best first action from x = 1 is -1 (to x' = 0); x' >= 0.5 allows -0.5
    if via == "rules":
        rules, model = RuleSet.from_string(FLOOR.replace("LIMIT", "0.5")), LineModel()
    else:  # symbolic rules that always hold; the cost head flags x' < 0.5
        rules, model = RuleSet.from_string(FLOOR.replace("LIMIT", "-10")), LineModel(unsafe_below=0.5)
    planner = line_planner(kind, rules=rules)
    x0 = torch.ones(3, 1)
    for explore in (False, True):
        action, info = planner.act(model, {"x": x0}, explore=explore)
        if not explore:
            assert torch.all(x0 + action >= 0.5), action
            assert torch.allclose(action, torch.full_like(action, -0.5), atol=0.15)
        assert torch.all((info["safe_fraction"] > 0) & (info["safe_fraction"] < 1))
        assert torch.all(info["predicted_risk"] == 0)


def test_a_fake_rules_object_filters_discrete_plans():
    class NoAction1:  # any use of action 1 breaks the only (hard) rule
        hard = torch.tensor([True])
        observation_space = None

        def check_trajectories(self, obs, actions, history=None, hard_only=False):
            bad = torch.as_tensor(actions == 1)  # (N, H) env-native ints
            return type("Check", (), {"feasible": ~bad.any(1), "violations": bad.sum(1),
                                      "robustness": -bad.sum(1).double(), "violated": bad[:, None]})

    spec = action_spec(gym.spaces.Discrete(3))
    planner = MPPI(actor_critic(2, spec), spec, samples=64, horizon=3, iterations=3, elites=8,
                   rules=NoAction1(), seed=0)
    action, info = planner.act(ChainModel([0.0, 1.0, 0.5]), {"s": torch.zeros(2, 2)}, explore=False)
    assert torch.all(action.argmax(-1) == 2)  # the best action that is allowed
    assert torch.all(info["predicted_risk"] == 0)


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_all_rejected_falls_back_to_the_most_robust_plan_without_nan(kind):
    # x0 = 1 < 2.5 already breaks the rule at step 0, so every plan is rejected; only pushing
    # up twice at full force (x2 = 3) avoids a second violation, at step 2
    planner = line_planner(kind, rules=RuleSet.from_string(FLOOR.replace("LIMIT", "2.5")))
    action, info = planner.act(LineModel(), {"x": torch.ones(2, 1)}, explore=False)
    assert torch.isfinite(action).all() and torch.isfinite(planner.mean).all()
    assert torch.all(info["safe_fraction"] == 0)
    assert torch.all(info["predicted_risk"] == 1)
    assert torch.all(action > 0.5)  # ranked by fewest violations, not by return (which says -1)


def test_warm_start_shifts_the_plan_and_reset_clears_it():
    planner = line_planner("cem", horizon=4)
    planner.act(LineModel(), {"x": torch.tensor([[3.0], [-3.0]])}, explore=False)
    plan = planner.last_plan  # (B, H, A), fitted
    assert plan.shape == (2, 4, 1)
    assert torch.equal(planner.mean[:, :-1], plan[:, 1:]) and torch.all(planner.mean[:, -1] == 0)
    assert plan[0, 1, 0] < -0.5 < 0.5 < plan[1, 1, 0]  # x = +-3 needs several full pushes
    planner.reset(torch.tensor([True, False]))
    assert torch.all(planner.mean[0] == 0) and torch.equal(planner.mean[1, :-1], plan[1, 1:])


def _fixed_actor(planner, mean: float) -> None:
    """Make the continuous actor ignore its input: Normal(mean, min_std = 0.1)."""
    head = planner.actor.net.head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([float(np.arctanh(mean)), -30.0]))  # std -> min_std


def test_prior_bonus_is_the_actors_weighted_log_likelihood():
    planner = line_planner("mppi", horizon=2, prior=0.5)
    _fixed_actor(planner, 0.5)
    feats = torch.zeros(3, 1, 1)                                        # time-major (H+1, N, F)
    actions = torch.tensor([[[0.7], [-0.5]]])                           # (N, H, A)
    weight = torch.tensor([[1.0], [0.9]])                               # (H, N)
    bonus = planner._prior_bonus(feats, actions, None, weight)
    # log N(a; 0.5, 0.1) = -((a - 0.5) / 0.1)^2 / 2 - log(0.1) - log(2 pi) / 2; scale 1 before any update
    logn = lambda a: -((a - 0.5) / 0.1) ** 2 / 2 - np.log(0.1) - 0.5 * np.log(2 * np.pi)  # noqa: E731
    expected = 0.5 * (1.0 * logn(0.7) + 0.9 * logn(-0.5))
    assert bonus.shape == (1,)
    assert bonus.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_the_policy_prior_pulls_the_plan_toward_the_actor(kind):
    # from x = 2 the model's optimum is -1, -1, 0; the actor insists on +0.5
    first = {}
    for prior in (0.0, 0.1, 10.0):
        planner = line_planner(kind, prior=prior, seed=3)
        _fixed_actor(planner, 0.5)
        action, _ = planner.act(LineModel(), {"x": torch.full((2, 1), 2.0)}, explore=False)
        first[prior] = action.mean().item()
    assert first[0.0] == pytest.approx(-1.0, abs=0.1)                  # no prior: the model's optimum
    assert first[10.0] == pytest.approx(0.5, abs=0.1)                  # a strong prior: about the actor's action
    assert first[0.0] < first[0.1] < first[10.0]                      # in between, in order


def test_a_negative_prior_is_refused():
    with pytest.raises(ValueError, match="planner.prior"):
        line_planner("cem", prior=-0.1)


def test_state_dict_is_the_actor_critics():
    planner = line_planner("mppi")
    keys = set(planner.state_dict())
    assert keys == set(planner.actor_critic.state_dict())
    fresh = line_planner("cem")
    fresh.load_state_dict(planner.state_dict())
    assert torch.equal(fresh.actor.net.head.weight, planner.actor.net.head.weight)


@pytest.mark.parametrize("env,rules", [("CartPole-v1", "cartpole_track"), ("Pendulum-v1", "")])
def test_cli_trains_and_evaluates_with_mpc(env, rules, tmp_path, capsys):
    from worldmodel.cli import main
    run = str(tmp_path / "run")
    argv = ["train", "--preset", "debug", "--env", env, "--planner", "cem", "--logdir", run, "--steps", "150"]
    assert main(argv + (["--rules", rules] if rules else [])) == 0
    other = "mppi" if rules else "actor"  # the same checkpoint acts with any planner
    assert main(["eval", "--run", run, "--episodes", "2", "--planner", other, "--planner.samples", "32"]) == 0
    out = capsys.readouterr().out
    assert "return over 2 episodes" in out
    assert ("planner calibration" in out) == bool(rules)
    # no veto, the planner under the learned verdicts (discrete with rules); none without rules
    code = main(["eval", "--run", run, "--episodes", "2", "--shield", "learned", "--planner.samples", "32"])
    assert code == (0 if rules else 2)
    if not rules:
        assert "trained without rules" in capsys.readouterr().err


@pytest.mark.parametrize("dynamics", ["gru", "ssm", "hybrid"])
def test_mode_latent_scores_each_plan_without_noise(dynamics):
    """latent=mode: equal candidates get equal scores (their ranking is by action alone);
    with sampled latents the same plan scores differently from copy to copy."""
    from envs.spaces import ObsSpec, ObsKey
    from worldmodel.model import WorldModel
    torch.manual_seed(0)
    spec = ObsSpec((ObsKey("obs", "vector", (3,), "Box(3,)"),))
    model = WorldModel(spec, 1, deter=16, stoch=4, classes=4, hidden=16, unimix=0.01, units=16, layers=1,
                       cnn_depth=4, bins=31, free_nats=1.0, loss_scales={}, dynamics=dynamics, window=4)
    torch.nn.init.normal_(model.reward_head.head.weight)  # zero at init: give rewards a spread
    post, _ = model.rssm.observe(torch.randn(1, 5, model.vec_encoder.out_dim), torch.randn(1, 5, 1),
                                 torch.tensor([[True, False, False, False, False]]))
    start = {k: v[:, -1].repeat_interleave(64, 0) for k, v in post.items()}
    plan = torch.rand(1, 3, 1).expand(64, 3, 1) * 2 - 1  # one plan, 64 copies
    spread = {}
    for latent in ("sample", "mode"):
        planner = CEM(actor_critic(model.feat_dim, BOX), BOX, samples=64, horizon=3, latent=latent)
        ret = planner._score(model, start, plan, 1)[0]
        spread[latent] = float(ret.max() - ret.min())
    assert spread["mode"] == 0.0
    assert spread["sample"] > 0.0
    with pytest.raises(ValueError, match="planner.latent"):
        CEM(actor_critic(model.feat_dim, BOX), BOX, latent="mean")


@pytest.mark.parametrize("kind", ["cem", "mppi"])
@pytest.mark.parametrize("limit", ["0.5", "-0.7", "2.5"])
def test_checking_the_best_candidates_first_picks_the_same_plans(kind, limit):
    """The shield decodes only the 2 x elites best candidates when enough of them are safe;
    the plans must be exactly those of checking every candidate (limit 0.5: some safe,
    -0.7: the top ones are safe, 2.5: none are, so all are checked)."""
    rules = RuleSet.from_string(FLOOR.replace("LIMIT", limit))
    checked = []
    outs = {}
    for factor in (2, 10**6):
        torch.manual_seed(0)  # the same actor weights (its proposals are candidates too)
        planner = line_planner(kind, rules=rules)
        planner.check_factor = factor
        check = planner.shield.check
        planner.shield.check = lambda *a, **k: (checked.append((factor, a[1].shape[0])), check(*a, **k))[1]
        x = torch.linspace(-1.5, 1.5, 4)[:, None]
        runs = []
        for _ in range(3):
            action, info = planner.act(LineModel(), {"x": x}, explore=True)
            runs.append((action, planner.mean.clone(), info["predicted_risk"]))
            x = x + action.clamp(-1, 1)
        outs[factor] = runs
    for (a1, m1, r1), (a2, m2, r2) in zip(outs[2], outs[10**6]):
        assert torch.equal(a1, a2) and torch.equal(m1, m2) and torch.equal(r1, r2)
    sizes = [n for f, n in checked if f == 2]
    if limit == "-0.7":  # mostly safe plans: often only 2 x 16 of 256 per env were decoded
        assert 4 * 32 in sizes
    if limit == "2.5":  # nothing is safe: in each of the 4 iterations the other 224 after the
        # first 32 once, then all at once
        assert sizes[:8] == [4 * 32, 4 * 224] * 4 and set(sizes[8:]) == {4 * 256}


class NovelRightModel(LineModel):
    """LineModel whose world model is unsure about everything right of the origin."""

    def novelty(self, feat):
        return feat[..., 0].clamp(min=0.0)


@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_exploring_plans_seek_the_novelty_bonus_and_greedy_ones_do_not(kind):
    torch.manual_seed(0)
    planner = line_planner(kind)
    planner.actor_critic.explore = 5.0  # behavior.explore
    x0 = torch.zeros(2, 1)
    explored, _ = planner.act(NovelRightModel(), {"x": x0}, explore=True)
    planner.reset(torch.ones(2, dtype=torch.bool))
    greedy, _ = planner.act(NovelRightModel(), {"x": x0}, explore=False)
    assert bool((explored > 0.5).all()), explored  # the bonus outweighs -(x')^2: go right
    assert torch.allclose(greedy, torch.zeros_like(greedy), atol=0.15), greedy  # the task alone: stay
