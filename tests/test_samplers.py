"""Samplers: posterior jumps, DDIM, Euler–Maruyama."""
import math

import torch

from engine.samplers import ddim, em, posterior, posterior_step, start_state, timesteps
from engine.sde import make_schedule

torch.set_num_threads(1)  # 2 shared cores: oversubscribed threads slow tiny nets 10x

S = make_schedule(lam=30 / 255)


def _setup(n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.full((n,), 0.3, dtype=torch.float64)
    x0 = torch.full((n,), 0.7, dtype=torch.float64)
    return g, mu, x0


def test_timesteps_are_a_subgrid_of_trained_steps():
    for n in (1, 2, 5, 7, 100):
        grid = timesteps(S, n)
        assert grid[0] == 100 and grid[-1] == 0 and len(grid) == n + 1
        assert all(a > b for a, b in zip(grid, grid[1:]))
    assert timesteps(S, 100) == list(range(100, -1, -1))


def test_posterior_jump_to_zero_returns_x0_hat():
    g, mu, x0 = _setup()
    xt = start_state(S, mu, torch.randn(mu.shape, generator=g, dtype=torch.float64))
    x0_hat = torch.rand(mu.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(posterior_step(S, xt, mu, x0_hat, 37, 0, torch.randn_like(xt)), x0_hat)
    out = posterior(S, lambda x, t: x0_hat, mu, xt, steps=1)
    torch.testing.assert_close(out, x0_hat)


def test_posterior_over_all_steps_equals_the_one_step_rule():
    g, mu, _ = _setup(64)
    den = lambda x, t: 0.5 * (x + mu) + 0.01 * t  # any deterministic x̂0 model
    xT = start_state(S, mu, torch.randn(mu.shape, generator=g, dtype=torch.float64))
    out = posterior(S, den, mu, xT, steps=100, generator=torch.Generator().manual_seed(5))
    # reference "posterior sampling": A = exp(−θ_t dt), B = a_t, C = a_{t−1}
    gen, x = torch.Generator().manual_seed(5), xT.clone()
    for t in range(100, 0, -1):
        xh = den(x, t)
        if t == 1:
            x = xh
            break
        A, B, C = math.exp(-S.theta[t] * S.dt), S.a[t], S.a[t - 1]
        mean = mu + A * (1 - C ** 2) / (1 - B ** 2) * (x - mu) + C * (1 - A ** 2) / (1 - B ** 2) * (xh - mu)
        var = (1 - A ** 2) * (1 - C ** 2) / (1 - B ** 2) * S.lam ** 2
        x = mean + math.sqrt(var) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    torch.testing.assert_close(out, x)


def test_posterior_jump_with_true_x0_reproduces_the_marginal():
    g, mu, x0 = _setup(40000)
    xT = start_state(S, mu, torch.randn(mu.shape, generator=g, dtype=torch.float64))
    x50 = posterior_step(S, xT, mu, x0, 100, 50, torch.randn(mu.shape, generator=g, dtype=torch.float64))
    assert abs(float(x50.mean()) - (0.3 + 0.4 * S.a[50])) < 4 * S.sigma_bar[50] / 200
    assert abs(float(x50.std()) / S.sigma_bar[50] - 1) < 0.02


def test_ddim_is_deterministic_and_ends_at_x0_hat():
    g, mu, x0 = _setup(16)
    xT = start_state(S, mu, torch.randn(mu.shape, generator=g, dtype=torch.float64))
    den = lambda x, t: (0.2 * x + 0.8 * x0)
    a = ddim(S, den, mu, xT, steps=10, generator=torch.Generator().manual_seed(1))
    b = ddim(S, den, mu, xT, steps=10, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    c = posterior(S, den, mu, xT, steps=10, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(a, c)


def test_em_with_the_true_x0_converges_to_it():
    g, mu, x0 = _setup(4000)
    xT = start_state(S, mu, torch.randn(mu.shape, generator=g, dtype=torch.float64))
    out = em(S, lambda x, t: x0, mu, xT, steps=100, generator=g)
    assert abs(float(out.mean()) - 0.7) < 0.01 and float(out.std()) < 0.02


def test_callback_counts_network_evaluations():
    g, mu, x0 = _setup(4)
    xT = start_state(S, mu, torch.zeros_like(mu))
    for fn in (posterior, ddim, em):
        seen = []
        fn(S, lambda x, t: x0, mu, xT, steps=7, generator=g, callback=lambda d, n: seen.append((d, n)))
        assert seen == [(i, 7) for i in range(1, 8)]
