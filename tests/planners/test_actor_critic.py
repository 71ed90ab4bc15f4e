"""The critic's loss on replayed sequences (critic.replay_loss): its targets, hand-computed."""
import pytest
import torch

from planners.actor_critic import ActorCritic


def critic_with_constant_value(bin_index: int | None) -> ActorCritic:
    """bin_index None: the critic as built (a zero output layer: value 0 everywhere)."""
    torch.manual_seed(0)
    ac = ActorCritic(6, 2, (2,), units=8, layers=1, horizon=3, gamma=0.9, lam=0.5, entropy=3e-4, unimix=0.01,
                     min_std=0.1, max_std=1.0, slow_rate=0.02, slowreg=0.0, grad="reinforce", bins=31,
                     actor_lr=1e-4, critic_lr=1e-4, actor_clip=100.0, critic_clip=100.0, retnorm_rate=0.01,
                     replay_loss=0.3)
    if bin_index is None:
        return ac
    with torch.no_grad():  # every state's value: the symexp of one bin
        ac.critic.head.weight.zero_()
        ac.critic.head.bias.fill_(-50.0)
        ac.critic.head.bias[bin_index] = 50.0
    return ac


@pytest.mark.parametrize("terminal", [True, False])
def test_replay_targets_use_real_rewards_and_stop_at_the_episode_end(terminal, monkeypatch):
    ac = critic_with_constant_value(20)
    v = float(ac.value(torch.zeros(1, 6)).detach())
    assert v > 1.0
    seen = {}
    original = ac.twohot.mixture_loss

    def capture(logits, targets):
        seen["ret"] = targets[0][0].clone()
        return original(logits, targets)

    monkeypatch.setattr(ac.twohot, "mixture_loss", capture)
    # one sequence: obs 0..3 real, the episode's last step at 3, then one step of padding
    replay = {"feat": torch.randn(1, 5, 6), "reward": torch.tensor([[0.0, 1.0, 2.0, 3.0, 0.0]]),
              "cont": torch.tensor([[1.0, 1.0, 1.0, 0.0 if terminal else 1.0, 1.0]]),
              "last": torch.tensor([[False, False, False, True, False]]),
              "mask": torch.tensor([[True, True, True, True, False]])}
    loss = ac._replay_loss(replay)
    g, lam = 0.9, 0.5
    r2 = 3.0 + (0.0 if terminal else g * v)  # the last step: a termination ends it, a time limit bootstraps
    r1 = 2.0 + g * ((1 - lam) * v + lam * r2)
    r0 = 1.0 + g * ((1 - lam) * v + lam * r1)
    assert torch.allclose(seen["ret"][0, :3], torch.tensor([r0, r1, r2]), rtol=1e-4)
    assert torch.isfinite(loss) and loss > 0
    # the padded step's target (R_3, which would need a real s_4) carries no weight
    replay["reward"][0, 4] = 1e6
    assert torch.isclose(ac._replay_loss(replay), loss)


def test_replay_loss_moves_the_critic_towards_real_returns():
    ac = critic_with_constant_value(None)
    replay = {"feat": torch.randn(4, 16, 6), "reward": torch.ones(4, 16), "cont": torch.ones(4, 16),
              "last": torch.zeros(4, 16, dtype=torch.bool), "mask": torch.ones(4, 16, dtype=torch.bool)}
    before = float(ac.value(replay["feat"]).mean().detach())
    for group in ac.critic_opt.param_groups:
        group["lr"] = 1e-2
    for _ in range(20):
        ac.critic_opt.zero_grad()
        ac._replay_loss(replay).backward()
        ac._step(ac.critic, ac.critic_opt, 100.0)
    assert float(ac.value(replay["feat"]).mean().detach()) > before + 0.1  # towards targets of about 1.8 (r = 1, gamma 0.9)
