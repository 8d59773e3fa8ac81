"""IR-SDE training mathematics in torch (Luo et al., ICML 2023): marginals, the reverse-step targets,
the maximum-likelihood loss and the network input of a training batch.  The schedule itself (numpy) is
:mod:`engine.schedule`, re-exported here."""
from __future__ import annotations

import numpy as np
import torch

from .schedule import (DEFAULT_EPS, DEFAULT_LAMBDA, DEFAULT_SIGMA_DATA, DEFAULT_T, PRECONDS, Schedule,  # noqa: F401
                       cosine_theta, make_schedule, schedule_from_dict)

NORMS = ("l1", "l2")  # per-pixel penalty of the losses: L1 (median-seeking) or L2 (mean-seeking, what PSNR measures)


def _take(arr: np.ndarray, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gather schedule values at integer steps ``t`` and shape them to broadcast against ``like``."""
    vals = torch.as_tensor(arr, dtype=like.dtype, device=like.device)[t.long()]
    return vals.reshape(tuple(t.shape) + (1,) * (like.dim() - t.dim()))


def net_input(s: Schedule, xt: torch.Tensor, mu: torch.Tensor, t) -> torch.Tensor:
    """The network input ``concat(c_t (x_t − μ), μ)`` along dim 2 of (B, K, 1, H, W) tensors; ``t`` is
    an int or integer steps for the leading dims (training; inference uses :func:`engine.schedule.net_input`)."""
    c = float(s.c_in[t]) if isinstance(t, int) else _take(s.c_in, t, xt)
    return torch.cat([(xt - mu) * c, mu], dim=2)


def marginal_sample(s: Schedule, x0: torch.Tensor, mu: torch.Tensor, t: torch.Tensor,
                    noise: torch.Tensor) -> torch.Tensor:
    """Draw x_t | x_0 in closed form; ``t`` holds integer steps for the leading dims of ``x0``."""
    a = _take(s.a, t, x0)
    sb = _take(s.sigma_bar, t, x0)
    return mu + (x0 - mu) * a + sb * noise


def x0_to_eps(s: Schedule, xt: torch.Tensor, mu: torch.Tensor, x0_hat: torch.Tensor, t) -> torch.Tensor:
    """Noise implied by an x̂_0 prediction: ε̂ = (x_t − μ − a_t (x̂_0 − μ)) / σ̄_t (t ≥ 1)."""
    if isinstance(t, int):
        return (xt - mu - s.a[t] * (x0_hat - mu)) / s.sigma_bar[t]
    return (xt - mu - _take(s.a, t, xt) * (x0_hat - mu)) / _take(s.sigma_bar, t, xt)


def eps_to_x0(s: Schedule, xt: torch.Tensor, mu: torch.Tensor, eps_hat: torch.Tensor, t) -> torch.Tensor:
    """x̂_0 implied by a noise prediction, clipped to [0, 1] (1/a_T = 1/ε amplifies errors)."""
    if isinstance(t, int):
        x0 = mu + (xt - mu - s.sigma_bar[t] * eps_hat) / s.a[t]
    else:
        x0 = mu + (xt - mu - _take(s.sigma_bar, t, xt) * eps_hat) / _take(s.a, t, xt)
    return x0.clamp(0.0, 1.0)


def optimal_prev(s: Schedule, xt: torch.Tensor, x0: torch.Tensor, mu: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x*_{t−1}: the mean of the true reverse transition (the ML loss target; t ≥ 1)."""
    A = torch.exp(-_take(s.theta, t, xt) * s.dt)
    B = _take(s.a, t, xt)
    C = _take(s.a, t - 1, xt)
    den = 1.0 - B ** 2
    return mu + A * (1 - C ** 2) / den * (xt - mu) + C * (1 - A ** 2) / den * (x0 - mu)


def em_mean(s: Schedule, xt: torch.Tensor, mu: torch.Tensor, eps_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The model's one-step Euler–Maruyama mean x̂_{t−1} = x_t − (θ_t (μ − x_t) + σ_t² ε̂ / σ̄_t) dt."""
    th = _take(s.theta, t, xt)
    sg = _take(s.sigma, t, xt)
    sb = _take(s.sigma_bar, t, xt)
    return xt - (th * (mu - xt) + sg ** 2 * eps_hat / sb) * s.dt


def ml_loss(s: Schedule, xt: torch.Tensor, x0: torch.Tensor, mu: torch.Tensor, t: torch.Tensor,
            eps_hat: torch.Tensor, norm: str = "l1") -> torch.Tensor:
    """The reference maximum-likelihood loss |x̂_{t−1} − x*_{t−1}| (mean over all elements; the reference
    uses L1, ``norm="l2"`` squares the difference instead)."""
    return penalty(em_mean(s, xt, mu, eps_hat, t) - optimal_prev(s, xt, x0, mu, t), norm)


def penalty(err: torch.Tensor, norm: str = "l1") -> torch.Tensor:
    """Mean absolute (``l1``) or mean squared (``l2``) error over all elements."""
    return err.abs().mean() if norm == "l1" else err.square().mean()
