import torch

from planners.returns import ReturnNormalizer, lambda_returns


def test_lambda_returns_hand_computed():
    reward = torch.tensor([[1.0, 2.0]])
    cont = torch.tensor([[1.0, 1.0]])
    value = torch.tensor([[0.0, 10.0, 20.0]])
    ret = lambda_returns(reward, cont, value, gamma=0.9, lam=0.5)
    # R1 = 2 + 0.9 * 20 = 20;  R0 = 1 + 0.9 * (0.5 * 10 + 0.5 * 20) = 14.5
    assert torch.allclose(ret, torch.tensor([[14.5, 20.0]]))


def test_lambda_returns_stop_at_termination():
    ret = lambda_returns(torch.tensor([[1.0, 5.0]]), torch.tensor([[0.0, 1.0]]),
                         torch.tensor([[0.0, 100.0, 100.0]]), gamma=0.99, lam=0.95)
    assert torch.isclose(ret[0, 0], torch.tensor(1.0))  # nothing after a terminal state counts


def test_lambda_one_is_monte_carlo_and_zero_is_td():
    r, c, v = torch.tensor([[1.0, 1.0, 1.0]]), torch.ones(1, 3), torch.tensor([[0.0, 2.0, 4.0, 8.0]])
    mc = lambda_returns(r, c, v, 1.0, 1.0)
    assert torch.allclose(mc[0, 0], torch.tensor(3.0 + 8.0))
    td = lambda_returns(r, c, v, 1.0, 0.0)
    assert torch.allclose(td[0], torch.tensor([3.0, 5.0, 9.0]))


def test_return_normalizer_percentile_range():
    norm = ReturnNormalizer(rate=1.0)
    norm.update(torch.arange(101, dtype=torch.float32))  # P5 = 5, P95 = 95
    assert abs(norm.scale - 90.0) < 1e-3
    norm.update(torch.zeros(10) + 0.1)  # small range: never scale advantages up
    assert norm.scale == 1.0


def test_lambda_returns_stop_where_the_data_ends():
    reward, cont, value = torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3), torch.tensor([[0.0, 10.0, 20.0, 30.0]])
    stop = torch.tensor([[False, True, False]])  # the data ends at s_2: R_1 bootstraps from v_2 alone
    ret = lambda_returns(reward, cont, value, gamma=0.9, lam=0.5, stop=stop)
    # R2 = 3 + 0.9 * 30 = 30;  R1 = 2 + 0.9 * 20 = 20;  R0 = 1 + 0.9 * (0.5 * 10 + 0.5 * 20) = 14.5
    assert torch.allclose(ret, torch.tensor([[14.5, 20.0, 30.0]]))
    # without the stop, R1 = 2 + 0.9 * (0.5 * 20 + 0.5 * 30) = 24.5
    assert torch.isclose(lambda_returns(reward, cont, value, 0.9, 0.5)[0, 1], torch.tensor(24.5))


def test_lambda_returns_match_the_recursion_with_gradients():
    """The vectorised form equals R_t = r_t + g c_t ((1 - l_t) v_{t+1} + l_t R_{t+1}) step by
    step, stops included, and passes gradients to reward and value as the recursion does."""
    g = torch.Generator().manual_seed(0)
    N, H, gamma, lam = 5, 7, 0.97, 0.9
    reward = torch.randn(N, H, generator=g, requires_grad=True)
    value = torch.randn(N, H + 1, generator=g, requires_grad=True)
    cont = (torch.rand(N, H, generator=g) > 0.2).float()
    stop = torch.rand(N, H, generator=g) > 0.7
    want = torch.empty(N, H)
    grads = []
    for fn in ("loop", "lambda_returns"):
        if fn == "loop":
            last, outs = value[:, H], []
            for t in reversed(range(H)):
                lt = lam * (~stop[:, t]).float()
                last = reward[:, t] + gamma * cont[:, t] * ((1 - lt) * value[:, t + 1] + lt * last)
                outs.append(last)
            ret = torch.stack(outs[::-1], 1)
            want = ret.detach()
        else:
            ret = lambda_returns(reward, cont, value, gamma, lam, stop)
            torch.testing.assert_close(ret.detach(), want, rtol=1e-6, atol=1e-6)
        reward.grad = value.grad = None
        (ret * torch.arange(1.0, H + 1)).sum().backward()
        grads.append((reward.grad.clone(), value.grad.clone()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_quantiles_match_torch_quantile():
    from planners.returns import quantiles
    x = torch.randn(1013, generator=torch.Generator().manual_seed(0))
    levels = (0.0, 0.05, 0.5, 0.95, 1.0)
    assert torch.allclose(quantiles(x, levels), torch.quantile(x, torch.tensor(levels)), atol=1e-6)


def test_return_normalizer_ignores_nonfinite_returns_and_round_trips():
    norm = ReturnNormalizer(rate=0.5)
    norm.update(torch.tensor([float("nan")] * 4))  # a broken first batch leaves no trace
    assert norm.scale == 1.0
    norm.update(torch.arange(101, dtype=torch.float32))  # then the first finite one starts the EMA
    assert abs(norm.scale - 90.0) < 1e-3
    norm.update(torch.tensor([0.0, float("inf")]))
    assert abs(norm.scale - 90.0) < 1e-3
    norm.update(torch.zeros(101))  # EMA: halfway to a zero range
    assert abs(norm.scale - 45.0) < 1e-3
    loaded = ReturnNormalizer(rate=0.5)
    loaded.load_state_dict(norm.state_dict())
    assert abs(loaded.scale - 45.0) < 1e-3
    fresh = ReturnNormalizer()
    fresh.load_state_dict(ReturnNormalizer().state_dict())
    assert fresh.range is None and fresh.scale == 1.0
    kept = norm.range  # a load into a used normaliser writes in place (a CUDA graph holds it)
    norm.load_state_dict(ReturnNormalizer().state_dict())
    assert norm.range is kept and norm.scale == 1.0
    norm.update(torch.arange(101, dtype=torch.float32))
    assert abs(norm.scale - 90.0) < 1e-3
