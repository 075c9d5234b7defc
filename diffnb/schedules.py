r"""Forward noising processes and the conversions between them.

The book measures time by the **VE noise variance** ``t``: :math:`x_t = x_0 + \sqrt t\,\xi`. A VP/DDPM state
:math:`x = \sqrt{\bar\alpha}\,x_0 + \sqrt{1-\bar\alpha}\,\xi` is the VE state :math:`x/\sqrt{\bar\alpha}` at
:math:`t = (1-\bar\alpha)/\bar\alpha` (the inverse signal-to-noise ratio), so theory derived for VE applies
to DDPM-trained image models on one time axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from diffnb._validation import ArrayLike


def _positive_finite(value: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return arr


def _check_alpha_bar(alpha_bar: ArrayLike) -> None:
    values = alpha_bar.detach().cpu().numpy() if isinstance(alpha_bar, torch.Tensor) else np.asarray(alpha_bar)
    if not np.all(np.isfinite(values)) or np.any(values <= 0) or np.any(values > 1):
        raise ValueError(f"alpha_bar must lie in (0, 1], got {alpha_bar}")


def vp_to_ve_time(alpha_bar: ArrayLike) -> ArrayLike:
    """VE noise variance ``t = (1 - alpha_bar) / alpha_bar`` of a VP state with signal level ``alpha_bar``."""
    _check_alpha_bar(alpha_bar)
    return (1 - alpha_bar) / alpha_bar


def ve_to_vp_alpha_bar(t: ArrayLike) -> ArrayLike:
    """Signal level ``alpha_bar = 1 / (1 + t)`` of the VP state that corresponds to VE variance ``t``."""
    values = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t
    if not np.all(np.isfinite(values)) or np.any(np.asarray(values) < 0):
        raise ValueError(f"t must be a non-negative finite noise variance, got {t}")
    return 1 / (1 + t)


def vp_to_ve_state(x: ArrayLike, alpha_bar: ArrayLike) -> ArrayLike:
    """Map a VP state to the VE state with the same posterior: ``x / sqrt(alpha_bar)``."""
    _check_alpha_bar(alpha_bar)
    return x / alpha_bar**0.5


def ve_to_vp_state(x: ArrayLike, t: ArrayLike) -> ArrayLike:
    """Map a VE state at variance ``t`` to the VP state: ``x * sqrt(alpha_bar)``, ``alpha_bar = 1/(1+t)``."""
    return x * ve_to_vp_alpha_bar(t) ** 0.5


def ve_score_from_vp(
    vp_score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    r"""Turn a VP score ``s_vp(x_vp, alpha_bar)`` into the VE score ``s(x, t)`` of the same model.

    With :math:`x_{vp} = \sqrt{\bar\alpha}\,x` one has
    :math:`s(x, t) = \sqrt{\bar\alpha}\,s_{vp}(\sqrt{\bar\alpha}\,x)`,
    so the VE Jacobian is :math:`\bar\alpha` times the VP Jacobian.
    """

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        alpha_bar = 1 / (1 + t)
        root = alpha_bar.sqrt().reshape(-1, *([1] * (x.ndim - 1))) if alpha_bar.ndim else alpha_bar.sqrt()
        return root * vp_score(root * x, alpha_bar)

    return score


@dataclass(frozen=True)
class VESchedule:
    r"""Geometric variance-exploding schedule, :math:`\sigma(u) = \sigma_{min}(\sigma_{max}/\sigma_{min})^u` on [0, 1].

    The defaults are those of the memorization paper's code (``sigma_min=0.01``, ``sigma_max=50``), so the VE
    variance ``t = sigma(u)**2`` runs from 1e-4 to 2500.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def __post_init__(self) -> None:
        _positive_finite(self.sigma_min, "sigma_min")
        _positive_finite(self.sigma_max, "sigma_max")
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min={self.sigma_min} must be below sigma_max={self.sigma_max}")

    def sigma(self, u: ArrayLike) -> ArrayLike:
        """Noise standard deviation at schedule time ``u``."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** u

    def variance(self, u: ArrayLike) -> ArrayLike:
        """VE noise variance ``t = sigma(u)**2`` at schedule time ``u``."""
        return self.sigma(u) ** 2

    def time_of_variance(self, t: ArrayLike) -> ArrayLike:
        """Schedule time ``u`` at which the noise variance equals ``t``."""
        log = torch.log if isinstance(t, torch.Tensor) else np.log
        return log(t**0.5 / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)


@dataclass(frozen=True)
class VPSchedule:
    """Discrete variance-preserving (DDPM) schedule with ``T`` steps, ``alpha_bar[k] = prod_{j<=k} (1 - beta_j)``.

    Build it with :meth:`linear` (Ho et al.; the papers' image models: ``beta`` from 1e-4 to 0.02, T = 1000)
    or :meth:`cosine` (Nichol & Dhariwal). Steps are 0-based.
    """

    betas: np.ndarray
    alpha_bar: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        betas = np.asarray(self.betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0 or np.any(betas <= 0) or np.any(betas >= 1):
            raise ValueError("betas must be a non-empty 1-d array with entries in (0, 1)")
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alpha_bar", np.cumprod(1 - betas))

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> VPSchedule:
        """Linear ``beta`` schedule."""
        if T < 1:
            raise ValueError(f"T must be a positive number of steps, got {T}")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        return cls(np.linspace(beta_start, beta_end, T))

    @classmethod
    def named(cls, kind: str, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> VPSchedule:
        """The schedule called ``kind``: ``"linear"`` (with ``beta_start``, ``beta_end``) or ``"cosine"``."""
        if kind == "linear":
            return cls.linear(T, beta_start, beta_end)
        if kind == "cosine":
            return cls.cosine(T)
        raise ValueError(f"schedule must be 'linear' or 'cosine', got {kind!r}")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> VPSchedule:
        """Cosine schedule: ``alpha_bar(u) = cos((u + s) / (1 + s) * pi / 2)**2``."""
        if T < 1:
            raise ValueError(f"T must be a positive number of steps, got {T}")
        u = np.linspace(0, 1, T + 1)
        f = np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
        betas = np.clip(1 - f[1:] / f[:-1], 1e-8, max_beta)
        return cls(betas)

    @property
    def T(self) -> int:
        """Number of steps."""
        return self.betas.size

    def ve_time(self, step: ArrayLike) -> np.ndarray:
        """VE noise variance of (0-based) step ``step``."""
        return vp_to_ve_time(self.alpha_bar[np.asarray(step)])

    def sigma(self, step: ArrayLike) -> np.ndarray:
        """VP noise standard deviation ``sqrt(1 - alpha_bar)`` at ``step``."""
        return np.sqrt(1 - self.alpha_bar[np.asarray(step)])

    def step_of_ve_time(self, t: ArrayLike) -> np.ndarray:
        """The step whose VE variance is closest to ``t`` (in log scale)."""
        t = _positive_finite(t, "t")
        grid = np.log(self.ve_time(np.arange(self.T)))
        return np.abs(grid[None, :] - np.log(t).reshape(-1, 1)).argmin(axis=1).reshape(np.shape(t))
