"""Reverse-time samplers for the IR-SDE, as small functions over a :class:`~engine.sde.Schedule`.

Every sampler takes ``denoiser(x_t, t) -> x̂_0`` (batched: any leading dims, t a Python int that is the
same for the whole batch), the degraded frame ``mu`` (broadcastable against x), the starting state
``x_T`` (normally ``μ + λ z``), the number of network evaluations ``steps`` and an optional
``callback(done, total)`` run after each evaluation (it may raise to cancel).  Fresh noise is drawn
with ``mu``'s shape and broadcast, so ensemble members that share μ also share every noise draw: their
spread then measures only how the models disagree (identical members give identical samples).  ``steps`` always counts
network evaluations: the samplers visit the trained integer steps of :func:`timesteps` and never
rebuild the schedule, so the network only sees noise levels it was trained on.

- :func:`posterior`: exact Gaussian posterior jumps x_t → x_s (with all T steps this is the reference
  code's "posterior sampling"; jumping to s = 0 returns x̂_0 exactly);
- :func:`ddim`: the deterministic (η = 0) jump with the same x̂_0;
- :func:`em`: the reference Euler–Maruyama discretisation of the reverse SDE (each jump of k trained
  steps uses a step of k·dt; with ``steps = T`` it is the original IR-SDE sampler).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from .sde import Schedule

Denoiser = Callable[[torch.Tensor, int], torch.Tensor]
Callback = Optional[Callable[[int, int], None]]

SAMPLERS = ("posterior", "ddim", "em")


def timesteps(s: Schedule, steps: int) -> list[int]:
    """The descending grid T = t_0 > t_1 > … > t_steps = 0 of trained steps used with ``steps`` evaluations."""
    if not 1 <= int(steps) <= s.T:
        raise ValueError("steps must be between 1 and %d (got %r)" % (s.T, steps))
    grid = np.round(np.linspace(s.T, 0, int(steps) + 1)).astype(int)
    return [int(v) for v in grid]


def start_state(s: Schedule, mu: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_T = μ + λ z."""
    return mu + s.lam * noise


def posterior_step(s: Schedule, xt: torch.Tensor, mu: torch.Tensor, x0_hat: torch.Tensor, t: int, u: int,
                   noise: Optional[torch.Tensor]) -> torch.Tensor:
    """Exact Gaussian posterior jump from step t to step u < t given x̂_0 (noise=None gives the mean)."""
    at, au = float(s.a[t]), float(s.a[u])
    r = at / au
    den = 1.0 - at * at
    mean = mu + (r * (1.0 - au * au) / den) * (xt - mu) + (au * (1.0 - r * r) / den) * (x0_hat - mu)
    if noise is None or u == 0:
        return mean
    std = s.lam * math.sqrt(max((1.0 - r * r) * (1.0 - au * au) / den, 0.0))
    return mean + std * noise


def ddim_step(s: Schedule, xt: torch.Tensor, mu: torch.Tensor, x0_hat: torch.Tensor, t: int, u: int) -> torch.Tensor:
    """Deterministic jump x_u = μ + a_u (x̂_0 − μ) + (σ̄_u / σ̄_t)(x_t − μ − a_t (x̂_0 − μ))."""
    ratio = float(s.sigma_bar[u] / s.sigma_bar[t])
    return mu + float(s.a[u]) * (x0_hat - mu) + ratio * (xt - mu - float(s.a[t]) * (x0_hat - mu))


def em_step(s: Schedule, xt: torch.Tensor, mu: torch.Tensor, x0_hat: torch.Tensor, t: int, u: int,
            noise: Optional[torch.Tensor]) -> torch.Tensor:
    """Euler–Maruyama step of the reverse SDE from t to u: x − (θ_t(μ − x) + σ_t² ε̂/σ̄_t) h + σ_t sqrt(h) z."""
    h = (t - u) * s.dt
    eps_hat = (xt - mu - float(s.a[t]) * (x0_hat - mu)) / float(s.sigma_bar[t])
    x = xt - (float(s.theta[t]) * (mu - xt) + float(s.sigma[t]) ** 2 * eps_hat / float(s.sigma_bar[t])) * h
    if noise is not None and u > 0:
        x = x + float(s.sigma[t]) * math.sqrt(h) * noise
    return x


def _run(kind: str, s: Schedule, denoiser: Denoiser, mu: torch.Tensor, x: torch.Tensor, steps: int,
         generator: Optional[torch.Generator], callback: Callback) -> torch.Tensor:
    grid = timesteps(s, steps)
    x0_hat = x
    for i, (t, u) in enumerate(zip(grid[:-1], grid[1:])):
        x0_hat = denoiser(x, t)
        if callback is not None:
            callback(i + 1, len(grid) - 1)
        if u == 0:
            return x0_hat if kind != "em" else em_step(s, x, mu, x0_hat, t, u, None)
        noise = None
        if kind != "ddim":
            noise = torch.randn(mu.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        if kind == "posterior":
            x = posterior_step(s, x, mu, x0_hat, t, u, noise)
        elif kind == "ddim":
            x = ddim_step(s, x, mu, x0_hat, t, u)
        else:
            x = em_step(s, x, mu, x0_hat, t, u, noise)
    return x


def posterior(s: Schedule, denoiser: Denoiser, mu: torch.Tensor, x_T: torch.Tensor, steps: int,
              generator: Optional[torch.Generator] = None, callback: Callback = None) -> torch.Tensor:
    """Posterior sampling over ``steps`` evaluations; the last jump (to t = 0) returns x̂_0."""
    return _run("posterior", s, denoiser, mu, x_T, steps, generator, callback)


def ddim(s: Schedule, denoiser: Denoiser, mu: torch.Tensor, x_T: torch.Tensor, steps: int,
         generator: Optional[torch.Generator] = None, callback: Callback = None) -> torch.Tensor:
    """Deterministic (η = 0) sampling: for a fixed x_T the result does not depend on ``generator``."""
    return _run("ddim", s, denoiser, mu, x_T, steps, generator, callback)


def em(s: Schedule, denoiser: Denoiser, mu: torch.Tensor, x_T: torch.Tensor, steps: int,
       generator: Optional[torch.Generator] = None, callback: Callback = None) -> torch.Tensor:
    """Euler–Maruyama reverse SDE (the original IR-SDE sampler when ``steps = T``)."""
    return _run("em", s, denoiser, mu, x_T, steps, generator, callback)


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """Look a sampler up by name (``posterior``, ``ddim`` or ``em``)."""
    table = {"posterior": posterior, "ddim": ddim, "em": em}
    if name not in table:
        raise ValueError("unknown sampler %r (choose from %s)" % (name, ", ".join(SAMPLERS)))
    return table[name]
