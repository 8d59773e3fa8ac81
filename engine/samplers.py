"""Reverse-time samplers for the IR-SDE (numpy), each one short loop over a schedule.

Every sampler takes ``model(x_t, t) -> x̂_0`` (arrays of any leading dims, ``t`` a Python int shared by
the batch), the degraded frame ``mu`` (broadcastable against x), the starting state ``x`` (normally
``μ + λ z``, :func:`start_state`), the schedule and the number of network evaluations ``steps``;
``noise(shape)`` draws the fresh Gaussian noise of the stochastic samplers (drawn with ``mu``'s shape and
broadcast, so ensemble members that share μ share every draw and their spread measures only how the
models disagree) and ``callback(info)`` runs after each evaluation with
``{"x": x_t, "i": i, "t": t, "denoised": x̂_0, "steps": steps}`` (it may raise to cancel; a preview can
show ``denoised``).  The samplers visit the trained integer steps of :func:`timesteps` and never rebuild
the schedule, so the network only sees noise levels it was trained on.

- :func:`posterior`: exact Gaussian posterior jumps x_t → x_u (with all T steps this is the reference
  code's "posterior sampling"; the jump to u = 0 returns x̂_0 exactly);
- :func:`ddim`: the deterministic (η = 0) jump with the same x̂_0;
- :func:`em`: the reference Euler–Maruyama discretisation of the reverse SDE (a jump of k trained steps
  uses a step of k·dt; with ``steps = T`` it is the original IR-SDE sampler).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .schedule import Schedule

Model = Callable[[np.ndarray, int], np.ndarray]
Callback = Callable[[dict], None] | None
Noise = Callable[[tuple], np.ndarray] | None

SAMPLERS = ("posterior", "ddim", "em")


def timesteps(s: Schedule, steps: int) -> list[int]:
    """The descending grid T = t_0 > t_1 > … > t_steps = 0 of trained steps used with ``steps`` evaluations."""
    if not 1 <= int(steps) <= s.T:
        raise ValueError("steps must be between 1 and %d (got %r)" % (s.T, steps))
    return [int(v) for v in np.round(np.linspace(s.T, 0, int(steps) + 1)).astype(int)]


def start_state(s: Schedule, mu: np.ndarray, z: np.ndarray) -> np.ndarray:
    """x_T = μ + λ z."""
    return mu + np.float32(s.lam) * z


def _default_noise(shape: tuple) -> np.ndarray:
    return np.random.default_rng().standard_normal(shape, dtype=np.float32)


def _report(callback: Callback, x, i, t, denoised, steps) -> None:
    if callback is not None:
        callback({"x": x, "i": i, "t": t, "denoised": denoised, "steps": steps})


def posterior(model: Model, x: np.ndarray, mu: np.ndarray, s: Schedule, steps: int, noise: Noise = None,
              callback: Callback = None) -> np.ndarray:
    """Posterior sampling over ``steps`` evaluations; the last jump (to t = 0) returns x̂_0."""
    noise = noise or _default_noise
    grid = timesteps(s, steps)
    for i, (t, u) in enumerate(zip(grid[:-1], grid[1:])):
        x0 = model(x, t)
        _report(callback, x, i, t, x0, steps)
        if u == 0:
            return x0
        at, au = float(s.a[t]), float(s.a[u])
        r, den = at / au, 1.0 - at * at
        mean = mu + np.float32(r * (1 - au * au) / den) * (x - mu) + np.float32(au * (1 - r * r) / den) * (x0 - mu)
        std = s.lam * math.sqrt(max((1 - r * r) * (1 - au * au) / den, 0.0))
        x = mean + np.float32(std) * noise(np.shape(mu))
    return x


def ddim(model: Model, x: np.ndarray, mu: np.ndarray, s: Schedule, steps: int, noise: Noise = None,
         callback: Callback = None) -> np.ndarray:
    """Deterministic (η = 0) sampling: x_u = μ + a_u (x̂_0 − μ) + (σ̄_u / σ̄_t)(x_t − μ − a_t (x̂_0 − μ))."""
    grid = timesteps(s, steps)
    for i, (t, u) in enumerate(zip(grid[:-1], grid[1:])):
        x0 = model(x, t)
        _report(callback, x, i, t, x0, steps)
        if u == 0:
            return x0
        ratio = np.float32(s.sigma_bar[u] / s.sigma_bar[t])
        x = mu + np.float32(s.a[u]) * (x0 - mu) + ratio * (x - mu - np.float32(s.a[t]) * (x0 - mu))
    return x


def em(model: Model, x: np.ndarray, mu: np.ndarray, s: Schedule, steps: int, noise: Noise = None,
       callback: Callback = None) -> np.ndarray:
    """Euler–Maruyama: x − (θ_t (μ − x) + σ_t² ε̂ / σ̄_t) h + σ_t sqrt(h) z with h = (t − u) dt and
    ε̂ = (x_t − μ − a_t (x̂_0 − μ)) / σ̄_t; no noise on the last step."""
    noise = noise or _default_noise
    grid = timesteps(s, steps)
    for i, (t, u) in enumerate(zip(grid[:-1], grid[1:])):
        x0 = model(x, t)
        _report(callback, x, i, t, x0, steps)
        h = (t - u) * s.dt
        eps = (x - mu - np.float32(s.a[t]) * (x0 - mu)) / np.float32(s.sigma_bar[t])
        x = x - (np.float32(s.theta[t]) * (mu - x) + np.float32(s.sigma[t] ** 2 / s.sigma_bar[t]) * eps) * np.float32(h)
        if u > 0:
            x = x + np.float32(s.sigma[t] * math.sqrt(h)) * noise(np.shape(mu))
    return x


def get_sampler(name: str) -> Callable[..., np.ndarray]:
    """Look a sampler up by name (``posterior``, ``ddim`` or ``em``)."""
    table = {"posterior": posterior, "ddim": ddim, "em": em}
    if name not in table:
        raise ValueError("unknown sampler %r (choose from %s)" % (name, ", ".join(SAMPLERS)))
    return table[name]
