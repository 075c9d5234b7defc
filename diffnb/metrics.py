r"""Distances between sample sets, and tangent and normal coordinates of a linear manifold.

Chapter 8 compares generated samples with the data in the coordinates the geometry suggests:

* :class:`LinearFrame` — orthonormal bases of the tangent space (the column space of the embedding ``F``)
  and of its orthogonal complement, the normal space. A point's **tangent coordinates** locate it along the
  manifold, its **normal coordinates** measure how far off the manifold it is
  (:meth:`LinearFrame.distance`). The tangent basis is the eigenbasis of :math:`C = FF^\top`, ordered by
  decreasing variance, so tangent coordinate ``i`` of the data has variance :math:`\lambda_i`.
* :func:`ks_distances` — the two-sample Kolmogorov–Smirnov statistic of every coordinate (column);
* :func:`sliced_wasserstein` — the sliced Wasserstein distance: the one-dimensional Wasserstein distance
  averaged over random directions, a metric between distributions that stays cheap in any dimension.

Inputs are NumPy arrays or torch tensors with the feature axis last; results are NumPy float64. This module
depends on NumPy and the package's own argument checks only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from diffnb._validation import as_float_array, check_finite_array, check_positive_int

__all__ = ["LinearFrame", "ks_distances", "sliced_wasserstein", "wasserstein_1d"]


def _as_samples(x: Any, name: str, *, min_rows: int = 1) -> np.ndarray:
    array = as_float_array(x, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (n, k) (samples x features), got {array.shape}")
    if array.shape[0] < min_rows or array.shape[1] < 1:
        raise ValueError(f"{name} needs at least {min_rows} sample(s) and one feature, got shape {array.shape}")
    check_finite_array(array, name)
    return array


@dataclass(frozen=True)
class LinearFrame:
    """Orthonormal tangent and normal bases of a linear manifold ``x = F z``.

    Parameters
    ----------
    tangent_basis
        Shape ``(d, m)``, orthonormal columns spanning the column space of ``F``, ordered by decreasing
        variance of the data (the eigenvectors of ``F F^T`` with non-zero eigenvalues).
    normal_basis
        Shape ``(d, d - m)``, an orthonormal basis of the orthogonal complement.
    variances
        Shape ``(m,)``, the data's variance along each tangent basis vector (eigenvalues of ``F F^T``),
        decreasing.

    Examples
    --------
    >>> from diffnb.data.linear import LinearManifold
    >>> manifold = LinearManifold(d=10, block_dims=(3,), scales=(1.0,), seed=0)
    >>> frame = LinearFrame.from_embedding(manifold.F)
    >>> frame.m, frame.d
    (3, 10)
    >>> x = manifold.sample(5, seed=1)
    >>> bool(frame.distance(x).max() < 1e-12)
    True
    """

    tangent_basis: np.ndarray
    normal_basis: np.ndarray
    variances: np.ndarray

    @classmethod
    def from_embedding(cls, F: Any, *, rtol: float = 1e-10) -> LinearFrame:
        """Frame of the column space of ``F`` (shape ``(d, m)``).

        Parameters
        ----------
        F
            Embedding matrix; its numerical rank (singular values above ``rtol`` times the largest) is the
            manifold dimension.
        rtol
            Relative threshold of the rank.
        """
        F = _as_samples(F, "F")
        if not (np.isfinite(rtol) and 0 < rtol < 1):
            raise ValueError(f"rtol must lie in (0, 1), got {rtol!r}")
        U, s, _ = np.linalg.svd(F, full_matrices=True)
        if s.size == 0 or s[0] == 0:
            raise ValueError("F is zero: it spans no manifold")
        m = int(np.sum(s > rtol * s[0]))
        return cls(tangent_basis=U[:, :m], normal_basis=U[:, m:], variances=s[:m] ** 2)

    @property
    def d(self) -> int:
        """Ambient dimension."""
        return int(self.tangent_basis.shape[0])

    @property
    def m(self) -> int:
        """Manifold dimension."""
        return int(self.tangent_basis.shape[1])

    def _points(self, x: Any) -> np.ndarray:
        array = as_float_array(x, "x")
        if array.ndim < 1 or array.shape[-1] != self.d:
            raise ValueError(f"x must have shape (..., {self.d}) (feature axis last), got {array.shape}")
        check_finite_array(array, "x")
        return array

    def tangent(self, x: Any) -> np.ndarray:
        """Tangent coordinates, shape ``(..., m)``: projections on the tangent basis."""
        return self._points(x) @ self.tangent_basis

    def normal(self, x: Any) -> np.ndarray:
        """Normal coordinates, shape ``(..., d - m)``: projections on the normal basis."""
        return self._points(x) @ self.normal_basis

    def distance(self, x: Any) -> np.ndarray:
        """Euclidean distance to the manifold, shape ``(...)``: the norm of the normal coordinates."""
        return np.linalg.norm(self.normal(x), axis=-1)

    def normal_rms(self, x: Any) -> np.ndarray:
        """Root-mean-square normal coordinate of points ``(..., n, d)``, shape ``(...)``.

        The mean runs over the ``n`` points and their ``d - m`` normal coordinates together; leading axes (noise
        levels of a trajectory, say) are kept.

        For points ``x_0 + sqrt(t) xi`` with ``x_0`` on the manifold this is ``sqrt(t)``.
        """
        nor = self.normal(x)
        return np.sqrt(np.mean(nor**2, axis=(-2, -1)))


def ks_distances(x: Any, y: Any) -> np.ndarray:
    """Two-sample Kolmogorov–Smirnov statistic of every column of two sample sets.

    Parameters
    ----------
    x, y
        Samples of shape ``(n_x, k)`` and ``(n_y, k)`` (sizes may differ).

    Returns
    -------
    numpy.ndarray
        Shape ``(k,)``, values in ``[0, 1]``: the largest distance between the two empirical distribution
        functions of each column. Two samples of one distribution give about ``0.87 sqrt(1/n_x + 1/n_y)`` on
        average (the mean of the Kolmogorov distribution).
    """
    x = _as_samples(x, "x")
    y = _as_samples(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns, got {x.shape[1]} and {y.shape[1]}")
    xs, ys = np.sort(x, axis=0), np.sort(y, axis=0)
    out = np.empty(x.shape[1])
    for j in range(x.shape[1]):
        grid = np.concatenate([xs[:, j], ys[:, j]])
        cdf_x = np.searchsorted(xs[:, j], grid, side="right") / xs.shape[0]
        cdf_y = np.searchsorted(ys[:, j], grid, side="right") / ys.shape[0]
        out[j] = np.max(np.abs(cdf_x - cdf_y))
    return out


def wasserstein_1d(x: Any, y: Any, p: float = 2.0) -> np.ndarray:
    """Wasserstein-``p`` distance between the empirical distributions of every column of two sample sets.

    Computed from the quantile functions on ``max(n_x, n_y)`` mid-point levels (exact for equal sizes).

    Parameters
    ----------
    x, y
        Samples of shape ``(n_x, k)`` and ``(n_y, k)``.
    p
        Order, ``p >= 1``.

    Returns
    -------
    numpy.ndarray
        Shape ``(k,)``.
    """
    x = _as_samples(x, "x")
    y = _as_samples(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns, got {x.shape[1]} and {y.shape[1]}")
    if not (np.isfinite(p) and p >= 1):
        raise ValueError(f"p must be a finite order >= 1, got {p!r}")
    n = max(x.shape[0], y.shape[0])
    levels = (np.arange(n) + 0.5) / n

    def quantiles(a: np.ndarray) -> np.ndarray:
        s = np.sort(a, axis=0)
        if s.shape[0] == n:
            return s
        idx = np.minimum((levels * s.shape[0]).astype(int), s.shape[0] - 1)  # left-continuous inverse CDF
        return s[idx]

    return np.mean(np.abs(quantiles(x) - quantiles(y)) ** p, axis=0) ** (1.0 / p)


def sliced_wasserstein(
    x: Any,
    y: Any,
    *,
    n_projections: int = 256,
    p: float = 2.0,
    seed: int | np.random.Generator | None = 0,
) -> float:
    r"""Sliced Wasserstein-``p`` distance between two sample sets.

    .. math:: SW_p(x, y) = \Big(\mathbb E_{\theta \sim U(S^{k-1})}\, W_p^p(\theta^\top x, \theta^\top y)\Big)^{1/p},

    estimated with ``n_projections`` random unit directions (the same directions for both sets, drawn from
    ``seed``). It is a metric on distributions, zero only when they agree, and scales like the data: for two
    Gaussians that differ only in the variance of one of ``k`` coordinates it is about
    :math:`|\sigma_1 - \sigma_2| / \sqrt k`.

    Parameters
    ----------
    x, y
        Samples of shape ``(n_x, k)`` and ``(n_y, k)``.
    n_projections
        Number of random directions.
    p
        Order, ``p >= 1``.
    seed
        Seed or generator of the directions.

    Returns
    -------
    float
    """
    x = _as_samples(x, "x")
    y = _as_samples(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of columns, got {x.shape[1]} and {y.shape[1]}")
    check_positive_int(n_projections, "n_projections")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    theta = rng.standard_normal((x.shape[1], int(n_projections)))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    w = wasserstein_1d(x @ theta, y @ theta, p=p)
    return float(np.mean(w**p) ** (1.0 / p))
