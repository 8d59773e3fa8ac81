"""The mean-reverting SDE of IR-SDE (Luo et al., ICML 2023): schedule, marginals and training losses.

Forward process ``dx = θ_t (μ − x) dt + σ_t dw`` with ``σ_t² = 2 λ² θ_t`` (stationary std λ), where μ is
the speckled B-mode frame and x_0 the clean target.  The discrete schedule follows the reference code
(see ``shared/reference/science.md``): cosine θ over T = 100 integer steps, ``θ̄_t = Σ_{i≤t} θ_i − θ_0``,
``dt = −ln(ε) / θ̄_T`` so that ``a_T = ε``, ``a_t = exp(−θ̄_t dt)`` and

    x_t | x_0 ~ N(μ + (x_0 − μ) a_t, λ² (1 − a_t²)),   σ̄_t = λ sqrt(1 − a_t²).

All schedule arrays are float64 numpy arrays indexed by the integer step t = 0..T.

Input preconditioning (``precond="wiener"``): the network's first input channel is not the raw
x_t − μ but ``c_t (x_t − μ)`` with ``c_t = a_t σ_d² / (a_t² σ_d² + σ̄_t²)``, the Wiener (linear MMSE)
estimate of x_0 − μ from x_t − μ = a_t (x_0 − μ) + σ̄_t ε for a residual of std σ_d.  At small t it is
x_t − μ (c_0 = 1); at t = T, where x_t − μ is almost pure noise (a_T = ε), it shrinks to ≈ 0, so the
one-step sampler's network sees a clean (0, μ) input instead of a λ-sized noise field that convolutions
(whose weights cannot depend on t) would have to cancel.  ``precond="none"`` is the reference input.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_T = 100
DEFAULT_EPS = 0.005
DEFAULT_LAMBDA = 30.0 / 255.0
PRECONDS = ("none", "wiener")
NORMS = ("l1", "l2")  # per-pixel penalty of the losses: L1 (median-seeking) or L2 (mean-seeking, what PSNR measures)
#: std of x_0 − μ (clean minus speckled) in the training data: input PSNR ≈ 18.1 dB → RMS ≈ 0.125
DEFAULT_SIGMA_DATA = 0.125


@dataclass(frozen=True)
class Schedule:
    """Discrete IR-SDE schedule (build it with :func:`make_schedule`)."""

    lam: float
    T: int
    eps: float
    theta: np.ndarray      # θ_t, t = 0..T
    theta_bar: np.ndarray  # θ̄_t (θ̄_0 = 0)
    dt: float
    a: np.ndarray          # a_t = exp(−θ̄_t dt); a_0 = 1, a_T = ε
    sigma: np.ndarray      # σ_t = λ sqrt(2 θ_t)
    sigma_bar: np.ndarray  # σ̄_t = λ sqrt(1 − a_t²)
    c_in: np.ndarray       # input scale of x_t − μ (all ones without preconditioning)
    precond: str = "none"
    sigma_data: float = DEFAULT_SIGMA_DATA

    def as_dict(self) -> dict:
        """The numbers that define the schedule (for model cards / checkpoints)."""
        d = {"lambda": self.lam, "T": self.T, "eps": self.eps}
        if self.precond != "none":
            d.update({"input": self.precond, "sigma_data": self.sigma_data})
        return d


def cosine_theta(T: int = DEFAULT_T, s: float = 0.008) -> np.ndarray:
    """θ_t = 1 − ā(t+1), t = 0..T, with ā the cosine schedule over n = T + 2 (reference code)."""
    n = T + 2
    k = np.arange(n + 1, dtype=np.float64)
    abar = np.cos(((k / n) + s) / (1 + s) * math.pi * 0.5) ** 2
    abar = abar / abar[0]
    return 1.0 - abar[1:T + 2]


def make_schedule(lam: float = DEFAULT_LAMBDA, T: int = DEFAULT_T, eps: float = DEFAULT_EPS,
                  precond: str = "none", sigma_data: float = DEFAULT_SIGMA_DATA) -> Schedule:
    """Build the schedule for stationary std ``lam`` (images in [0, 1]), ``T`` steps, ``a_T = eps``;
    ``precond`` ("none" | "wiener") and ``sigma_data`` set the network's input scaling (module doc)."""
    if not (lam > 0 and T >= 1 and 0 < eps < 1):
        raise ValueError("invalid schedule: need lambda > 0, T >= 1, 0 < eps < 1")
    if precond not in PRECONDS:
        raise ValueError("unknown input preconditioning %r (choose from %s)" % (precond, ", ".join(PRECONDS)))
    if not sigma_data > 0:
        raise ValueError("sigma_data must be positive")
    theta = cosine_theta(T)
    theta_bar = np.cumsum(theta) - theta[0]
    dt = -math.log(eps) / theta_bar[-1]
    a = np.exp(-theta_bar * dt)
    sigma = lam * np.sqrt(2.0 * theta)
    sigma_bar = lam * np.sqrt(np.clip(1.0 - a ** 2, 0.0, None))
    if precond == "wiener":
        c_in = a * sigma_data ** 2 / (a ** 2 * sigma_data ** 2 + sigma_bar ** 2)
    else:
        c_in = np.ones_like(a)
    return Schedule(float(lam), int(T), float(eps), theta, theta_bar, float(dt), a, sigma, sigma_bar, c_in,
                    precond, float(sigma_data))


def schedule_from_dict(d: dict) -> Schedule:
    """Inverse of :meth:`Schedule.as_dict` (cards written before preconditioning existed read as "none")."""
    return make_schedule(d["lambda"], d["T"], d["eps"], precond=d.get("input", "none"),
                         sigma_data=d.get("sigma_data", DEFAULT_SIGMA_DATA))


def _take(arr: np.ndarray, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Gather schedule values at integer steps ``t`` and shape them to broadcast against ``like``."""
    vals = torch.as_tensor(arr, dtype=like.dtype, device=like.device)[t.long()]
    return vals.reshape(tuple(t.shape) + (1,) * (like.dim() - t.dim()))


def net_input(s: Schedule, xt: torch.Tensor, mu: torch.Tensor, t) -> torch.Tensor:
    """The network input ``concat(c_t (x_t − μ), μ)`` along dim 2 of (B, K, 1, H, W) tensors; ``t`` is
    an int or integer steps for the leading dims."""
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
