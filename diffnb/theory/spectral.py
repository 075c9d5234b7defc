r"""Random-matrix theory of the score Jacobian on Gaussian linear manifolds (the spectral-gaps paper).

Model and conventions (as in the book's notation appendix)
----------------------------------------------------------
Data ``x = F z`` with ``z ~ N(0, I_m)`` and ``F = [sigma_1 G_1, ..., sigma_K G_K] / sqrt(d)``, where ``G_k`` is a
``(d, m_k)`` matrix of i.i.d. standard normals. Block ``k`` has aspect ratio ``alpha_k = m_k / d`` and variance
``sigma2_k = sigma_k**2``. The data covariance is ``C = F F^T``. Time ``t`` is the VE noise variance. For the
exact score, ``J = -(C + t I)^{-1}`` and the normalised Jacobian ``t J`` has eigenvalues ``mu = -t / (lambda + t)``.

As ``d -> infinity`` with the ``alpha_k`` fixed, the empirical spectral distribution of ``C`` (all ``d``
eigenvalues) converges to a law whose Stieltjes transform ``g(z) = lim (1/d) tr (C - z)^{-1}`` solves the
generalised Marchenko-Pastur (Silverstein) equation

.. math::  g = -1 / (z - \sum_k \alpha_k s_k / (1 + s_k g)),   s_k = \sigma_k^2,

and the density is ``Im g(lambda + i0) / pi``. The inverse map ``z(g) = -1/g + sum_k alpha_k s_k / (1 + s_k g)``
is explicit; the edges of the spectrum are its critical values, which :func:`covariance_support` finds exactly.

A *continuous* distribution of variances enters as ``alpha * E[s / (1 + s g)]``; :func:`variance_quadrature`
turns a density or samples of ``s`` into quadrature blocks ``(alphas, sigma2s)`` that every function here accepts.

Every function that takes ``(alphas, sigma2s)`` also accepts an ``approximation`` where it makes sense:
``"exact"`` uses the edges of the Silverstein law, ``"detached"`` the paper's detached-bulks approximation, in
which every block is an independent Marchenko-Pastur bulk with edges ``s_k (1 -+ sqrt(alpha_k))**2``.

This module depends on NumPy and SciPy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from scipy import optimize

from diffnb.spectra import gaussian_score_spectra

__all__ = [
    "mp_edges",
    "mp_density",
    "variance_quadrature",
    "stieltjes_transform",
    "covariance_density",
    "inverse_stieltjes",
    "critical_points",
    "covariance_support",
    "n_bulks",
    "bulk_masses",
    "covariance_cdf",
    "ks_distance",
    "jacobian_atom_mass",
    "jacobian_density",
    "jacobian_support",
    "intermediate_edges",
    "manifold_gap",
    "manifold_gap_time",
    "intermediate_gap",
    "gap_peak_time",
    "gap_peak_width",
    "gap_window",
    "phase_boundaries",
    "leave_time",
    "arrival_time",
    "classical_eigenvalues",
    "sorted_jacobian_spectrum",
    "sample_covariance_eigvals",
    "sampled_gap_peak",
]

Approximation = Literal["exact", "detached"]
ArrayLike = float | Sequence[float] | np.ndarray

# ---------------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------------


def _as_positive(name: str, value: ArrayLike, *, what: str, allow_zero: bool = False) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite ({what}), got {value!r}")
    if np.any(arr < 0) if allow_zero else np.any(arr <= 0):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} ({what}), got {value!r}")
    return arr


def _check_time(t: ArrayLike, name: str = "t") -> np.ndarray:
    return _as_positive(name, t, what="the VE noise variance t > 0")


def _check_delta(delta: float) -> float:
    delta = float(delta)
    if not (np.isfinite(delta) and 0.0 < delta < 1.0):
        raise ValueError(f"delta must be a resolution strictly between 0 and 1, got {delta!r}")
    return delta


def _check_approximation(approximation: str) -> str:
    if approximation not in ("exact", "detached"):
        raise ValueError(f"approximation must be 'exact' or 'detached', got {approximation!r}")
    return approximation


def _population(alphas: ArrayLike, sigma2s: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate blocks; merge equal variances; sort by variance (ascending). Returns ``(alphas, sigma2s)``."""
    a = np.atleast_1d(np.asarray(alphas, dtype=float))
    s = np.atleast_1d(np.asarray(sigma2s, dtype=float))
    if a.ndim != 1 or s.ndim != 1:
        raise ValueError(f"alphas and sigma2s must be 1-D, got shapes {a.shape} and {s.shape}")
    if a.size == 0:
        raise ValueError("alphas must contain at least one block")
    if a.size != s.size:
        raise ValueError(f"alphas and sigma2s must have the same length, got {a.size} and {s.size}")
    _as_positive("alphas", a, what="aspect ratios alpha_k = m_k / d")
    _as_positive("sigma2s", s, what="block variances sigma_k**2")
    s_unique, inverse = np.unique(s, return_inverse=True)
    a_merged = np.bincount(inverse, weights=a, minlength=s_unique.size)
    return a_merged, s_unique


