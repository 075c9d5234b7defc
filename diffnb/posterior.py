r"""Posterior-based diagnostics of memorization for the empirical score.

The empirical score of training points :math:`\{y_\mu\}` at a test point ``x`` and noise variance ``t`` is
fixed by the posterior weights :math:`w_\mu(x)` (:func:`diffnb.scores.posterior_weights`). Everything the
book measures about memorization is a statistic of those weights:

* the **participation ratio** :math:`1/\sum_\mu w_\mu^2`, the effective number of active training points;
* the **posterior covariance** :math:`\mathrm{Cov}_w`, whose eigenvalues give the spectrum of the
  normalised Jacobian, :math:`tJ = \mathrm{Cov}_w/t - I` (:func:`empirical_spectrum`: normal directions
  at exactly 1, visible tangent directions below);
* the **per-block order parameter** (:func:`block_order_parameter`): the posterior-weighted variance of the
  training points along the directions of a block, divided by the posterior variance the *population*
  would give, :math:`t s_i^2/(t + s_i^2)` for a Gaussian direction of variance :math:`s_i^2`. It is near 1
  while the empirical score generalises along that block and falls to 0 when the block is frozen (the
  weights sit on training points that agree along it). For data on the sphere the population posterior is
  not Gaussian and the generalising value differs from 1; :func:`sphere_posterior_variance` computes the
  population's posterior variance, hence that value.

:func:`sweep` computes all three on a grid of noise levels for a batch of test points that move with the
noise, ``x = base + sqrt(t) * noise`` (common random numbers, so curves over ``t`` are smooth); the base
points are the origin, training points or fresh samples. :func:`official_probe_spectrum` reproduces the
memorization paper's empirical-score simulation (axis-aligned central differences across a step
:math:`\sqrt t`, absolute values taken element-wise, as in its official code) through
:mod:`diffnb.jacobian`.

Computations run in float64 torch on the CPU and return NumPy arrays (the Monte Carlo chains of
:func:`sphere_posterior_variance` run in NumPy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from diffnb._linalg import svdvals
from diffnb._validation import as_tensor, check_orthonormal_columns
from diffnb.jacobian import score_jacobian
from diffnb.scores import (
    PreparedData,
    _participation,
    _posterior_weights,
    _product_table,
    _weighted_covariance_eigvals,
    make_empirical_score,
    prepare_data,
)

__all__ = [
    "gaussian_posterior_variance",
    "noised_points",
    "block_order_parameter",
    "empirical_spectrum",
    "sweep",
    "official_probe_spectrum",
]

_CHUNK = 2**22  # elements of the (points x data) weight arrays held at once
_WEIGHT_TOL = 1e-30  # training points with at most this weight are skipped (see _weighted_covariance_eigvals)


# ------------------------------------------------------------------------------------------ helpers


def _data(data: Any) -> PreparedData:
    """The training set as float64 CPU :class:`~diffnb.scores.PreparedData` (:func:`~diffnb.scores.prepare_data`
    checks it); one that is already float64 on the CPU comes back as it is."""
    if isinstance(data, PreparedData):
        if data.points.dtype == torch.float64 and data.points.device.type == "cpu":
            return data
        data = data.points
    return prepare_data(as_tensor(data, "data", dtype=torch.float64).cpu())


def _points(x: Any, d: int, name: str = "x") -> torch.Tensor:
    X = torch.as_tensor(np.array(x, dtype=np.float64)) if not isinstance(x, torch.Tensor) else x
    X = X.to(torch.float64).cpu()
    if X.ndim == 1:
        X = X[None]
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"{name} must have shape (n, {d}) to match the data, got {tuple(X.shape)}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} holds NaN or infinite values")
    return X


def _times(t: Any, name: str = "t") -> np.ndarray:
    tt = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if tt.ndim != 1 or tt.size == 0 or not np.all(np.isfinite(tt)) or np.any(tt <= 0):
        raise ValueError(f"{name} must be positive finite noise variances (scalar or 1-D), got {tt.tolist()[:6]}")
    return tt


def _blocks(blocks: Sequence[Any], d: int) -> list[np.ndarray]:
    if isinstance(blocks, (slice, np.ndarray)) or not isinstance(blocks, Sequence) or len(blocks) == 0:
        raise ValueError("blocks must be a non-empty list of slices or index arrays, one per block")
    out = []
    for k, block in enumerate(blocks):
        idx = np.arange(d)[block] if isinstance(block, slice) else np.asarray(block, dtype=int).ravel()
        if idx.size == 0 or np.any(idx < 0) or np.any(idx >= d):
            raise ValueError(f"blocks[{k}] must select at least one of the {d} directions, got {block!r}")
        out.append(idx)
    return out


def _basis(basis: Any, d: int) -> torch.Tensor | None:
    if basis is None:
        return None
    B = torch.as_tensor(np.array(basis, dtype=np.float64))
    if B.shape != (d, d):
        raise ValueError(f"basis must be a ({d}, {d}) orthogonal matrix (directions as columns), got {tuple(B.shape)}")
    check_orthonormal_columns(B, "basis", atol=1e-8)
    return B


def _variances(variances: Any, d: int) -> np.ndarray:
    v = np.asarray(variances, dtype=np.float64)
    if v.shape != (d,) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"variances must be {d} positive numbers, one per direction, got shape {v.shape}")
    return v


def gaussian_posterior_variance(t: Any, variances: Any) -> np.ndarray:
    """Posterior variance of a Gaussian direction of variance ``s2`` observed with noise ``t``: ``t s2/(t+s2)``.

    Parameters
    ----------
    t
        Noise variance, positive, scalar or array.
    variances
        Population variance of each direction, shape ``(d,)``.

    Returns
    -------
    numpy.ndarray
        Shape ``t.shape + (d,)``.
    """
    tt = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(tt)) or np.any(tt <= 0):
        raise ValueError(f"t must be positive and finite, got {np.ravel(tt)[:6].tolist()}")
    v = np.asarray(variances, dtype=np.float64)
    if v.ndim != 1 or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("variances must be a 1-D array of positive numbers")
    tt = tt[..., None]
    return tt * v / (tt + v)


def noised_points(base: Any, noise: Any, t: float) -> np.ndarray:
    """Test points ``base + sqrt(t) * noise`` (shapes ``(n, d)``; ``base`` may be ``(d,)``, e.g. the origin)."""
    tt = _times(t)
    if tt.size != 1:
        raise ValueError("t must be a single noise variance")
    return np.asarray(base, dtype=np.float64) + np.sqrt(tt[0]) * np.asarray(noise, dtype=np.float64)


# ------------------------------------------------------------------------------------- one noise level


def _level(
    X: torch.Tensor,
    Y: torch.Tensor,
    y_sq: torch.Tensor,
    t: float,
    *,
    Yb: torch.Tensor | None,
    eig: bool,
    table: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
) -> dict[str, torch.Tensor | None]:
    """Weights' statistics at one noise level for points X (n, d).

    With ``eig``, the eigenvalues of the posterior covariance come from
    :func:`diffnb.scores._weighted_covariance_eigvals` (the closed form of
    :func:`diffnb.scores.empirical_jacobian_eigvals`): one matrix product with the products ``table`` of
    the data when it fits in memory, point by point otherwise.
    """
    n, d = X.shape
    P = Y.shape[0]
    out: dict[str, torch.Tensor | None] = {
        "pr": torch.empty(n, dtype=X.dtype),
        "var": torch.empty(n, d, dtype=X.dtype) if Yb is not None else None,
        "eig": torch.empty(n, d, dtype=X.dtype) if eig else None,
    }
    step = max(1, _CHUNK // max(1, P * 4))
    for start in range(0, n, step):
        xs = X[start : start + step]
        k = xs.shape[0]
        W = _posterior_weights(xs, Y, y_sq, torch.full((k,), t, dtype=X.dtype))
        out["pr"][start : start + k] = _participation(W)
        if Yb is not None:
            mb = W @ Yb
            out["var"][start : start + k] = (W @ (Yb * Yb) - mb * mb).clamp_min(0.0)
        if eig:
            out["eig"][start : start + k] = _weighted_covariance_eigvals(W, Y, weight_tol=_WEIGHT_TOL, table=table)
    return out


def _order_from_var(var: np.ndarray, t: float, v_basis: np.ndarray, blocks: list[np.ndarray]) -> np.ndarray:
    ratio = var / gaussian_posterior_variance(t, v_basis)
    return np.stack([ratio[..., idx].mean(-1) for idx in blocks], axis=-1)


def _spectrum_from_eig(eig: np.ndarray, t: float) -> np.ndarray:
    return np.sort(np.clip(1.0 - eig / t, 0.0, 1.0), axis=-1)


# ------------------------------------------------------------------------------------------ public API


def block_order_parameter(
    x: Any,
    data: Any,
    t: float,
    variances: Any,
    blocks: Sequence[Any],
    *,
    basis: Any = None,
) -> np.ndarray:
    """Posterior-weighted variance along each block over the Gaussian population posterior variance.

    For block :math:`B` and directions :math:`u_i` (columns of ``basis``, or the coordinate axes),

    .. math:: r_B(x, t) = \\frac{1}{|B|}\\sum_{i \\in B} \\frac{\\mathrm{Var}_w(u_i\\cdot y)}{t s_i^2/(t+s_i^2)},
              \\qquad \\mathrm{Var}_w(u\\cdot y) = \\sum_\\mu w_\\mu (u\\cdot y_\\mu)^2
              - \\Big(\\sum_\\mu w_\\mu\\, u\\cdot y_\\mu\\Big)^2.

    ``r_B`` is about 1 while the empirical score generalises along the block and tends to 0 when the
    weights freeze on training points that agree along it. For non-Gaussian data (e.g. data projected to
    the sphere) the population posterior differs from the Gaussian one, so the generalising value of
    ``r_B`` differs from 1: compare with the population's own value (:func:`sphere_posterior_variance` for
    data projected to the sphere) or a large-``P`` reference.

    Parameters
    ----------
    x
        Test points, shape ``(n, d)`` or ``(d,)``.
    data
        Training points, shape ``(P, d)``, or a :class:`~diffnb.scores.PreparedData` (checked once, for many
        calls).
    t
        Noise variance (a single positive number).
    variances
        Population variance ``s_i^2`` of every direction (in the ``basis``), shape ``(d,)``.
    blocks
        One slice or index array per block, selecting directions.
    basis
        Orthonormal directions as the columns of a ``(d, d)`` matrix (e.g. eigenvectors of the data
        covariance for a randomly embedded manifold); the coordinate axes by default.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, n_blocks)``.
    """
    res = sweep(
        data,
        x,
        np.zeros_like(np.asarray(x, dtype=np.float64)),
        [t],
        variances=variances,
        blocks=blocks,
        basis=basis,
        spectra=False,
    )
    return res["order"][0]


def empirical_spectrum(x: Any, data: Any, t: float) -> np.ndarray:
    """The normalised spectrum of the empirical-score Jacobian, ``1 - c_i/t`` clipped to ``[0, 1]``, ascending.

    ``t J = Cov_w / t - I`` (second-order Tweedie), with eigenvalues ``c_i/t - 1`` for the eigenvalues ``c_i``
    of the posterior covariance. Normal directions (``c_i = 0``) sit at exactly 1, generalising tangent
    directions at ``t/(s_i^2 + t)``, and a direction frozen by memorization (``c_i -> 0``) rejoins 1. Where
    the posterior spreads over several distant training points, ``c_i`` can exceed ``t`` (a positive
    eigenvalue of ``J``: ``x`` sits between training points); such directions are clipped to 0, i.e. counted
    as fully visible. Dividing by the largest singular value instead, as one does for networks, would let
    one such direction rescale the whole spectrum; with the exact Jacobian the normal value is known to be 1,
    so no division is needed. (For ``c_i <= t`` the values are the singular values of ``t J``.)

    Parameters
    ----------
    x
        Test points, shape ``(n, d)`` or ``(d,)``.
    data
        Training points, shape ``(P, d)``, or a :class:`~diffnb.scores.PreparedData` (checked once, for many
        calls).
    t
        Noise variance (a single positive number).

    Returns
    -------
    numpy.ndarray
        Shape ``(n, d)``.
    """
    res = sweep(data, x, np.zeros_like(np.asarray(x, dtype=np.float64)), [t], order=False)
    return res["spectra"][0]


def sweep(
    data: Any,
    base: Any,
    noise: Any,
    times: Any,
    *,
    variances: Any = None,
    blocks: Sequence[Any] | None = None,
    basis: Any = None,
    spectra: bool = True,
    order: bool = True,
) -> dict[str, np.ndarray]:
    """Memorization statistics of the empirical score over a grid of noise levels.

    At every noise level ``t`` the test points are ``x = base + sqrt(t) * noise``; the same ``noise`` is
    used at every level, so the curves over ``t`` are smooth.

    Parameters
    ----------
    data
        Training points, shape ``(P, d)``, or a :class:`~diffnb.scores.PreparedData` (checked once, for many
        calls).
    base
        Base points, shape ``(n, d)``, or ``(d,)`` (e.g. the origin) broadcast against ``noise``.
    noise
        Standard normal draws, shape ``(n, d)``.
    times
        Noise variances, shape ``(n_times,)``.
    variances, blocks, basis
        As in :func:`block_order_parameter`; needed when ``order`` is true.
    spectra
        Compute the normalised Jacobian spectra (needs a ``d x d`` eigen-decomposition per point).
    order
        Compute the per-block order parameter.

    Returns
    -------
    dict
        ``"times"`` ``(n_times,)``; ``"participation"`` ``(n_times, n)``; ``"order"``
        ``(n_times, n, n_blocks)`` when ``order``; when ``spectra``, ``"spectra"`` ``(n_times, n, d)`` as
        returned by :func:`empirical_spectrum` and ``"eigenvalues"`` ``(n_times, n, d)``, the eigenvalues of
        ``t J`` in ascending order.
    """
    prepared = _data(data)
    Y, y_sq = prepared.points, prepared.squared_norms
    P, d = Y.shape
    xi = _points(noise, d, "noise")
    b = _points(np.broadcast_to(np.asarray(base, dtype=np.float64), xi.shape), d, "base")
    tt = _times(times, "times")
    Yb = None
    if order:
        if variances is None or blocks is None:
            raise ValueError("order=True needs variances and blocks")
        v = _variances(variances, d)
        idx = _blocks(blocks, d)
        B = _basis(basis, d)
        Yb = Y @ B if B is not None else Y
    table = _product_table(Y) if spectra else None
    result: dict[str, np.ndarray] = {"times": tt, "participation": np.empty((tt.size, xi.shape[0]))}
    if order:
        result["order"] = np.empty((tt.size, xi.shape[0], len(idx)))
    if spectra:
        result["spectra"] = np.empty((tt.size, xi.shape[0], d))
        result["eigenvalues"] = np.empty((tt.size, xi.shape[0], d))
    for k, t in enumerate(tt):
        X = b + float(np.sqrt(t)) * xi
        level = _level(X, Y, y_sq, float(t), Yb=Yb, eig=spectra, table=table)
        result["participation"][k] = level["pr"].numpy()
        if order:
            result["order"][k] = _order_from_var(level["var"].numpy(), float(t), v, idx)
        if spectra:
            eig = level["eig"].numpy()
            result["spectra"][k] = _spectrum_from_eig(eig, float(t))
            result["eigenvalues"][k] = eig / float(t) - 1.0
    return result


def official_probe_spectrum(
    x: Any,
    data: Any,
    t: float,
    *,
    absolute: bool = True,
    directions: Any = "identity",
    seed: int | None = None,
) -> np.ndarray:
    """The memorization paper's empirical-score simulation at points ``x`` (its official code), descending.

    The official code moves the point by :math:`\\pm\\sqrt t/2` along each coordinate axis, takes the
    difference of the empirical scores over :math:`\\sqrt t` (a central difference across a step as large as
    the noise, i.e. a *secant* of the score, not its derivative), replaces every entry by its absolute value
    (``(a - b) / (sqrt(t) * sign(a - b))``) and returns the singular values. The paper's figure then drops
    the 6 largest and divides by the largest remaining one (:func:`diffnb.spectra.normalize_spectrum`).

    Parameters
    ----------
    x
        Points, shape ``(n, d)`` or ``(d,)`` (the official code uses the origin).
    data
        Training points, shape ``(P, d)``, or a :class:`~diffnb.scores.PreparedData` (checked once, for many
        calls).
    t
        Noise variance.
    absolute
        Take absolute values element-wise, as the official code does (its ``sign`` quirk).
    directions
        ``"identity"`` (the official axes), ``"random"`` (a Haar orthogonal matrix) or a ``(d, d)`` tensor.
    seed
        Seed of the random directions.

    Returns
    -------
    numpy.ndarray
        Raw singular values (not normalised), shape ``(n, d)``, in descending order.
    """
    prepared = _data(data)
    X = _points(x, prepared.points.shape[1])
    tt = _times(t)
    if tt.size != 1:
        raise ValueError("t must be a single noise variance")
    J = score_jacobian(
        make_empirical_score(prepared),
        X,
        float(tt[0]),
        method="probe",
        scale=0.5,
        symmetric=True,
        directions=directions,
        seed=seed,
    )
    if absolute:
        J = J.abs()
    return svdvals(J).numpy()


def mean_posterior_covariance(x: Any, data: Any, t: float) -> np.ndarray:
    r"""Posterior covariance of the empirical score averaged over points, :math:`\langle\mathrm{Cov}_w\rangle`.

    By the second-order Tweedie identity the average normalised Jacobian over the points is
    :math:`\langle tJ\rangle = \langle\mathrm{Cov}_w\rangle/t - I`. Averaging first removes what single points
    add on their own: where the weights sit on one training point plus a tiny share of a distant one, that
    point's :math:`\mathrm{Cov}_w` has one large eigenvalue along the line between the two (a positive
    eigenvalue of :math:`J`); these directions differ from point to point and average out. The average is
    two matrix products, :math:`Y^\top \mathrm{diag}(\bar w) Y - \frac1n \sum_x \bar y_x \bar y_x^\top` with
    :math:`\bar w` the weights averaged over the points and :math:`\bar y_x` the posterior means.

    Parameters
    ----------
    x
        Points, shape ``(n, d)`` (e.g. noised training points ``y + sqrt(t) xi``, the points the empirical
        score's own generation visits).
    data
        Training points, shape ``(P, d)``, or a :class:`~diffnb.scores.PreparedData` (checked once, for many
        calls).
    t
        Noise variance (one positive number).

    Returns
    -------
    numpy.ndarray
        Shape ``(d, d)``, symmetric positive semi-definite (float64).
    """
    prepared = _data(data)
    Y, y_sq = prepared.points, prepared.squared_norms
    X = _points(x, Y.shape[1])
    tt = _times(t)
    if tt.size != 1:
        raise ValueError("t must be a single noise variance")
    W = _posterior_weights(X, Y, y_sq, torch.full((X.shape[0],), float(tt[0]), dtype=X.dtype))
    means = W @ Y
    second = Y.T @ (W.mean(0)[:, None] * Y)
    cov = second - means.T @ means / X.shape[0]
    return (0.5 * (cov + cov.T)).numpy()


__all__ += ["mean_posterior_covariance"]


def sphere_posterior_variance(
    x: Any,
    t: Any,
    scales: Any,
    *,
    n_steps: int = 4000,
    beta: float = 0.7,
    local_beta: float = 0.15,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    r"""Posterior variance of every coordinate under the *population* of a Gaussian projected to the unit sphere.

    The data are :math:`y = u/\lVert u\rVert`, :math:`u \sim N(0, \mathrm{diag}(s^2))` (``scales`` ``s``;
    :class:`~diffnb.data.linear.AxisAlignedManifold` with ``normalized=True``), observed as
    :math:`x = y + \sqrt t\,\xi`. Since :math:`\lVert y\rVert = 1`, the posterior is
    :math:`p(y\mid x) \propto p(y)\, e^{x\cdot y/t}`: the limit :math:`P \to \infty` of the empirical
    posterior, i.e. what the order parameter of a score that generalises perfectly would measure. It has no
    closed form (except for equal scales, where it is a von Mises–Fisher law), so it is sampled in
    :math:`u`-space, whose target :math:`N(u; 0, \mathrm{diag}(s^2))\, e^{x\cdot u/(\lVert u\rVert t)}` is
    explicit, by a Metropolis–Hastings chain per point (preconditioned Crank–Nicolson moves around a Gaussian
    approximation of the posterior, with a wide radial direction since the target leaves the radius to the
    prior). Every other move is a small one (``local_beta``): a chain in a region where the Gaussian
    approximation is poor rejects nearly every large move. With large moves alone, about 2% of the chains of
    chapter 4's set (a) at :math:`t \le 4\times 10^{-3}` accepted under 5% of their moves and up to 2 in 1000
    under 1% (their variance then far too small); with the small moves in between, none of 20 000 chains at
    :math:`t = 10^{-3}` to :math:`0.1` accepted under 5%. Each kind of move leaves the target
    exactly invariant, so the only error is Monte Carlo error, which shrinks with ``n_steps`` (the first fifth
    is discarded). With the defaults the medians over points of
    chapter 4's set (a) agree with a direct :math:`P = 200\,000` empirical posterior within about 0.01, and
    equal scales reproduce the von Mises–Fisher variances (tests).

    Parameters
    ----------
    x
        Points, shape ``(n, d)`` or ``(d,)``.
    t
        Noise variance: one positive number, or one per point, shape ``(n,)``.
    scales
        Standard deviations ``s`` of the Gaussian before the projection, shape ``(d,)``, positive.
    n_steps
        Steps of every chain (at least 50).
    beta
        Step parameter of the large Crank–Nicolson moves (the even steps), in ``(0, 1]``.
    local_beta
        Step parameter of the small ones (the odd steps), in ``(0, 1]``.
    seed
        Seed or generator of the chains.

    Returns
    -------
    numpy.ndarray
        Posterior variance of every coordinate of ``y``, shape ``(n, d)``.
    """
    s = np.asarray(scales, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"scales must be a 1-D array of positive standard deviations, got {np.asarray(scales)!r}")
    s2 = s**2
    d = s2.size
    X = _points(x, d).numpy()
    n = X.shape[0]
    tt = _times(t)
    if tt.size not in (1, n):
        raise ValueError(f"t must be one noise variance or one per point ({n}), got {tt.size}")
    tt = np.broadcast_to(tt, (n,))[:, None]
    if int(n_steps) != n_steps or n_steps < 50:
        raise ValueError(f"n_steps must be an integer of at least 50, got {n_steps!r}")
    for name, value in (("beta", beta), ("local_beta", local_beta)):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    rng = np.random.default_rng(seed)
    # Gaussian approximation of the posterior of u: a linear observation x = u / R + noise, with R the
    # prior's typical radius in the direction of x (the weight t/(s2 + t) first pulls x onto the data)
    y = X * s2 / (s2 + tt)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    q = (y * y / s2).sum(1)
    R = np.sqrt(d / q)[:, None]
    D = 1.0 / (1.0 / s2 + 1.0 / (R * R * tt))  # diagonal part of its covariance
    m = D * X / (R * tt)  # its mean
    mh = m / np.linalg.norm(m, axis=1, keepdims=True)
    # the radius |u| keeps its prior spread, about 1/sqrt(2d) relative: add that variance along m
    c = (np.linalg.norm(m, axis=1) / np.sqrt(2.0 * d)) ** 2
    Dm = mh / D
    sherman = c / (1.0 + c * (mh * Dm).sum(1))

    def log_ratio(u: np.ndarray) -> np.ndarray:
        # log target - log reference Gaussian (its inverse covariance by Sherman-Morrison)
        e = u - m
        quad = (e * e / D).sum(1) - sherman * (e * Dm).sum(1) ** 2
        return -0.5 * (u * u / s2).sum(1) + (X * u).sum(1) / (np.linalg.norm(u, axis=1) * tt[:, 0]) + 0.5 * quad

    # start from the prior's radius along the approximate posterior direction
    u = np.sqrt(rng.gamma(d / 2.0, 2.0 / q))[:, None] * y
    lr = log_ratio(u)
    # (kept fraction, step along D, step along mh) of the large and the small moves
    moves = [(np.sqrt(1.0 - b**2), b * np.sqrt(D), b * np.sqrt(c)[:, None]) for b in (beta, local_beta)]
    burn = int(n_steps) // 5
    s1, s2_sum = np.zeros((n, d)), np.zeros((n, d))
    for k in range(int(n_steps)):
        keep, sd, sc = moves[k % 2]
        proposal = m + keep * (u - m) + sd * rng.standard_normal((n, d)) + sc * rng.standard_normal((n, 1)) * mh
        lr_new = log_ratio(proposal)
        accept = np.log(rng.random(n)) < lr_new - lr
        u[accept], lr[accept] = proposal[accept], lr_new[accept]
        if k >= burn:
            yk = u / np.linalg.norm(u, axis=1, keepdims=True)
            s1 += yk
            s2_sum += yk * yk
    count = int(n_steps) - burn
    mean = s1 / count
    return np.clip(s2_sum / count - mean * mean, 0.0, None)


__all__ += ["sphere_posterior_variance"]
