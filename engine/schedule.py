"""The discrete IR-SDE schedule (numpy only: inference needs no torch).

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
The training losses (torch) are in :mod:`engine.sde`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_T = 100
DEFAULT_EPS = 0.005
DEFAULT_LAMBDA = 30.0 / 255.0
PRECONDS = ("none", "wiener")
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
        d: dict[str, float | str] = {"lambda": self.lam, "T": self.T, "eps": self.eps}
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


def net_input(s: Schedule, xt: np.ndarray, mu: np.ndarray, t: int) -> np.ndarray:
    """The network input ``concat(c_t (x_t − μ), μ)`` along axis 2 of (B, K, 1, H, W) arrays at step ``t``."""
    return np.concatenate([(xt - mu) * np.float32(s.c_in[t]), np.broadcast_to(mu, xt.shape)], axis=2)
