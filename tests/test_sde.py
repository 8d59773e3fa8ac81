"""IR-SDE schedule, closed-form marginals and losses."""
import math

import numpy as np
import pytest
import torch

from engine.sde import (eps_to_x0, make_schedule, marginal_sample, ml_loss, net_input, optimal_prev,
                        schedule_from_dict, x0_to_eps)

torch.set_num_threads(1)  # 2 shared cores: oversubscribed threads slow tiny nets 10x


def test_schedule_matches_reference_definition():
    s = make_schedule(lam=30 / 255)
    assert s.T == 100 and len(s.theta) == 101
    assert np.all(np.diff(s.theta) > 0) and s.theta[0] < 1e-3 and s.theta[-1] > 0.999
    assert s.theta_bar[0] == 0 and math.isclose(s.a[0], 1.0)
    assert math.isclose(s.a[-1], 0.005, rel_tol=1e-9)
    np.testing.assert_allclose(s.sigma ** 2, 2 * s.lam ** 2 * s.theta)
    np.testing.assert_allclose(s.sigma_bar[-1], s.lam * math.sqrt(1 - 0.005 ** 2))
    assert abs(s.a[10] - 0.985) < 0.002 and abs(s.a[50] - 0.36) < 0.01 and abs(s.a[70] - 0.09) < 0.01


def test_marginals_match_monte_carlo_of_the_forward_sde():
    s = make_schedule(lam=0.2)
    n, sub = 20000, 5
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    x0, mu = 0.8, 0.3
    x = np.full(n, x0)
    for t in range(1, s.T + 1):  # Euler–Maruyama with 5 sub-steps per integer step
        h = s.dt / sub
        for _ in range(sub):
            x = x + s.theta[t] * (mu - x) * h + s.sigma[t] * math.sqrt(h) * rng.standard_normal(n)
        if t in (10, 50, 70, 100):
            mean = mu + (x0 - mu) * s.a[t]
            std = s.sigma_bar[t]
            assert abs(float(x.mean()) - mean) < 4 * std / math.sqrt(n) + 2e-3, t
            assert abs(float(x.std()) / std - 1) < 0.03, t
    # and the closed-form sampler draws the same law
    xs = marginal_sample(s, torch.full((n,), x0), torch.full((n,), mu), torch.full((n,), 50),
                         torch.randn(n, generator=g))
    assert abs(float(xs.mean()) - (mu + (x0 - mu) * s.a[50])) < 4 * s.sigma_bar[50] / math.sqrt(n)
    assert abs(float(xs.std()) / s.sigma_bar[50] - 1) < 0.02


def test_noise_and_x0_parameterisations_invert_each_other():
    s = make_schedule()
    g = torch.Generator().manual_seed(1)
    mu, x0 = torch.rand(4, 8, generator=g), torch.rand(4, 8, generator=g)
    t = torch.tensor([1, 20, 60, 100])
    xt = marginal_sample(s, x0, mu, t, torch.randn(4, 8, generator=g))
    eps = x0_to_eps(s, xt, mu, x0, t)
    torch.testing.assert_close(eps_to_x0(s, xt, mu, eps, t), x0.clamp(0, 1), atol=1e-4, rtol=0)


def test_ml_loss_is_smallest_for_the_true_x0():
    s = make_schedule()
    g = torch.Generator().manual_seed(2)
    mu, x0 = torch.rand(64, 16, generator=g), torch.rand(64, 16, generator=g)
    t = torch.randint(1, 101, (64,), generator=g)
    xt = marginal_sample(s, x0, mu, t, torch.randn(64, 16, generator=g))
    good = ml_loss(s, xt, x0, mu, t, x0_to_eps(s, xt, mu, x0, t))
    bad = ml_loss(s, xt, x0, mu, t, x0_to_eps(s, xt, mu, (x0 + 0.1).clamp(0, 1), t))
    assert float(good) < 0.5 * float(bad)
    # at t = 1 the target x*_0 is x0 itself
    one = torch.ones(64, dtype=torch.long)
    torch.testing.assert_close(optimal_prev(s, xt, x0, mu, one), x0, atol=1e-5, rtol=0)


def test_wiener_input_scaling_is_the_linear_mmse_estimate():
    """c_t (x_t − μ) is the Wiener estimate of x_0 − μ: 1 at t = 0, ≈ 0 at t = T, and its error is
    smaller than that of any other scale (checked by Monte Carlo at a mid step)."""
    s = make_schedule(precond="wiener", sigma_data=0.125)
    assert s.c_in[0] == pytest.approx(1.0) and s.c_in[-1] < 0.01 and np.all(np.diff(s.c_in) <= 1e-12)
    assert np.all(make_schedule().c_in == 1.0)
    g = torch.Generator().manual_seed(5)
    t = 60
    r = 0.125 * torch.randn(200_000, generator=g)  # x_0 − μ
    y = s.a[t] * r + s.sigma_bar[t] * torch.randn(200_000, generator=g)  # x_t − μ
    mse = lambda c: float(((c * y - r) ** 2).mean())  # noqa: E731
    assert mse(s.c_in[t]) < min(mse(0.9 * s.c_in[t]), mse(1.1 * s.c_in[t]), mse(1.0), mse(0.0))
    xt, mu = torch.rand(2, 3, 1, 4, 4, generator=g), torch.rand(2, 3, 1, 4, 4, generator=g)
    inp = net_input(s, xt, mu, t)
    torch.testing.assert_close(inp[:, :, :1], (xt - mu) * float(s.c_in[t]))
    torch.testing.assert_close(inp[:, :, 1:], mu)
    tt = torch.tensor([[1, 50, 100], [100, 100, 1]])
    per = net_input(s, xt, mu, tt)[:, :, :1]
    torch.testing.assert_close(per[1, 2], (xt - mu)[1, 2] * float(s.c_in[1]))
    torch.testing.assert_close(per[0, 2], (xt - mu)[0, 2] * float(s.c_in[100]))


def test_schedule_dict_round_trip_and_old_cards():
    for sch in (make_schedule(), make_schedule(lam=0.2, precond="wiener", sigma_data=0.2)):
        back = schedule_from_dict(sch.as_dict())
        assert back.as_dict() == sch.as_dict() and np.array_equal(back.c_in, sch.c_in)
    assert "input" not in make_schedule().as_dict()  # cards written before preconditioning read unchanged
    with pytest.raises(ValueError, match="preconditioning"):
        make_schedule(precond="edm")