def _check_edges(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = _as_positive("a", a, what="inner edge of the higher-variance bulk")
    b = _as_positive("b", b, what="inner edge of the lower-variance bulk")
    if np.any(a <= b):
        raise ValueError(
            f"a (lower edge of the higher-variance bulk) must exceed b (upper edge of the lower-variance "
            f"bulk); got a={a!r}, b={b!r}: the bulks overlap and there is no intermediate gap"
        )
    return a, b


# ---------------------------------------------------------------------------------------------------------
# Marchenko-Pastur (one block)
# ---------------------------------------------------------------------------------------------------------


def mp_edges(sigma2: ArrayLike, alpha: ArrayLike) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Edges of the non-zero eigenvalues of ``C = F F^T`` for one block (Marchenko-Pastur law).

    Parameters
    ----------
    sigma2
        Block variance ``sigma**2`` (entries of ``F`` have variance ``sigma2 / d``).
    alpha
        Aspect ratio ``m / d``. For ``alpha > 1`` the formula gives the edges of the (full-rank) spectrum.

    Returns
    -------
    (lo, hi)
        ``sigma2 * (1 - sqrt(alpha))**2`` and ``sigma2 * (1 + sqrt(alpha))**2``; floats for scalar input,
        arrays (broadcast) otherwise.

    Examples
    --------
    >>> lo, hi = mp_edges(1.0, 0.4)
    >>> round(lo, 4), round(hi, 4)
    (0.1351, 2.6649)
    """
    s = _as_positive("sigma2", sigma2, what="block variance sigma**2")
    a = _as_positive("alpha", alpha, what="aspect ratio m / d")
    lo = s * (1.0 - np.sqrt(a)) ** 2
    hi = s * (1.0 + np.sqrt(a)) ** 2
    if lo.ndim == 0 and hi.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def mp_density(lam: ArrayLike, sigma2: float, alpha: float) -> np.ndarray:
    r"""Closed-form Marchenko-Pastur density of the non-zero eigenvalues of ``C`` for one block.

    Normalised over all ``d`` eigenvalues, so it integrates to ``min(1, alpha)``:

    .. math:: \rho(\lambda) = \sqrt{(\gamma_+ - \lambda)(\lambda - \gamma_-)} / (2 \pi \sigma^2 \lambda).

    Parameters
    ----------
    lam
        Eigenvalues at which to evaluate, any shape.
    sigma2, alpha
        Block variance and aspect ratio, as in :func:`mp_edges`.
    """
    lo, hi = mp_edges(sigma2, alpha)
    lam = np.asarray(lam, dtype=float)
    out = np.zeros_like(lam)
    inside = (lam > lo) & (lam < hi)
    x = lam[inside]
    out[inside] = np.sqrt((hi - x) * (x - lo)) / (2.0 * np.pi * float(sigma2) * x)
    return out


# ---------------------------------------------------------------------------------------------------------
# continuous distributions of variances
# ---------------------------------------------------------------------------------------------------------


def variance_quadrature(
    alpha: float,
    *,
    density: Callable[[np.ndarray], np.ndarray] | None = None,
    bounds: tuple[float, float] | None = None,
    samples: ArrayLike | None = None,
    n_nodes: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Discretise a continuous distribution of block variances into quadrature blocks.

    The Silverstein equation only involves ``alpha * E[s / (1 + s g)]`` over the distribution of the variance
    ``s``; replacing the expectation by a quadrature rule gives blocks ``(alphas, sigma2s)`` that the rest of
    the module treats as any other blocks. The nodes are dense enough that no spurious gaps open between
    them (the quadrature weights shrink with the node spacing).

    Parameters
    ----------
    alpha
        Total aspect ratio ``m / d`` of the directions that carry the distribution.
    density, bounds
        A density of ``s = sigma**2`` on ``bounds = (lo, hi)`` (need not be normalised); Gauss-Legendre
        quadrature with ``n_nodes`` nodes.
    samples
        Alternatively, samples of ``s`` (e.g. the column variances of a matrix). At most ``n_nodes`` of them
        are used directly; more are summarised by ``n_nodes`` equal-weight mid-quantiles.
    n_nodes
        Number of quadrature nodes (default 64).

    Returns
    -------
    (alphas, sigma2s)
        Weights (summing to ``alpha``) and nodes.
    """
    alpha = float(_as_positive("alpha", alpha, what="aspect ratio m / d"))
    if not isinstance(n_nodes, (int, np.integer)) or n_nodes < 1:
        raise ValueError(f"n_nodes must be a positive integer, got {n_nodes!r}")
    if (density is None) == (samples is None):
        raise ValueError("give exactly one of density (with bounds) or samples")
    if samples is not None:
        x = _as_positive("samples", np.ravel(np.asarray(samples, dtype=float)), what="variances sigma**2")
        if x.size == 0:
            raise ValueError("samples must not be empty")
        if x.size > n_nodes:
            x = np.quantile(x, (np.arange(n_nodes) + 0.5) / n_nodes)
        return np.full(x.size, alpha / x.size), np.asarray(x, dtype=float)
    if bounds is None or len(bounds) != 2:
        raise ValueError("bounds=(lo, hi) is required with density")
    lo, hi = (float(v) for v in _as_positive("bounds", bounds, what="variances sigma**2"))
    if not hi > lo:
        raise ValueError(f"bounds must satisfy lo < hi, got {bounds!r}")
    u, w = np.polynomial.legendre.leggauss(int(n_nodes))
    nodes = 0.5 * (hi - lo) * u + 0.5 * (hi + lo)
    vals = np.asarray(density(nodes), dtype=float) * w
    if vals.shape != nodes.shape or not np.all(np.isfinite(vals)) or np.any(vals < 0):
        raise ValueError("density must return finite non-negative values of the shape of its input")
    if vals.sum() <= 0:
        raise ValueError("density integrates to zero on bounds")
    keep = vals > 0
    return alpha * vals[keep] / vals.sum(), nodes[keep]


# ---------------------------------------------------------------------------------------------------------
# Stieltjes transform: vectorised solver of the Silverstein equation
# ---------------------------------------------------------------------------------------------------------


def _z_of_g(g: np.ndarray, a: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse Stieltjes map z(g) and its derivative, vectorised over g (last axis = blocks)."""
    u = s / (1.0 + s * g[..., None])
    return -1.0 / g + np.einsum("...k,k->...", u, a), 1.0 / g**2 - np.einsum("...k,k->...", u * u, a)


def _solve(z: np.ndarray, a: np.ndarray, s: np.ndarray, *, tol: float = 1e-14) -> np.ndarray:
    """Physical solution of z(g) = z for every point of a 1-D array with Im z >= 0.

    Newton's method on the explicit inverse map ``z(g)``, continued in the imaginary part: from ``eta = scale``
    (where ``g ~ -1/z`` is on the physical branch) down by factors of 10 to ``1e-16 scale``, then to each
    point's own ``Im z`` (0 on the real axis). Each factor of 10 moves the solution by less than the distance
    to the other roots, so Newton stays on the branch with ``Im g >= 0``, also next to the edges (square-root
    branch points). A point leaves the continuation early, straight for its target, once a Kantorovich-type
    test says that Newton converges from where it is (``|step| |z''| / |z'| < 0.1``): in the interior of a bulk
    after a few levels, next to an edge only at the end. Every step is one array operation over the points
    that are still moving.
    """
    n = z.size
    re, im = z.real, z.imag
    scale = float(s.max() * (1.0 + np.sqrt(a.sum())) ** 2 + np.abs(re).max(initial=0.0))
    zc = re + 1j * np.maximum(im, scale)
    g = -1.0 / zc
    for _ in range(5):  # a strong contraction at |Im z| >= scale
        g = 0.5 * g - 0.5 / (zc - np.einsum("nk,k->n", s / (1.0 + s * g[:, None]), a))
    ready = im >= scale  # points from which Newton may go straight to their own z
    for eta in [*(scale * 10.0 ** -np.arange(1.0, 17.0)), 0.0]:
        final = eta == 0.0
        level_tol, max_iter = (tol, 100) if final else (1e-4, 30)  # next step ~ 1e-8: quadratic
        target = re + 1j * (im if final else np.maximum(im, eta))
        active = np.arange(n) if final else np.flatnonzero((im < 10.0 * eta) & ~ready)
        for _ in range(max_iter):
            if active.size == 0:
                break
            gi = g[active]
            u = s / (1.0 + s * gi[:, None])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                step = (-1.0 / gi + np.einsum("nk,k->n", u, a) - target[active]) / (
                    1.0 / (gi * gi) - np.einsum("nk,k->n", u * u, a)
                )
                new = gi - step
            if final:  # on the real axis the conjugate of a solution is a solution: stay in the upper half
                new.imag = np.abs(new.imag)
            ok = np.isfinite(new) & (new.imag >= 0)
            if not ok.all():
                new = np.where(ok, new, gi)
                step = np.where(ok, step, 0.0)
            g[active] = new
            active = active[np.abs(step) > level_tol * np.abs(new)]
        if not final:  # Kantorovich-type test for the jump from this level to each point's own z
            idx = np.flatnonzero(~ready & (im < 10.0 * eta))
            gi = g[idx]
            u = s / (1.0 + s * gi[:, None])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                d1 = 1.0 / (gi * gi) - np.einsum("nk,k->n", u * u, a)
                d2 = -2.0 / gi**3 + 2.0 * np.einsum("nk,k->n", u**3, a)
                jump = np.abs(np.maximum(im[idx], eta) - im[idx]) / np.abs(d1)
                ready[idx] = jump * np.abs(d2) / np.abs(d1) < 0.1
    return g


def stieltjes_transform(z: ArrayLike, alphas: ArrayLike, sigma2s: ArrayLike) -> np.ndarray:
    """Limiting Stieltjes transform ``g(z) = (1/d) tr (C - z)^{-1}`` of the covariance ``C = F F^T``.

    Solves the Silverstein equation ``g = -1 / (z - sum_k alpha_k s_k / (1 + s_k g))`` on the physical branch
    (``Im g >= 0`` when ``Im z >= 0``), vectorised over ``z`` in float64. Points with ``Im z = 0`` get the
    boundary value ``g(x + i0)``; ``z = 0`` (the atom of the normal directions) gives ``nan``.

    Parameters
    ----------
    z
        Complex points with non-negative imaginary part, any shape.
    alphas, sigma2s
        Aspect ratios ``m_k / d`` and variances ``sigma_k**2`` of the blocks, same length.
    """
    a, s = _population(alphas, sigma2s)
    z = np.asarray(z, dtype=complex)
    if not np.all(np.isfinite(z)):
        raise ValueError("z must be finite")
    if np.any(z.imag < 0):
        raise ValueError("z must have a non-negative imaginary part (use conj(g(conj z)) below the axis)")
    flat = z.ravel()
    out = np.empty_like(flat)
    at_zero = flat == 0
    if np.any(~at_zero):
        out[~at_zero] = _solve(flat[~at_zero], a, s)
    out[at_zero] = np.nan + 1j * np.nan  # atom at 0 (or the edge of a hard edge): no finite value
    return out.reshape(z.shape)


def covariance_density(lam: ArrayLike, alphas: ArrayLike, sigma2s: ArrayLike) -> np.ndarray:
    """Density of the eigenvalues of ``C = F F^T`` (generalised Marchenko-Pastur / Silverstein law).

    Normalised over all ``d`` eigenvalues: its integral over ``lam > 0`` is ``min(1, sum(alphas))``; the rest
    is the atom at 0 (the ``d - m`` normal directions). Accurate to float64 precision at every point, also
    next to the edges: it vanishes outside :func:`covariance_support` and rises as a square root at each
    edge (exactly at an edge, a double root, the error is about ``sqrt(eps)`` times the density scale).

    Parameters
    ----------
    lam
        Eigenvalues at which to evaluate, any shape; the density is 0 for ``lam <= 0``.
    alphas, sigma2s
        Aspect ratios and variances of the blocks (same length). For a continuous distribution of variances,
        pass the output of :func:`variance_quadrature`.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([0.5, 1.0, 2.0])
    >>> np.allclose(covariance_density(x, [0.4], [1.0]), mp_density(x, 1.0, 0.4))
    True
    """
    a, s = _population(alphas, sigma2s)
    lam = np.asarray(lam, dtype=float)
    if not np.all(np.isfinite(lam)):
        raise ValueError("lam must be finite")
    out = np.zeros(lam.shape)
    pos = lam > 0
    if np.any(pos):
        g = _solve(lam[pos].astype(complex), a, s)
        out[pos] = np.maximum(g.imag, 0.0) / np.pi
    return out


# ---------------------------------------------------------------------------------------------------------
# exact support from the critical points of the inverse map
# ---------------------------------------------------------------------------------------------------------


def _h(g: np.ndarray, a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """g**2 z'(g) = 1 - sum_k alpha_k (s_k g / (1 + s_k g))**2 (same sign as z'(g), smooth through g = 0)."""
    u = s * g[..., None] / (1.0 + s * g[..., None])
    return 1.0 - np.einsum("...k,k->...", u * u, a)


def _critical_points(a: np.ndarray, s: np.ndarray) -> list[tuple[float, str]]:
    """Zeros of z'(g) on the real line with their type: 'lo' (left edge of a bulk) or 'hi' (right edge)."""
    poles = np.sort(-1.0 / s)  # ascending: -1/s_min first
    total = a.sum()
    h = lambda g: float(_h(np.array([g]), a, s)[0])  # noqa: E731
    out: list[tuple[float, str]] = []

    def expand(base: float, direction: float, want_positive: bool) -> float:
        """Walk away from a pole until h changes sign (h -> -inf at the pole)."""
        step = abs(base) * 1e-3 + 1e-12
        g = base + direction * step
        for _ in range(2000):
            if (h(g) > 0) == want_positive:
                return g
            step *= 2.0
            g = base + direction * step
        raise RuntimeError("no sign change of z'(g) found")  # pragma: no cover

    # (-inf, p_1): h increases from -inf (at the pole) to 1 - sum(alpha) (at -inf): one zero iff sum < 1
    if total < 1.0:
        far = expand(poles[0], -1.0, True)
        near = poles[0] - abs(poles[0]) * 1e-15
        g0 = optimize.brentq(h, far, near, rtol=4 * np.finfo(float).eps, maxiter=500)
        out.append((g0, "lo"))
    # (p_K, 0]: h increases from -inf to h(0) = 1: exactly one zero -> top edge
    near = poles[-1] + abs(poles[-1]) * 1e-15
    out.append((optimize.brentq(h, near, 0.0, rtol=4 * np.finfo(float).eps, maxiter=500), "hi"))
    # (0, inf): h decreases from 1 to 1 - sum(alpha): one zero iff sum > 1 -> lowest edge (hard edge at 0 if ==)
    if total > 1.0:
        far = 1.0
        while h(far) > 0:
            far *= 2.0
        out.append((optimize.brentq(h, 0.0, far, rtol=4 * np.finfo(float).eps, maxiter=500), "lo"))
    # middle intervals (p_k, p_{k+1}): h -> -inf at both poles; a pair of zeros for every gap
    if poles.size > 1:
        n = 257
        u = 0.5 * (1.0 - np.cos(np.pi * np.arange(1, n) / n))  # (0, 1), clustered at both poles
        left, right = poles[:-1, None], poles[1:, None]
        grid = left + (right - left) * u  # (K - 1, n - 1)
        hv = _h(grid, a, s)
        for k in range(poles.size - 1):
            gk, hk = list(grid[k]), list(hv[k])
            # refine every local maximum of the samples (narrow positive regions between nearly merged bulks)
            for i in range(1, len(u) - 1):
                if hv[k, i] >= hv[k, i - 1] and hv[k, i] >= hv[k, i + 1]:
                    res = optimize.minimize_scalar(
                        lambda g: -h(g),
                        bounds=(grid[k, i - 1], grid[k, i + 1]),
                        method="bounded",
                        options={"xatol": 1e-14 * abs(grid[k, i])},
                    )
                    gk.append(float(res.x))
                    hk.append(-float(res.fun))
            order = np.argsort(gk)
            gk_arr, hk_arr = np.asarray(gk)[order], np.asarray(hk)[order]
            pos = hk_arr > 0
            for i in np.flatnonzero(pos[1:] != pos[:-1]):
                root = optimize.brentq(h, gk_arr[i], gk_arr[i + 1], rtol=4 * np.finfo(float).eps, maxiter=500)
                out.append((root, "hi" if pos[i + 1] else "lo"))
    return out


def inverse_stieltjes(g: ArrayLike, alphas: ArrayLike, sigma2s: ArrayLike) -> np.ndarray:
    """The explicit inverse of the Silverstein equation: ``z(g) = -1/g + sum_k alpha_k s_k / (1 + s_k g)``.

    On the real axis, ``z`` is increasing exactly on the values of ``g`` taken in the gaps of the spectrum;
    its critical values are the edges (:func:`critical_points`).
    """
    a, s = _population(alphas, sigma2s)
    g = np.asarray(g)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _z_of_g(g, a, s)[0]


def critical_points(alphas: ArrayLike, sigma2s: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Real critical points ``g*`` of :func:`inverse_stieltjes` that give edges, and the edges ``z(g*)``.

    Returns
    -------
    (g_star, edges)
        Arrays sorted by edge, one entry per edge of :func:`covariance_support` (the hard edge at 0 that
        appears when ``sum(alphas) == 1`` has no critical point and is not listed).
    """
    a, s = _population(alphas, sigma2s)
    crit = _critical_points(a, s)
    g_star = np.array([g for g, _ in crit])
    edges = _z_of_g(g_star, a, s)[0]
    keep = edges > 0
    order = np.argsort(edges[keep])
    return g_star[keep][order], edges[keep][order]


def covariance_support(
    alphas: ArrayLike, sigma2s: ArrayLike, *, approximation: Approximation = "exact"
) -> list[tuple[float, float]]:
    """Bulks (intervals) of the continuous spectrum of ``C``, ascending; ``len`` of the result = number of bulks.

    ``"exact"``: outside the support the Stieltjes transform is real and increasing, so the complement of the
    support is the image of the set where the inverse map ``z(g) = -1/g + sum_k alpha_k s_k / (1 + s_k g)`` is
    increasing; the edges are the critical values ``z(g*)`` with ``z'(g*) = 0``. Each zero of ``z'`` is found by
    bracketing between the poles ``g = -1/s_k`` (no density thresholding).

    ``"detached"``: the union of the independent Marchenko-Pastur intervals of the blocks (overlapping ones
    merged), i.e. the paper's approximation.

    Parameters
    ----------
    alphas, sigma2s
        Aspect ratios and variances of the blocks, same length.
    approximation
        ``"exact"`` (default) or ``"detached"``.

    Returns
    -------
    list of (lo, hi)
        Disjoint intervals, ascending. When ``sum(alphas) == 1`` the lowest edge is 0 (a hard edge).
    """
    a, s = _population(alphas, sigma2s)
    if _check_approximation(approximation) == "detached":
        lo, hi = mp_edges(s, a)
        merged: list[list[float]] = []
        for l_k, h_k in sorted(zip(np.atleast_1d(lo), np.atleast_1d(hi), strict=True)):
            if merged and l_k <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], h_k)
            else:
                merged.append([float(l_k), float(h_k)])
        return [(lo_, hi_) for lo_, hi_ in merged]
    crit = _critical_points(a, s)
    edges = sorted((float(_z_of_g(np.array([g]), a, s)[0][0]), kind) for g, kind in crit)
    if np.isclose(a.sum(), 1.0, rtol=0, atol=1e-12) and edges and edges[0][1] == "hi":
        edges.insert(0, (0.0, "lo"))
    kinds = [k for _, k in edges]
    if len(edges) % 2 or any(kinds[i] != ("lo" if i % 2 == 0 else "hi") for i in range(len(kinds))):
        raise RuntimeError(f"inconsistent edges {edges}; please report this case")  # pragma: no cover
    return [(max(edges[i][0], 0.0), edges[i + 1][0]) for i in range(0, len(edges), 2)]


def n_bulks(alphas: ArrayLike, sigma2s: ArrayLike, *, approximation: Approximation = "exact") -> int:
    """Number of disjoint bulks of the spectrum of ``C`` (``len(covariance_support(...))``)."""
    return len(covariance_support(alphas, sigma2s, approximation=approximation))


def _cumulative(alphas: ArrayLike, sigma2s: ArrayLike, n: int):
    """Cumulative mass on each bulk at ``theta_j = j pi / n`` (``lam = mid - half cos theta``), midpoint rule.

    In ``theta`` the square-root (and, for ``sum(alphas) == 1``, inverse square-root) edges become smooth, and
    the midpoint rule never evaluates the density at an edge.
    """
    bulks = covariance_support(alphas, sigma2s)
    lo = np.array([b[0] for b in bulks])[:, None]
    hi = np.array([b[1] for b in bulks])[:, None]
    theta = np.linspace(0.0, np.pi, n + 1)
    mid = 0.5 * (theta[1:] + theta[:-1])
    lam = 0.5 * (lo + hi) - 0.5 * (hi - lo) * np.cos(mid)
    f = covariance_density(lam, alphas, sigma2s) * 0.5 * (hi - lo) * np.sin(mid) * (np.pi / n)
    cum = np.concatenate([np.zeros((len(bulks), 1)), np.cumsum(f, axis=1)], axis=1)
    return bulks, theta, cum


def bulk_masses(alphas: ArrayLike, sigma2s: ArrayLike, *, n: int = 2048) -> np.ndarray:
    """Mass of each bulk of :func:`covariance_support` (fraction of the ``d`` eigenvalues), ascending.

    For detached bulks, each equals the summed ``alphas`` of the blocks it contains (exact separation).
    """
    _, _, cum = _cumulative(alphas, sigma2s, n)
    return cum[:, -1].copy()


def covariance_cdf(lam: ArrayLike, alphas: ArrayLike, sigma2s: ArrayLike, *, n: int = 2048) -> np.ndarray:
    """Cumulative mass of the continuous part of the spectrum of ``C`` below ``lam``.

    Normalised like :func:`covariance_density` (it tends to ``min(1, sum(alphas))``). Integrates the density
    over each bulk in the variable ``theta`` with ``lam = mid - half * cos(theta)`` (square-root edges become
    smooth) and interpolates.
    """
    bulks, theta, cum = _cumulative(alphas, sigma2s, n)
    lam = np.asarray(lam, dtype=float)
    out = np.zeros(lam.shape)
    for (lo, hi), c in zip(bulks, cum, strict=True):
        x = np.clip((0.5 * (lo + hi) - lam) / (0.5 * (hi - lo)), -1.0, 1.0)
        out += np.interp(np.arccos(x), theta, c)
    return out


def ks_distance(eigenvalues: ArrayLike, alphas: ArrayLike, sigma2s: ArrayLike) -> float:
    """Kolmogorov-Smirnov distance between sampled non-zero eigenvalues of ``C`` and the limiting law.

    The theory's continuous part is normalised to a probability distribution. Because ``lam -> -t/(lam + t)``
    is monotone, this is also the KS distance between the sampled and predicted continuous spectra of
    ``t * J`` at any ``t``.

    Parameters
    ----------
    eigenvalues
        The non-zero eigenvalues of one or more sampled matrices (pooled), any shape.
    """
    x = np.sort(np.ravel(np.asarray(eigenvalues, dtype=float)))
    if x.size == 0:
        raise ValueError("eigenvalues must not be empty")
    a, _ = _population(alphas, sigma2s)
    cdf = covariance_cdf(x, alphas, sigma2s) / min(1.0, a.sum())
    n = x.size
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n)))


# ---------------------------------------------------------------------------------------------------------
# the normalised Jacobian t * J
# ---------------------------------------------------------------------------------------------------------


def jacobian_atom_mass(alphas: ArrayLike) -> float:
    """Mass of the atom of the spectrum of ``t * J`` at -1: the normal fraction ``max(0, 1 - sum(alphas))``."""
    a = _as_positive("alphas", np.atleast_1d(np.asarray(alphas, dtype=float)), what="aspect ratios m_k / d")
    return float(max(0.0, 1.0 - a.sum()))


def jacobian_density(mu: ArrayLike, t: float, alphas: ArrayLike, sigma2s: ArrayLike) -> np.ndarray:
    r"""Continuous part of the density of the eigenvalues of ``t * J`` (exact score, Gaussian linear manifold).

    Each eigenvalue ``lambda`` of ``C`` becomes ``mu = -t / (lambda + t)`` in ``(-1, 0)``, so

    .. math:: \rho_{tJ}(\mu) = (1 - \textstyle\sum_k \alpha_k)\, \delta(\mu + 1)
              + \frac{t}{\mu^2}\, \rho_C\!\left(-\frac{t (1 + \mu)}{\mu}\right).

    This function returns the second term (zero outside ``(-1, 0)``); the atom is
    :func:`jacobian_atom_mass`. When ``sum(alphas) >= 1`` the data span the whole space: there is no atom
    (no normal directions, hence no manifold gap) and the continuous part carries all the mass; for
    ``sum(alphas) == 1`` exactly, it diverges at -1 (the hard edge of ``C`` at 0).

    Parameters
    ----------
    mu
        Points in ``(-1, 0)``, any shape.
    t
        VE noise variance, ``t > 0``.
    alphas, sigma2s
        Aspect ratios and variances of the blocks.
    """
    t = float(_check_time(t))
    mu = np.asarray(mu, dtype=float)
    out = np.zeros(mu.shape)
    inside = (mu > -1.0) & (mu < 0.0)
    m = mu[inside]
    out[inside] = covariance_density(-t * (1.0 + m) / m, alphas, sigma2s) * t / m**2
    return out


def jacobian_support(
    t: ArrayLike, alphas: ArrayLike, sigma2s: ArrayLike, *, approximation: Approximation = "exact"
) -> np.ndarray:
    """Bulks of the continuous spectrum of ``t * J``: array of shape ``t.shape + (n_bulks, 2)`` of (lo, hi).

    The high-variance bulks (large ``lambda``) lie closest to 0; every bulk tends to -1 as ``t`` grows and
    to 0 as ``t`` shrinks.
    """
    t = _check_time(t)
    bulks = np.asarray(covariance_support(alphas, sigma2s, approximation=approximation))  # (n_bulks, 2)
    tt = t[..., None, None]
    return -tt / (bulks + tt)


# ---------------------------------------------------------------------------------------------------------
# gaps, times and phases
# ---------------------------------------------------------------------------------------------------------


def intermediate_edges(
    alphas: ArrayLike, sigma2s: ArrayLike, *, approximation: Approximation = "exact"
) -> list[tuple[float, float]]:
    """Inner edges ``(a, b)`` of every intermediate gap, from the top gap down.

    ``a`` is the lower edge of the bulk above the gap (higher variance) and ``b`` the upper edge of the bulk
    below it (``a > b``). ``"exact"``: consecutive bulks of :func:`covariance_support`. ``"detached"``:
    consecutive blocks ordered by variance, ``a = gamma_-(s_hi)``, ``b = gamma_+(s_lo)`` from independent
    Marchenko-Pastur laws, kept only when ``a > b`` (otherwise the approximation predicts no gap).
    """
    if _check_approximation(approximation) == "exact":
        bulks = covariance_support(alphas, sigma2s)
        pairs = [(bulks[i + 1][0], bulks[i][1]) for i in range(len(bulks) - 1)]
    else:
        a, s = _population(alphas, sigma2s)
        lo, hi = (np.atleast_1d(v) for v in mp_edges(s, a))
        pairs = [(float(lo[i + 1]), float(hi[i])) for i in range(s.size - 1) if lo[i + 1] > hi[i]]
    return pairs[::-1]


def manifold_gap(t: ArrayLike, gamma_minus: float) -> float | np.ndarray:
    """Manifold gap of ``t * J``: distance from the normal atom at -1 to the tangent bulk, ``g / (g + t)``.

    Parameters
    ----------
    t
        VE noise variance(s), ``> 0``.
    gamma_minus
        Lowest edge of the (non-zero) spectrum of ``C``, e.g. ``covariance_support(...)[0][0]`` or
        ``mp_edges(...)[0]``.
    """
    t = _check_time(t)
    g = float(_as_positive("gamma_minus", gamma_minus, what="lowest edge of the spectrum of C"))
    out = g / (g + t)
    return float(out) if out.ndim == 0 else out


def manifold_gap_time(gamma_minus: float, delta: float) -> float:
    """Largest ``t`` at which the manifold gap is at least ``delta``: ``gamma_minus (1 - delta) / delta``.

    The same time as :func:`leave_time` of ``gamma_minus``: the gap is the distance of the lowest tangent
    eigenvalue from the normal atom.
    """
    g = float(_as_positive("gamma_minus", gamma_minus, what="lowest edge of the spectrum of C"))
    return float(leave_time(g, delta))


def intermediate_gap(t: ArrayLike, a: float, b: float) -> float | np.ndarray:
    """Intermediate gap of ``t * J`` between two bulks: ``t (a - b) / ((t + a)(t + b))``.

    Parameters
    ----------
    t
        VE noise variance(s), ``> 0``.
    a, b
        Lower edge of the higher-variance bulk and upper edge of the lower-variance bulk (``a > b > 0``), e.g.
        from :func:`intermediate_edges`.
    """
    t = _check_time(t)
    a, b = _check_edges(a, b)
    out = t * (a - b) / ((t + a) * (t + b))
    return float(out) if out.ndim == 0 else out


def gap_peak_time(a: float, b: float) -> float:
    """Time of maximal visibility of the intermediate gap: ``t_max = sqrt(a b)`` (the paper's Eq. 22)."""
    a, b = _check_edges(a, b)
    return float(np.sqrt(a * b))


def gap_peak_width(a: float, b: float) -> float:
    """Largest intermediate gap, reached at :func:`gap_peak_time`: ``(sqrt a - sqrt b) / (sqrt a + sqrt b)``."""
    a, b = _check_edges(a, b)
    return float((np.sqrt(a) - np.sqrt(b)) / (np.sqrt(a) + np.sqrt(b)))


def gap_window(a: float, b: float, delta: float) -> tuple[float, float] | None:
    """Interval of ``t`` on which the intermediate gap is at least ``delta``.

    Solves ``delta t^2 - ((a - b) - delta (a + b)) t + delta a b = 0``. In the generative direction
    (decreasing ``t``) the gap opens at ``t_open = t_+`` and closes at ``t_close = t_-``; ``t_+ t_- = a b =
    t_max**2``.

    Returns
    -------
    (t_close, t_open) or None
        ``None`` when ``delta`` exceeds the peak width :func:`gap_peak_width`.
    """
    a, b = _check_edges(a, b)
    a, b = float(a), float(b)
    delta = _check_delta(delta)
    if delta > gap_peak_width(a, b) * (1.0 + 1e-12):
        return None
    B = (a - b) - delta * (a + b)
    root = np.sqrt(max(B * B - 4.0 * delta * delta * a * b, 0.0))
    t_open = (B + root) / (2.0 * delta)
    return float(a * b / t_open), float(t_open)  # t_close from the product (no cancellation)


def phase_boundaries(
    alphas: ArrayLike, sigma2s: ArrayLike, delta: float, *, approximation: Approximation = "exact"
) -> tuple[float, float]:
    """Boundaries of the three phases at resolution ``delta``: ``(t_trivial, t_consolidation)``.

    * ``t > t_trivial``: trivial phase, every tangent eigenvalue of ``t * J`` is within ``delta`` of -1. The
      first to leave is the top edge ``gamma_top`` of the spectrum of ``C``: ``t_trivial = gamma_top (1 -
      delta) / delta``.
    * ``t < t_consolidation``: consolidation, every tangent eigenvalue is within ``delta`` of 0. The last to
      arrive is the lowest edge ``gamma_bottom``: ``t_consolidation = gamma_bottom delta / (1 - delta)`` (0 for
      ``sum(alphas) == 1``, where the spectrum reaches 0).
    * In between: manifold coverage.

    ``approximation="detached"`` takes the edges from independent Marchenko-Pastur laws of the extreme blocks.
    """
    delta = _check_delta(delta)
    bulks = covariance_support(alphas, sigma2s, approximation=approximation)
    top, bottom = bulks[-1][1], bulks[0][0]
    return float(leave_time(top, delta)), float(arrival_time(bottom, delta))


def _boundary_time(lam: ArrayLike, delta: float, *, leaving: bool) -> float | np.ndarray:
    """``lam (1 - delta) / delta`` (``leaving``) or ``lam delta / (1 - delta)``, checked, float for a scalar."""
    arr = _as_positive("lam", lam, what="variances, eigenvalues of C", allow_zero=True)
    delta = _check_delta(delta)
    out = arr * ((1.0 - delta) / delta if leaving else delta / (1.0 - delta))
    return float(out) if out.ndim == 0 else out


def leave_time(lam: ArrayLike, delta: float) -> float | np.ndarray:
    r"""Noise level at which a tangent direction of variance ``lam`` leaves the normal end by ``delta``.

    The eigenvalue :math:`-t/(\lambda + t)` of ``t * J`` is within ``delta`` of -1 for ``t`` above
    :math:`\lambda (1 - \delta) / \delta` and further away below it. With the top edge of the spectrum of
    ``C`` it is the trivial boundary of :func:`phase_boundaries`; with the largest eigenvalue of one finite
    covariance, the trivial boundary of that covariance's exact score (or of a Gaussian with that covariance).

    Parameters
    ----------
    lam
        Variance(s) (eigenvalues of ``C``), finite and non-negative, any shape.
    delta
        Resolution, strictly between 0 and 1.

    Returns
    -------
    float or numpy.ndarray
        ``lam * (1 - delta) / delta``, a float for a scalar ``lam``.

    Examples
    --------
    >>> leave_time(2.0, 0.1), leave_time([0.5, 2.0], 0.5).tolist()
    (18.0, [0.5, 2.0])
    """
    return _boundary_time(lam, delta, leaving=True)


def arrival_time(lam: ArrayLike, delta: float) -> float | np.ndarray:
    r"""Noise level below which a tangent direction of variance ``lam`` is within ``delta`` of the tangent end.

    :math:`t/(\lambda + t) \le \delta` for ``t`` below :math:`\lambda \delta / (1 - \delta)`. With the lowest
    edge of the spectrum of ``C`` it is the consolidation boundary of :func:`phase_boundaries`; its square
    root is the consolidation scale of the normal coordinates (chapter 8).

    Parameters
    ----------
    lam
        Variance(s) (eigenvalues of ``C``), finite and non-negative, any shape.
    delta
        Resolution, strictly between 0 and 1.

    Returns
    -------
    float or numpy.ndarray
        ``lam * delta / (1 - delta)``, a float for a scalar ``lam``.

    Examples
    --------
    >>> round(arrival_time(0.9, 0.1), 12)
    0.1
    """
    return _boundary_time(lam, delta, leaving=False)


def classical_eigenvalues(alphas: ArrayLike, sigma2s: ArrayLike, d: int, *, n: int = 2048) -> np.ndarray:
    """The ``d`` eigenvalues of ``C`` at their typical positions under the limiting law, ascending.

    The ``k``-th largest eigenvalue sits where the mass of the continuous part above it is ``(k - 1/2) / d``
    (the classical locations of random-matrix theory). Ranks beyond the continuous mass lie in the atom at
    0 (the ``d - m`` normal directions when ``sum(alphas) < 1``). The cumulative mass is that of
    :func:`covariance_cdf` (midpoint rule in the angle variable, ``n`` points per bulk), inverted by
    interpolation in the same variable.

    Parameters
    ----------
    alphas, sigma2s
        Aspect ratios and variances of the blocks.
    d
        Ambient dimension (number of eigenvalues), a positive integer.
    n
        Quadrature points per bulk.

    Returns
    -------
    numpy.ndarray
        Shape ``(d,)``, ascending, float64; zeros for the atom.

    Examples
    --------
    >>> lam = classical_eigenvalues([0.4], [1.0], 10)
    >>> int((lam == 0).sum()), bool(0.135 < lam[6] < lam[-1] < 2.665)
    (6, True)
    """
    if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 1:
        raise ValueError(f"d must be a positive integer (the ambient dimension), got {d!r}")
    if not isinstance(n, (int, np.integer)) or n < 16:
        raise ValueError(f"n must be an integer >= 16 (quadrature points per bulk), got {n!r}")
    bulks, theta, cum = _cumulative(alphas, sigma2s, int(n))
    offsets = np.concatenate([[0.0], np.cumsum(cum[:, -1])])
    below = offsets[-1] - (np.arange(1, d + 1) - 0.5) / d  # continuous mass below the k-th largest
    out = np.zeros(d)
    for j, (lo, hi) in enumerate(bulks):
        sel = (below > offsets[j]) & (below <= offsets[j + 1])
        angle = np.interp(below[sel] - offsets[j], cum[j], theta)
        out[sel] = 0.5 * (lo + hi) - 0.5 * (hi - lo) * np.cos(angle)
    return np.sort(out)


def sorted_jacobian_spectrum(
    t: ArrayLike, alphas: ArrayLike, sigma2s: ArrayLike, d: int, *, n_smallest: int | None = None
) -> np.ndarray:
    r"""The theory's sorted spectrum of ``-t * J`` at noise level(s) ``t``, ascending.

    Every classical eigenvalue :math:`\lambda` of ``C`` (:func:`classical_eigenvalues`) is mapped to
    :math:`t/(\lambda + t)`: tangent directions in ``(0, 1)``, the normal atom at 1. These are the singular
    values of the normalised Jacobian of the exact score, the curve a sorted measured spectrum (normalised so
    that normal directions sit at 1) is compared with.

    Parameters
    ----------
    t
        VE noise variance(s), ``> 0``; a scalar or shape ``(n_times,)``.
    alphas, sigma2s
        Aspect ratios and variances of the blocks.
    d
        Ambient dimension.
    n_smallest
        Keep only the ``n_smallest`` smallest values (``1 <= n_smallest <= d``; ``None``: all ``d``).

    Returns
    -------
    numpy.ndarray
        Shape ``t.shape + (n_smallest,)``, ascending along the last axis.

    Examples
    --------
    >>> v = sorted_jacobian_spectrum(0.1, [0.4], [1.0], 10, n_smallest=5)
    >>> bool(np.all(np.diff(v[:4]) > 0) and v[3] < 1), float(v[4])  # 4 tangent values, then the atom
    (True, 1.0)
    """
    t = _check_time(t)
    lam = classical_eigenvalues(alphas, sigma2s, d)
    k = d if n_smallest is None else n_smallest
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= d:
        raise ValueError(f"n_smallest must be an integer in [1, {d}], got {n_smallest!r}")
    values = gaussian_score_spectra(lam, t.reshape(-1)).reshape(*t.shape, d)
    return values[..., : int(k)]


# ---------------------------------------------------------------------------------------------------------
# sampled matrices
# ---------------------------------------------------------------------------------------------------------


def sample_covariance_eigvals(
    d: int,
    ms: Sequence[int],
    sigma2s: ArrayLike,
    *,
    rng: np.random.Generator | int | None = None,
    n_samples: int = 1,
) -> np.ndarray:
    """Eigenvalues of sampled covariances ``C = F F^T`` with ``F = [sigma_1 G_1, ...] / sqrt(d)``.

    Uses the ``m x m`` Gram matrix ``F^T F`` (same non-zero spectrum), so it returns the ``min(m, d)``
    largest eigenvalues of ``C``, ascending; the other ``d - m`` are 0 when ``m < d``.

    Parameters
    ----------
    d
        Ambient dimension.
    ms
        Number of columns of each block (``m_k``); blocks of one column give each column its own variance.
    sigma2s
        Variance of each block, same length as ``ms``.
    rng
        Generator or seed.
    n_samples
        Number of independent matrices.

    Returns
    -------
    ndarray of shape (n_samples, min(m, d))
    """
    if not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    ms = np.atleast_1d(np.asarray(ms))
    if ms.ndim != 1 or not np.issubdtype(ms.dtype, np.integer) or np.any(ms < 1):
        raise ValueError(f"ms must be positive integers (columns per block), got {ms!r}")
    s = np.atleast_1d(_as_positive("sigma2s", sigma2s, what="block variances sigma_k**2"))
    if s.size != ms.size:
        raise ValueError(f"ms and sigma2s must have the same length, got {ms.size} and {s.size}")
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    rng = np.random.default_rng(rng)
    scale = np.repeat(np.sqrt(s / d), ms)  # column scales
    m = int(ms.sum())
    out = []
    for _ in range(n_samples):
        F = rng.standard_normal((d, m)) * scale
        gram = F.T @ F if m <= d else F @ F.T
        out.append(np.linalg.eigvalsh(gram))
    return np.asarray(out)


def sampled_gap_peak(
    eigenvalues: ArrayLike, n_above: int, *, t_bounds: tuple[float, float] | None = None
) -> tuple[float, float]:
    """Measure the peak of an intermediate gap in a sampled spectrum of ``t * J``.

    The gap is the distance between the ``n_above``-th and ``(n_above + 1)``-th largest eigenvalues of ``t J``
    (``mu = -t / (lambda + t)``), i.e. between the top ``n_above`` tangent directions and the rest. It is
    maximised over ``log t`` numerically.

    Parameters
    ----------
    eigenvalues
        Eigenvalues of one sampled ``C`` (any order; zeros allowed).
    n_above
        Number of eigenvalues above the gap (e.g. the dimension ``m_1`` of the high-variance block).
    t_bounds
        Search interval for ``t``; default: the range of the two eigenvalues, widened 10x.

    Returns
    -------
    (t_peak, width)
    """
    lam = np.sort(np.ravel(np.asarray(eigenvalues, dtype=float)))
    if not isinstance(n_above, (int, np.integer)) or not 1 <= n_above < lam.size:
        raise ValueError(f"n_above must be an integer in [1, {lam.size - 1}], got {n_above!r}")
    pair = lam[[-n_above - 1, -n_above]]
    if t_bounds is None:
        t_bounds = (max(pair[0], 1e-300) / 10.0, pair[1] * 10.0)

    def neg_gap(log_t: float) -> float:
        t = np.exp(log_t)
        mu = np.sort(-t / (lam + t))
        return -(mu[-n_above] - mu[-n_above - 1])

    res = optimize.minimize_scalar(
        neg_gap, bounds=(np.log(t_bounds[0]), np.log(t_bounds[1])), method="bounded", options={"xatol": 1e-10}
    )
    return float(np.exp(res.x)), float(-res.fun)
