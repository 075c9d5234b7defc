r"""Linear manifolds: the synthetic data of both papers.

* :class:`LinearManifold` — the spectral-gaps paper's random embedding,
  :math:`x = Fz`, :math:`z \sim N(0, I_m)`, :math:`F = [\sigma_1 G_1, \dots, \sigma_K G_K]/\sqrt d` with
  i.i.d. standard normal :math:`G_k` of shape ``(d, m_k)``. The covariance :math:`C = FF^\top` has one
  Marchenko–Pastur-like bulk per block.
* :class:`AxisAlignedManifold` — the memorization paper's set: coordinate ``i`` has standard deviation
  ``s_i`` (blocks of equal ``s`` plus a small normal scale), optionally every sample projected to the unit
  sphere.

Both are seeded and return float64 NumPy arrays of shape ``(n, d)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def _check_blocks(block_dims: Sequence[int], scales: Sequence[float]) -> tuple[tuple[int, ...], np.ndarray]:
    dims = tuple(int(m) for m in block_dims)
    scale_array = np.asarray(scales, dtype=np.float64)
    if len(dims) == 0:
        raise ValueError("block_dims must list at least one block dimension")
    if scale_array.shape != (len(dims),):
        raise ValueError(
            f"scales must have one entry per block: {len(dims)} block_dims but scales has shape {scale_array.shape}"
        )
    if any(m < 1 for m in dims) or any(m != float(b) for m, b in zip(dims, block_dims, strict=True)):
        raise ValueError(f"block_dims must be positive integers, got {list(block_dims)}")
    if not np.all(np.isfinite(scale_array)) or np.any(scale_array <= 0):
        raise ValueError(f"scales must be positive and finite, got {scale_array.tolist()}")
    return dims, scale_array


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_n(n: int) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer number of samples, got {n!r}")
    return int(n)


@dataclass(frozen=True)
class LinearManifold:
    """A Gaussian linear manifold with a random embedding and one variance per block of latents.

    Parameters
    ----------
    d
        Ambient dimension.
    block_dims
        Latent dimension ``m_k`` of each block; ``m = sum(block_dims) <= d``.
    scales
        Scale ``sigma_k`` of each block (its variance is ``sigma_k**2``).
    seed
        Seed of the embedding ``F``.

    Examples
    --------
    >>> manifold = LinearManifold(d=100, block_dims=(20, 20), scales=(1.0, 0.3), seed=0)
    >>> manifold.F.shape, manifold.alphas
    ((100, 40), array([0.2, 0.2]))
    >>> manifold.sample(5, seed=1).shape
    (5, 100)
    """

    d: int
    block_dims: tuple[int, ...]
    scales: tuple[float, ...]
    seed: int = 0
    F: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        dims, scales = _check_blocks(self.block_dims, self.scales)
        if not isinstance(self.d, (int, np.integer)) or self.d < 1:
            raise ValueError(f"d must be a positive integer, got {self.d!r}")
        if sum(dims) > self.d:
            raise ValueError(f"sum(block_dims)={sum(dims)} exceeds the ambient dimension d={self.d}")
        object.__setattr__(self, "block_dims", dims)
        object.__setattr__(self, "scales", tuple(float(s) for s in scales))
        rng = np.random.default_rng(self.seed)
        blocks = [s * rng.standard_normal((self.d, m)) for m, s in zip(dims, scales, strict=True)]
        object.__setattr__(self, "F", np.concatenate(blocks, axis=1) / np.sqrt(self.d))

    @property
    def m(self) -> int:
        """Latent dimension."""
        return sum(self.block_dims)

    @property
    def alphas(self) -> np.ndarray:
        """Aspect ratios ``m_k / d``."""
        return np.asarray(self.block_dims, dtype=np.float64) / self.d

    @property
    def sigma2s(self) -> np.ndarray:
        """Block variances ``sigma_k**2``."""
        return np.asarray(self.scales, dtype=np.float64) ** 2

    @property
    def covariance(self) -> np.ndarray:
        """Data covariance ``C = F F^T``, shape ``(d, d)``."""
        return self.F @ self.F.T

    def sample(self, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Draw ``n`` points ``F z``; returns shape ``(n, d)``."""
        z = _rng(seed).standard_normal((_check_n(n), self.m))
        return z @ self.F.T


@dataclass(frozen=True)
class AxisAlignedManifold:
    """The memorization paper's linear manifold: independent coordinates with block-wise scales.

    Parameters
    ----------
    d
        Ambient dimension.
    block_dims
        Dimension of each tangent block (the first coordinates, in order).
    scales
        Standard deviation of each tangent block.
    normal_scale
        Standard deviation of the remaining ``d - sum(block_dims)`` coordinates.
    normalized
        Project every sample to the unit sphere (the official code's ``is_normalized=True``).

    Examples
    --------
    The paper's data-set-size sweep uses ``AxisAlignedManifold(30, (2, 5), (1.0, 0.3), 0.01, normalized=True)``.
    """

    d: int
    block_dims: tuple[int, ...]
    scales: tuple[float, ...]
    normal_scale: float = 0.01
    normalized: bool = False

    def __post_init__(self) -> None:
        dims, scales = _check_blocks(self.block_dims, self.scales)
        if not isinstance(self.d, (int, np.integer)) or self.d < 1:
            raise ValueError(f"d must be a positive integer, got {self.d!r}")
        if sum(dims) > self.d:
            raise ValueError(f"sum(block_dims)={sum(dims)} exceeds the ambient dimension d={self.d}")
        if not np.isfinite(self.normal_scale) or self.normal_scale < 0:
            raise ValueError(f"normal_scale must be non-negative and finite, got {self.normal_scale}")
        object.__setattr__(self, "block_dims", dims)
        object.__setattr__(self, "scales", tuple(float(s) for s in scales))

    @property
    def m(self) -> int:
        """Number of tangent coordinates."""
        return sum(self.block_dims)

    @property
    def coordinate_scales(self) -> np.ndarray:
        """Standard deviation of every coordinate before any projection, shape ``(d,)``."""
        tangent = np.repeat(np.asarray(self.scales), self.block_dims)
        return np.concatenate([tangent, np.full(self.d - self.m, float(self.normal_scale))])

    def block_slices(self) -> list[slice]:
        """Coordinate ranges of the tangent blocks, in order."""
        edges = np.cumsum((0, *self.block_dims))
        return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def sample(self, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Draw ``n`` points; returns shape ``(n, d)``, on the unit sphere when ``normalized``."""
        x = _rng(seed).standard_normal((_check_n(n), self.d)) * self.coordinate_scales
        if self.normalized:
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x
