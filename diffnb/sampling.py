r"""Samplers: the reverse-time SDE and the probability-flow ODE, for any score.

Time is the VE noise variance ``t`` (notation appendix). The forward process :math:`dx = dW_t` (so that
:math:`x_t = x_0 + \sqrt t\,\xi`) has the reverse-time SDE and the probability-flow ODE

.. math::  dx = -s(x, t)\,dt + d\bar W_t, \qquad \frac{dx}{dt} = -\tfrac12\, s(x, t),

integrated from a large ``t`` down to a small one. The SDE is stepped with Euler–Maruyama and the ODE with
Heun's method. A model trained in the VP parametrisation is sampled through the exact change of variables
of :mod:`diffnb.schedules` (``parametrization="vp"``), so both share one integrator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from diffnb._progress import tqdm
from diffnb._validation import check_finite, check_positive_int
from diffnb.schedules import ve_score_from_vp

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SamplingResult:
    """Output of :func:`sample`.

    Parameters
    ----------
    samples
        Final states, shape ``(n, d)``, in the parametrisation of the call.
    recorded_times
        The grid noise levels at which states were recorded (the closest grid point to each one asked for).
    trajectory
        Recorded states, shape ``(len(recorded_times), n, d)``, in the parametrisation of the call.
    """

    samples: torch.Tensor
    recorded_times: np.ndarray
    trajectory: torch.Tensor


def noise_grid(t_max: float, t_min: float, n_steps: int) -> np.ndarray:
    """A decreasing grid of ``n_steps + 1`` noise variances, geometric between ``t_max`` and ``t_min``."""
    if not (np.isfinite(t_max) and np.isfinite(t_min)) or not 0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max, both finite; got t_min={t_min}, t_max={t_max}")
    check_positive_int(n_steps, "n_steps")
    return np.geomspace(t_max, t_min, n_steps + 1)


def sample(
    score_fn: ScoreFn,
    x_init: torch.Tensor,
    times: Sequence[float] | np.ndarray,
    *,
    method: str = "sde",
    parametrization: str = "ve",
    record: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> SamplingResult:
    """Integrate the reverse process from ``times[0]`` down to ``times[-1]``.

    Parameters
    ----------
    score_fn
        ``score_fn(x, t)`` for a batch ``x`` of shape ``(n, d)`` and ``t`` of shape ``(n,)``. With
        ``parametrization="vp"`` it is the VP score ``s_vp(x_vp, alpha_bar)`` instead.
    x_init
        Starting states at ``times[0]``, shape ``(n, d)`` (VP states for ``"vp"``).
    times
        Decreasing VE noise variances; see :func:`noise_grid`.
    method
        ``"sde"`` (reverse-time SDE, Euler–Maruyama) or ``"ode"`` (probability flow, Heun).
    parametrization
        ``"ve"`` or ``"vp"``; states and score follow it, the integration runs in VE variables.
    record
        Noise levels at which to keep the states (the nearest grid point is used, in log scale).
    generator
        Random generator for the SDE noise.
    progress
        Show a progress bar.

    Returns
    -------
    SamplingResult
    """
    if method not in ("sde", "ode"):
        raise ValueError(f"method must be 'sde' or 'ode', got {method!r}")
    if parametrization not in ("ve", "vp"):
        raise ValueError(f"parametrization must be 've' or 'vp', got {parametrization!r}")
    if not isinstance(x_init, torch.Tensor) or x_init.ndim != 2:
        raise ValueError("x_init must be a tensor of shape (n, d)")
    check_finite(x_init, "x_init")
    grid = np.asarray(times, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise ValueError("times must be a 1-d sequence of at least two positive, finite noise variances")
    if np.any(np.diff(grid) >= 0):
        raise ValueError("times must decrease strictly: sampling runs from large noise to small noise")

    ve_score = ve_score_from_vp(score_fn) if parametrization == "vp" else score_fn
    to_ve = (lambda x, t: x * (1 + t) ** 0.5) if parametrization == "vp" else (lambda x, t: x)
    from_ve = (lambda x, t: x / (1 + t) ** 0.5) if parametrization == "vp" else (lambda x, t: x)

    record_steps: list[int] = []
    if record is not None:
        levels = np.atleast_1d(np.asarray(record, dtype=np.float64))
        if levels.ndim != 1 or levels.size == 0 or not np.all(np.isfinite(levels)) or np.any(levels <= 0):
            raise ValueError(f"record must be a 1-d sequence of positive, finite noise variances, got {record!r}")
        wanted = np.log(levels)
        record_steps = sorted({int(np.abs(np.log(grid) - w).argmin()) for w in wanted})
    trajectory = []

    n = x_init.shape[0]
    x = to_ve(x_init, float(grid[0]))
    full = lambda t: torch.full((n,), float(t), dtype=x.dtype, device=x.device)  # noqa: E731
    with torch.no_grad():
        for step in tqdm(range(grid.size), disable=not progress, desc=f"sampling ({method})", leave=False):
            if step in record_steps:
                trajectory.append(from_ve(x, float(grid[step])).clone())
            if step == grid.size - 1:
                break
            t, t_next = float(grid[step]), float(grid[step + 1])
            dt = t - t_next
            s = ve_score(x, full(t))
            if method == "sde":
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                x = x + dt * s + dt**0.5 * noise
            else:
                x_euler = x + 0.5 * dt * s
                x = x + 0.25 * dt * (s + ve_score(x_euler, full(t_next)))
    samples = from_ve(x, float(grid[-1]))
    stacked = torch.stack(trajectory) if trajectory else samples.new_zeros((0, *samples.shape))
    return SamplingResult(samples=samples, recorded_times=grid[record_steps], trajectory=stacked)
