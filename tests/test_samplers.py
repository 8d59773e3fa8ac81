"""Samplers (numpy): posterior jumps, DDIM, Euler–Maruyama, the callback dict."""
import math

import numpy as np

from engine.samplers import ddim, em, posterior, start_state, timesteps
from engine.schedule import make_schedule

S = make_schedule(lam=30 / 255)


def _setup(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    mu = np.full((n,), 0.3)
    x0 = np.full((n,), 0.7)
    return rng, mu, x0


def _noise(seed):
    rng = np.random.default_rng(seed)
    return lambda shape: rng.standard_normal(shape)


def test_timesteps_are_a_subgrid_of_trained_steps():
    for n in (1, 2, 5, 7, 100):
        grid = timesteps(S, n)
        assert grid[0] == 100 and grid[-1] == 0 and len(grid) == n + 1
        assert all(a > b for a, b in zip(grid, grid[1:]))
    assert timesteps(S, 100) == list(range(100, -1, -1))


def test_one_step_posterior_returns_x0_hat():
    rng, mu, _ = _setup()
    xt = start_state(S, mu, rng.standard_normal(mu.shape))
    x0_hat = rng.random(mu.shape)
    np.testing.assert_array_equal(posterior(lambda x, t: x0_hat, xt, mu, S, steps=1), x0_hat)


def test_posterior_over_all_steps_equals_the_one_step_rule():
    rng, mu, _ = _setup(64)
    def den(x, t):
        return 0.5 * (x + mu) + 0.01 * t  # any deterministic x̂0 model
    xT = start_state(S, mu, rng.standard_normal(mu.shape))
    out = posterior(den, xT, mu, S, steps=100, noise=_noise(5))
    # reference "posterior sampling": A = exp(−θ_t dt), B = a_t, C = a_{t−1}
    z, x = _noise(5), xT.copy()
    for t in range(100, 0, -1):
        xh = den(x, t)
        if t == 1:
            x = xh
            break
        A, B, C = math.exp(-S.theta[t] * S.dt), S.a[t], S.a[t - 1]
        mean = mu + A * (1 - C ** 2) / (1 - B ** 2) * (x - mu) + C * (1 - A ** 2) / (1 - B ** 2) * (xh - mu)
        var = (1 - A ** 2) * (1 - C ** 2) / (1 - B ** 2) * S.lam ** 2
        x = mean + math.sqrt(var) * z(x.shape)
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-6)


def test_posterior_jump_with_true_x0_reproduces_the_marginal():
    rng, mu, x0 = _setup(40000)
    xT = start_state(S, mu, rng.standard_normal(mu.shape))
    seen = []
    # two jumps: 100 -> 50 -> 0; stop after the first and look at x_50
    posterior(lambda x, t: (seen.append(x.copy()) or x0), xT, mu, S, steps=2, noise=_noise(1))
    x50 = seen[1]
    assert abs(float(x50.mean()) - (0.3 + 0.4 * S.a[50])) < 4 * S.sigma_bar[50] / 200
    assert abs(float(x50.std()) / S.sigma_bar[50] - 1) < 0.02


def test_ddim_is_deterministic_and_differs_from_posterior():
    rng, mu, x0 = _setup(16)
    xT = start_state(S, mu, rng.standard_normal(mu.shape))
    def den(x, t):
        return 0.2 * x + 0.8 * x0
    a = ddim(den, xT, mu, S, steps=10, noise=_noise(1))
    b = ddim(den, xT, mu, S, steps=10, noise=_noise(2))
    np.testing.assert_array_equal(a, b)
    c = posterior(den, xT, mu, S, steps=10, noise=_noise(2))
    assert not np.allclose(a, c)


def test_em_with_the_true_x0_converges_to_it():
    rng, mu, x0 = _setup(4000)
    xT = start_state(S, mu, rng.standard_normal(mu.shape))
    out = em(lambda x, t: x0, xT, mu, S, steps=100, noise=_noise(3))
    assert abs(float(out.mean()) - 0.7) < 0.01 and float(out.std()) < 0.02


def test_callback_reports_every_evaluation_with_its_estimate():
    _, mu, x0 = _setup(4)
    xT = start_state(S, mu, np.zeros_like(mu))
    for fn in (posterior, ddim, em):
        seen = []
        fn(lambda x, t: x0 + t, xT, mu, S, steps=7, noise=_noise(0), callback=seen.append)
        assert [d["i"] for d in seen] == list(range(7)) and all(d["steps"] == 7 for d in seen)
        assert [d["t"] for d in seen] == timesteps(S, 7)[:-1]
        np.testing.assert_array_equal(seen[2]["denoised"], x0 + seen[2]["t"])
