r"""Spectra over time: normalisation conventions, dimension estimators and crossings of curves over noise.

A *spectrum* here is a set of non-negative values per point and noise level, typically the singular values
of the score Jacobian (notation appendix): for the normalised Jacobian :math:`tJ` of an exact score they are
:math:`t/(\lambda_i + t)` along tangent directions and 1 along normal ones, and the book divides singular
values by the largest one, so that **normal directions sit near 1 and tangent directions below**. The local
dimension of the data manifold is the number of values below the gap that separates them.

*Spectra over time* are arrays of shape ``(..., n_times, k)``: leading batch axes (points, data-set sizes),
then one row per noise level. The functions here are vectorised over those axes:

* :func:`normalize_spectrum` — sort, optionally drop the largest values (as the papers' plots do), divide by
  the largest value kept;
* :func:`estimate_dimension` — one spectrum to one integer, by the largest gap, a threshold, or the official
  second-difference "cliff" estimator of the memorization paper;
* :func:`dimension_over_time` — the same at every noise level (and every leading index) at once;
* :func:`cliff_dimensions` — the official estimator's pooled output, as its code returns it;
* :func:`crossing_time` — the noise level at which a curve over time first falls below a level, interpolated
  in ``log t``;
* :func:`first_level_where` — the first noise level on the grid at which a condition holds (e.g. a dimension
  below ``k``), following the levels from the largest or the smallest.
* :func:`mean_jacobian_spectra` — singular values of the score Jacobian averaged over (noised) points, per
  level, and :func:`resolution_above` — a resolution above a measured normal bulk;
* :func:`classify_phases` — label every noise level trivial / coverage / consolidation at a resolution
  ``delta`` (the definitions of :func:`diffnb.theory.spectral.phase_boundaries`) and measure the boundaries;
  :func:`phase_sequence` — the phases in the order generation meets them;
* :func:`gaussian_score_spectra` and :func:`linear_score_spectra` — the exact spectra over time of the score of
  a Gaussian (given its covariance eigenvalues) and of the Gaussian linear manifold, in any of the conventions
  above;
* :func:`rayleigh_quotients` — ``-u.J.u`` along given directions, optionally divided by ``|J|``: what a
  Jacobian does along known tangent, normal or radial directions.

NumPy arrays and torch tensors are accepted; results are NumPy (dimensions are integers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffnb._linalg import gram_eigvalsh
from diffnb._validation import as_float_array, check_choice, check_finite_array, check_positive_number

__all__ = [
    "DIMENSION_METHODS",
    "normalize_spectrum",
    "estimate_dimension",
    "dimension_over_time",
    "cliff_dimensions",
    "crossing_time",
    "first_level_where",
]

#: The methods of :func:`estimate_dimension`.
DIMENSION_METHODS: tuple[str, ...] = ("largest_gap", "threshold", "cliff")
_DEFAULTS: dict[str, dict[str, Any]] = {
    "largest_gap": {"min_gap": 0.05, "drop_largest": 0},
    "threshold": {"delta": 0.1, "drop_largest": 0},
    "cliff": {"c": 10.0, "d_bar": 0, "reduce": "bottom", "floor": 1e-9},
}


def _as_array(values: Any, name: str) -> np.ndarray:
    array = as_float_array(values, name)
    if array.ndim == 0:
        raise ValueError(f"{name} must have at least one axis (the spectrum), got a scalar")
    if array.shape[-1] == 0:
        raise ValueError(f"{name} is empty along its last axis")
    check_finite_array(array, name)
    return array


def _positive_times(times: Any, min_levels: int = 1) -> np.ndarray:
    """``times`` as a checked 1-D float64 array of at least ``min_levels`` positive noise levels."""
    t = _as_array(times, "times")
    if t.ndim != 1 or t.shape[0] < min_levels or np.any(t <= 0):
        least = "" if min_levels == 1 else f"at least {min_levels} "
        raise ValueError(f"times must be a 1-D array of {least}positive noise levels, got shape {t.shape}")
    return t


def _points_times_noise(points: Any, times: Any, noise: Any, dtype: torch.dtype | None):
    """Checked inputs of the Jacobian-spectrum helpers: points ``(n, d)`` as a tensor (float32 by default
    for arrays, a tensor's own dtype otherwise), positive 1-D ``times``, optional ``noise`` like ``points``."""
    if isinstance(points, torch.Tensor):
        X = points.detach()
        if dtype is not None:
            X = X.to(dtype)
    else:
        X = torch.as_tensor(_as_array(points, "points"), dtype=dtype or torch.float32)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"points must have shape (n_points, d) with n_points >= 1, got {tuple(X.shape)}")
    t = _positive_times(times)
    xi = None
    if noise is not None:
        xi = torch.as_tensor(_as_array(noise, "noise"), dtype=X.dtype, device=X.device)
        if xi.shape != X.shape:
            raise ValueError(f"noise must have the shape of points {tuple(X.shape)}, got {tuple(xi.shape)}")
    return X, t, xi


def normalize_spectrum(values: Any, *, drop_largest: int = 0, descending: bool = False) -> np.ndarray:
    """Sort a spectrum, drop its largest values if asked, and divide by the largest value kept.

    This is the book's convention for singular values (normal directions near 1). ``drop_largest``
    reproduces the papers' plots, which discard the top of the spectrum (e.g. frozen directions that jump
    above the normal bulk in the memorization paper's theory panel, ``drop_largest=7``).

    Parameters
    ----------
    values
        Non-negative values (singular values, or magnitudes of eigenvalues), shape ``(..., k)``.
    drop_largest
        Number of largest values to discard before normalising, ``0 <= drop_largest < k``.
    descending
        Return each spectrum in descending order (the papers' rank order) instead of ascending.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., k - drop_largest)``; the largest value of every spectrum is 1.

    Raises
    ------
    ValueError
        If values are negative or not finite, ``drop_largest`` is out of range, or a spectrum is all zero.
    """
    array = _as_array(values, "values")
    if np.any(array < 0):
        raise ValueError("values must be non-negative (pass singular values or np.abs(eigenvalues))")
    k = array.shape[-1]
    if not isinstance(drop_largest, (int, np.integer)) or not 0 <= drop_largest < k:
        raise ValueError(f"drop_largest must be an integer in [0, {k - 1}], got {drop_largest!r}")
    kept = np.sort(array, axis=-1)[..., : k - int(drop_largest)]
    top = kept[..., -1:]
    if np.any(top <= 0):
        raise ValueError("values: a spectrum is all zero and cannot be normalised by its largest value")
    out = kept / top
    return out[..., ::-1] if descending else out


def _options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    check_choice(method, DIMENSION_METHODS, "method")
    allowed = _DEFAULTS[method]
    unknown = set(options) - set(allowed)
    if unknown:
        raise TypeError(f"unknown options for method={method!r}: {sorted(unknown)}; allowed: {sorted(allowed)}")
    merged = {**allowed, **options}
    if method in ("largest_gap", "threshold"):
        key = "min_gap" if method == "largest_gap" else "delta"
        if not np.isfinite(merged[key]) or not 0 <= merged[key] < 1:
            raise ValueError(f"{key} must be in [0, 1) (a fraction of the largest value), got {merged[key]!r}")
    if method == "cliff":
        if not np.isfinite(merged["c"]) or merged["c"] <= 0:
            raise ValueError(f"c must be a positive multiple of the median curvature, got {merged['c']!r}")
        if merged["reduce"] not in ("bottom", "mean"):
            raise ValueError(f"reduce must be 'bottom' or 'mean', got {merged['reduce']!r}")
        if not np.isfinite(merged["floor"]) or merged["floor"] < 0:
            raise ValueError(f"floor must be non-negative, got {merged['floor']!r}")
    return merged


def _dims_sorted(norm: np.ndarray, method: str, opts: dict[str, Any]) -> np.ndarray:
    """Dimensions of ascending, max-normalised spectra ``(..., k)`` -> integer array ``(...)``."""
    if method == "threshold":
        return np.sum(norm < 1.0 - opts["delta"], axis=-1)
    if method == "largest_gap":
        gaps = np.diff(norm, axis=-1)
        if gaps.shape[-1] == 0:
            return np.zeros(norm.shape[:-1], dtype=int)
        # the last maximal gap wins ties, so flat stretches below it count as tangent
        k_minus_1 = gaps.shape[-1]
        pos = k_minus_1 - 1 - np.argmax(gaps[..., ::-1], axis=-1)
        best = np.take_along_axis(gaps, pos[..., None], axis=-1)[..., 0]
        return np.where(best >= opts["min_gap"], pos + 1, 0)
    # cliff: official second-difference estimator on the descending spectrum, one spectrum at a time
    flat = norm.reshape(-1, norm.shape[-1])
    out = np.array([_cliff_single(row[::-1], opts) for row in flat], dtype=int)
    return out.reshape(norm.shape[:-1])


def _cliff_single(desc: np.ndarray, opts: dict[str, Any]) -> int:
    d = desc.shape[0]
    d_bar = int(opts["d_bar"])
    if d < d_bar + 3:
        raise ValueError(f"the cliff estimator needs at least d_bar + 3 = {d_bar + 3} values, got {d}")
    second = np.diff(desc[d_bar:], n=2)
    threshold = max(opts["c"] * np.median(np.abs(second)), opts["floor"])
    spikes = np.nonzero(np.abs(second) > threshold)[0]
    if spikes.size == 0:
        return 0
    dims = d - (spikes + 1 + d_bar)
    if opts["reduce"] == "mean":
        return int(np.rint(dims.mean()))
    positive = spikes[second[spikes] > 0]
    if positive.size == 0:
        return int(dims.min())
    bottom = positive[np.argmax(second[positive])]
    return int(d - (bottom + 1 + d_bar))


def estimate_dimension(values: Any, method: str = "largest_gap", **options: Any) -> int:
    """Number of tangent directions read from one spectrum of singular values (any order).

    The spectrum is sorted and divided by its largest value (:func:`normalize_spectrum`), so normal
    directions sit near 1. Methods:

    ``"largest_gap"``
        The number of values below the largest gap between consecutive sorted values. Options:
        ``min_gap`` (0.05) — if the largest gap is smaller than this fraction of the largest value, the
        spectrum has no gap and the dimension is 0 (everything has merged into the normal bulk);
        ``drop_largest`` (0).
    ``"threshold"``
        The number of values below ``1 - delta``. Options: ``delta`` (0.1), ``drop_largest`` (0).
    ``"cliff"``
        The memorization paper's estimator for image spectra (its official code): drop the ``d_bar`` largest
        values, take the absolute second difference along the descending spectrum, and call every index
        where it exceeds ``c`` times its median a cliff ``n``, with dimension ``d - (n + 1 + d_bar)``.
        Options: ``c`` (10), ``d_bar`` (0), ``reduce`` — ``"bottom"`` (default) takes the cliff whose
        signed second difference is the largest positive one (the foot of the steepest drop, which gives
        the exact count for a step), ``"mean"`` the official pooling (rounded mean over all cliffs, biased
        by about +1/2 on a sharp step, whose top corner is also a cliff); ``floor`` (1e-9) — a minimum
        threshold, so that the exactly flat stretches of exact spectra (median 0) do not turn rounding
        noise into cliffs (a departure from the official code, which has no floor). No cliff gives 0.

    Parameters
    ----------
    values
        One spectrum, shape ``(k,)``, non-negative.
    method
        One of :data:`DIMENSION_METHODS`.
    **options
        Method options as above; unknown names raise ``TypeError``.

    Returns
    -------
    int
        The estimated number of tangent directions, in ``[0, k]``.

    Examples
    --------
    >>> estimate_dimension([1.0, 1.0, 1.0, 0.2, 0.1])
    2
    >>> estimate_dimension([1.0, 0.95, 0.2], method="threshold", delta=0.1)
    1
    """
    array = _as_array(values, "values")
    if array.ndim != 1:
        raise ValueError(
            f"values must be one spectrum of shape (k,), got {array.shape}; use dimension_over_time for arrays"
        )
    return int(dimension_over_time(array[None], method, **options)[0])


def dimension_over_time(spectra: Any, method: str = "largest_gap", **options: Any) -> np.ndarray:
    """The dimension of every spectrum of a spectrum-over-time array.

    Parameters
    ----------
    spectra
        Non-negative values, shape ``(..., n_times, k)`` (any leading axes; a single spectrum ``(k,)`` is
        accepted too).
    method, **options
        As in :func:`estimate_dimension`.

    Returns
    -------
    numpy.ndarray
        Integers of shape ``spectra.shape[:-1]``.
    """
    opts = _options(method, options)
    array = _as_array(spectra, "spectra")
    drop = opts.get("drop_largest", 0)
    norm = normalize_spectrum(array, drop_largest=drop)
    return _dims_sorted(norm, method, opts).astype(int)


def cliff_dimensions(spectra: Any, c: float = 10.0, d_bar: int = 0) -> np.ndarray:
    """The memorization paper's cliff estimator exactly as its official code pools it over many spectra.

    The median of the absolute second differences is taken over **all** spectra together, every index above
    ``c`` times it is a cliff, and the dimension ``d - (n + 1 + d_bar)`` of every cliff of every spectrum is
    returned in one flat array (the paper plots its mean and standard deviation). Spectra are sorted in
    descending order first; they are not normalised (the official code does not normalise either).

    Parameters
    ----------
    spectra
        Shape ``(..., d)``, non-negative.
    c
        Threshold multiplier.
    d_bar
        Number of largest values dropped first.

    Returns
    -------
    numpy.ndarray
        Integer dimensions, one per cliff; empty when there is none.
    """
    array = _as_array(spectra, "spectra")
    if np.any(array < 0):
        raise ValueError("spectra must be non-negative")
    if not np.isfinite(c) or c <= 0:
        raise ValueError(f"c must be positive, got {c!r}")
    rows = -np.sort(-array.reshape(-1, array.shape[-1]), axis=-1)
    d = rows.shape[-1]
    if not isinstance(d_bar, (int, np.integer)) or d_bar < 0 or d < d_bar + 3:
        raise ValueError(f"d_bar must be an integer with d_bar + 3 <= {d}, got {d_bar!r}")
    second = np.abs(np.diff(rows[:, d_bar:], n=2, axis=-1))
    threshold = c * np.median(second)
    _, idx = np.nonzero(second > threshold)
    return (d - (idx + 1 + d_bar)).astype(int)


def crossing_time(times: Any, curve: Any, level: float = 0.5) -> np.ndarray:
    """Noise level at which a curve over time first falls below ``level`` when noise is decreased.

    Following the curve from the largest ``t`` down, the first interval where it goes from ``>= level`` to
    ``< level`` is located and the crossing interpolated linearly in ``log t``. Curves that never cross (or
    start below the level) give NaN.

    Parameters
    ----------
    times
        Noise levels, shape ``(n_times,)``, positive, any order.
    curve
        Values, shape ``(..., n_times)`` matching ``times``.
    level
        The level to cross.

    Returns
    -------
    numpy.ndarray
        Shape ``curve.shape[:-1]`` (a 0-d array for one curve).
    """
    t = _positive_times(times, min_levels=2)
    y = _as_array(curve, "curve")
    if y.shape[-1] != t.shape[0]:
        raise ValueError(f"curve must have {t.shape[0]} values along its last axis, got {y.shape}")
    order = np.argsort(t)[::-1]  # large t first
    log_t, y = np.log(t[order]), y[..., order]
    above = y >= level
    # first index j (from large t) such that y[j-1] >= level and y[j] < level, and all earlier stay above
    starts_above = above[..., 0]
    first_below = np.argmax(~above, axis=-1)
    has_below = np.any(~above, axis=-1)
    ok = starts_above & has_below
    j = np.where(ok, first_below, 1)
    y0 = np.take_along_axis(y, (j - 1)[..., None], axis=-1)[..., 0]
    y1 = np.take_along_axis(y, j[..., None], axis=-1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(y0 != y1, (y0 - level) / (y0 - y1), 0.0)
    out = np.exp(log_t[j - 1] + frac * (log_t[j] - log_t[j - 1]))
    return np.where(ok, out, np.nan)


# ---------------------------------------------------------------------------------------------------------
# spectra of score networks (and any score callable) over points and noise levels
# ---------------------------------------------------------------------------------------------------------


def implied_variances(score_fn: Any, x: torch.Tensor, t: float, directions: Any) -> np.ndarray:
    r"""The data variance a score implies along given directions at noise level ``t``.

    The Jacobian is averaged over the points ``x`` and its Rayleigh quotients
    :math:`q = -u^\top(t\bar J)\,u` taken (:func:`rayleigh_quotients`, not normalised); an exact score of a
    Gaussian gives :math:`q = t/(\lambda + t)` along an eigenvector of variance :math:`\lambda`, so the
    variance is :math:`t(1 - q)/q`. For a network this is the variance it has learned along each direction.

    Parameters
    ----------
    score_fn
        ``score_fn(x, t)`` as for :func:`diffnb.jacobian.score_jacobian`.
    x
        Points, a tensor of shape ``(n, d)`` (e.g. noised training points).
    t
        Noise variance, a positive number.
    directions
        Shape ``(k, d)``; each is normalised to unit length.

    Returns
    -------
    numpy.ndarray
        Shape ``(k,)``, float64.
    """
    from diffnb.jacobian import score_jacobian

    check_positive_number(t, "t")
    q = rayleigh_quotients(t * score_jacobian(score_fn, x, t).mean(0), directions, normalize=False)
    return t * (1.0 - q) / q


def first_level_where(times: Any, condition: Any, *, start: str = "large") -> np.ndarray:
    """The first noise level at which a condition holds, following the levels from the largest or smallest.

    The grid counterpart of :func:`crossing_time` for curves that are read level by level rather than
    interpolated, typically an integer dimension: ``first_level_where(times, dims < 6)`` is the noise level at
    which the dimension first drops below 6 as noise is decreased (the direction of generation), and
    ``first_level_where(times, dims > 0, start="small")`` the smallest noise level at which any direction is
    read. The condition is built by the caller, so the comparison (``<``, ``<=``, ``==``, ...) is explicit
    there. Where it never holds the result is NaN.

    Parameters
    ----------
    times
        Noise levels, shape ``(n_times,)``, positive, any order.
    condition
        Booleans, shape ``(..., n_times)``, one per noise level in the order of ``times`` (any leading axes:
        test points, data-set sizes).
    start
        ``"large"``: follow the levels from the largest ``t`` down; ``"small"``: from the smallest ``t`` up.

    Returns
    -------
    numpy.ndarray
        Noise levels (float64; NaN where the condition never holds), shape ``condition.shape[:-1]`` (a 0-d
        array for one curve).

    Raises
    ------
    TypeError
        If ``condition`` is not boolean.
    ValueError
        For malformed ``times``, a ``condition`` that does not match them, or an unknown ``start``.

    Examples
    --------
    >>> dims = [0, 3, 6, 7]  # at t = 0.001, 0.01, 0.1, 1
    >>> float(first_level_where([0.001, 0.01, 0.1, 1.0], [d < 6 for d in dims]))
    0.01
    >>> float(first_level_where([0.001, 0.01, 0.1, 1.0], [d > 0 for d in dims], start="small"))
    0.01
    """
    check_choice(start, ("large", "small"), "start")
    t = _positive_times(times)
    if isinstance(condition, torch.Tensor):
        condition = condition.detach().cpu().numpy()
    mask = np.asarray(condition)
    if mask.dtype != bool:
        raise TypeError(
            f"condition must be an array of booleans (e.g. dims < 6), got dtype {mask.dtype}; compare first"
        )
    if mask.ndim == 0 or mask.shape[-1] != t.shape[0]:
        raise ValueError(f"condition must have shape (..., {t.shape[0]}), one value per noise level, got {mask.shape}")
    order = np.argsort(t, kind="stable")
    if start == "large":
        order = order[::-1]
    ordered = mask[..., order]
    first = np.argmax(ordered, axis=-1)
    return np.where(np.any(ordered, axis=-1), t[order][first], np.nan)


# ---------------------------------------------------------------------------------------------------------
# spectra of score networks (and any score callable) over points and noise levels
# ---------------------------------------------------------------------------------------------------------


def score_spectra_over_time(
    score_fn: Any,
    points: Any,
    times: Any,
    *,
    method: str = "autograd",
    normalize: bool = True,
    noise: Any = None,
    dtype: torch.dtype | None = None,
    **options: Any,
) -> np.ndarray:
    """Singular values of the score Jacobian at every point and noise level, in one batched computation.

    For a trained network this is the "spectrum over time" of both papers: the Jacobian of
    ``score_fn(x, t)`` at every point of ``points`` and every VE noise variance of ``times`` (computed by
    :func:`diffnb.jacobian.score_jacobian`, exact autograd by default), its singular values, sorted
    ascending and, with ``normalize``, divided by the largest one (normal directions then sit near 1).

    Parameters
    ----------
    score_fn
        ``score_fn(x, t)`` with ``x`` of shape ``(n, d)`` and ``t`` of shape ``(n,)``, e.g.
        ``trained.model.score``.
    points
        Points, shape ``(n_points, d)`` (array or tensor).
    times
        VE noise variances, shape ``(n_times,)``, positive.
    method
        ``"autograd"`` (exact), ``"central"`` or ``"probe"`` (the papers' estimator); see
        :func:`diffnb.jacobian.score_jacobian`.
    normalize
        Divide every spectrum by its largest value.
    noise
        Optional standard normal draws of shape ``(n_points, d)``: the Jacobian at level ``t`` is then taken
        at the noised points ``points + sqrt(t) * noise`` (the same draws at every level, so curves over
        ``t`` are smooth; the convention of :func:`diffnb.posterior.sweep`). Without it, at ``points``.
    dtype
        Dtype of the points given to ``score_fn``; by default that of a tensor ``points``, else float32
        (networks) — pass ``torch.float64`` for exact scores.
    **options
        Passed to :func:`diffnb.jacobian.score_jacobian` (e.g. ``batch_size``, ``seed``).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_points, n_times, d)``, ascending along the last axis.
    """
    from diffnb.jacobian import score_jacobian, singular_values

    X, t, xi = _points_times_noise(points, times, noise, dtype)
    n, d = X.shape
    k = t.shape[0]
    # every (point, time) pair is one row: points vary slowest
    X_rep = X.repeat_interleave(k, dim=0)
    t_rep = torch.as_tensor(np.tile(t, n), dtype=X.dtype, device=X.device)
    if xi is not None:
        X_rep = X_rep + t_rep.sqrt()[:, None] * xi.repeat_interleave(k, dim=0)
    J = score_jacobian(score_fn, X_rep, t_rep, method=method, **options)
    sv = singular_values(J.detach()).cpu().numpy().astype(np.float64, copy=False)
    sv = np.sort(sv, axis=-1).reshape(n, k, d)
    if normalize:
        sv = sv / sv[..., -1:]
    return sv


def rayleigh_quotients(jacobians: Any, directions: Any, *, normalize: bool = True) -> np.ndarray:
    r"""Normalised Rayleigh quotients :math:`-u^\top J u / \lVert J \rVert` of Jacobians along given directions.

    For the exact score of a Gaussian, ``-u.(tJ).u = t / (lambda + t)`` along an eigenvector of variance
    ``lambda``: about 0 along a resolved tangent direction and 1 along a normal one. For a network the quotient
    along known directions (coordinate axes, the eigenvectors of the data covariance, the radial direction of
    a point) says which of them its score has learned, without sorting or matching singular vectors. Only the
    symmetric part of ``J`` contributes (``u.A.u = 0`` for antisymmetric ``A``).

    Parameters
    ----------
    jacobians
        Shape ``(..., d, d)`` (array or tensor), e.g. from :func:`diffnb.jacobian.score_jacobian`.
    directions
        Shape ``(k, d)`` (the same directions for every Jacobian) or ``(..., k, d)`` broadcasting against the
        leading axes of ``jacobians`` (e.g. one radial direction per point: ``(n, 1, d)``). Each direction is
        normalised to unit length; none may be zero.
    normalize
        Divide by the largest singular value of each Jacobian (the book's convention for networks: normal
        directions near 1). ``False`` returns ``-u.J.u`` itself, e.g. for ``t J`` of a Jacobian already scaled.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., k)``, float64.

    Raises
    ------
    ValueError
        For a non-square or non-finite Jacobian, directions of the wrong length, a zero direction, or a zero
        Jacobian with ``normalize``.

    Examples
    --------
    >>> import numpy as np
    >>> J = -np.diag([1.0, 0.5, 0.1])  # exact score of N(0, diag(0, 1, 9)) at t = 1
    >>> rayleigh_quotients(J, np.eye(3)).tolist(), rayleigh_quotients(J, [[1.0, 1.0, 0.0]]).round(12).tolist()
    ([1.0, 0.5, 0.1], [0.75])
    """
    J = _as_array(jacobians, "jacobians")
    if J.ndim < 2 or J.shape[-1] != J.shape[-2]:
        raise ValueError(f"jacobians must have shape (..., d, d), got {J.shape}")
    U = _as_array(directions, "directions")
    if U.ndim < 2 or U.shape[-1] != J.shape[-1]:
        raise ValueError(f"directions must have shape (k, d) or (..., k, d) with d = {J.shape[-1]}, got {U.shape}")
    norms = np.linalg.norm(U, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("directions must be non-zero vectors")
    U = U / norms
    q = -np.einsum("...kd,...de,...ke->...k", U, J, U)
    if normalize:
        top = np.linalg.norm(J, ord=2, axis=(-2, -1))
        if np.any(top == 0):
            raise ValueError("jacobians: a Jacobian is zero and cannot be divided by its largest singular value")
        q = q / top[..., None]
    return q


def plateau_length(times: Any, dims: Any, *, lo: int = 0, hi: int | None = None) -> tuple[float, int]:
    """Longest stretch of noise levels over which a dimension-over-time curve stays at one value in ``(lo, hi)``.

    A *plateau* at an intermediate dimension is the signature of an intermediate spectral gap (a sub-manifold
    of higher variance that separates before the rest). The stretch is measured in decades of ``t`` between
    the first and last noise level of a run of consecutive levels (in order of ``t``) with the same value.

    Parameters
    ----------
    times
        Noise levels, shape ``(n_times,)``, positive, any order.
    dims
        Integer dimensions, shape ``(n_times,)``.
    lo, hi
        Only values strictly between ``lo`` and ``hi`` count (``hi=None``: no upper bound), e.g.
        ``lo=0, hi=m`` for intermediate dimensions.

    Returns
    -------
    (decades, value)
        Length of the longest run in decades of ``t`` (0.0 for a single level) and its value; ``(0.0, -1)``
        when no level has an intermediate value.
    """
    t = _as_array(times, "times")
    y = np.asarray(dims)
    if t.ndim != 1 or y.shape != t.shape:
        raise ValueError(f"times and dims must be 1-D of the same length, got {t.shape} and {y.shape}")
    order = np.argsort(t)
    log_t, y = np.log10(t[order]), y[order]
    ok = (y > lo) & (True if hi is None else (y < hi))
    best, value, start = 0.0, -1, None
    for i in range(len(y) + 1):
        run_continues = i < len(y) and ok[i] and start is not None and y[i] == y[start]
        if run_continues:
            continue
        if start is not None:
            length = float(log_t[i - 1] - log_t[start])
            if length > best or value == -1:
                best, value = length, int(y[start])
        start = i if i < len(y) and ok[i] else None
    return best, value


__all__ += ["score_spectra_over_time", "rayleigh_quotients", "plateau_length"]


#: How :func:`mean_jacobian_spectra` scales its singular values.
MEAN_SPECTRUM_SCALES: tuple[str | None, ...] = ("t", "max", None)


def mean_jacobian_spectra(
    score_fn: Any,
    points: Any,
    times: Any,
    *,
    noise: Any = None,
    scale: str | None = "t",
    method: str = "autograd",
    dtype: torch.dtype | None = None,
    **options: Any,
) -> np.ndarray:
    r"""Singular values of the score Jacobian **averaged over points**, at every noise level.

    At each level ``t`` the Jacobians of ``score_fn`` at the points (or at the noised points
    ``points + sqrt(t) * noise``) are averaged, and the singular values of the mean are returned. For the exact
    score of a Gaussian linear manifold the Jacobian is the same everywhere and the average changes nothing.
    For a trained network it removes the point-to-point scatter of the Jacobian, which otherwise spreads the
    normal directions into a wide bulk; for the empirical score the same average is
    :func:`diffnb.posterior.mean_posterior_covariance`. With ``noise`` the points are those a generation visits
    at level ``t`` (noised training points), where a network was trained.

    The Jacobians of one level are computed together (:func:`diffnb.jacobian.score_jacobian`), the levels one
    after another, so memory grows like ``n_points * d**2``, not with the number of levels.

    Parameters
    ----------
    score_fn
        ``score_fn(x, t)`` with ``x`` of shape ``(n, d)`` and ``t`` of shape ``(n,)``.
    points
        Points, shape ``(n_points, d)`` (array or tensor).
    times
        VE noise variances, shape ``(n_times,)``, positive.
    noise
        Optional standard normal draws of shape ``(n_points, d)``; the same draws at every level.
    scale
        ``"t"``: singular values of :math:`t\,\bar J` (the convention ``"singular_tj"`` of
        :func:`classify_phases`: normal directions near 1 on both sides, tangent directions at
        :math:`t/(\lambda + t)` for an exact score). ``"max"``: divided by the largest one per level (convention
        ``"singular"``). ``None``: the singular values of :math:`\bar J` as they are.
    method
        See :func:`diffnb.jacobian.score_jacobian`.
    dtype
        Dtype of the points given to ``score_fn``; by default that of a tensor ``points``, else float32
        (networks) — pass ``torch.float64`` for exact scores.
    **options
        Passed to :func:`diffnb.jacobian.score_jacobian`.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_times, d)``, float64, ascending along the last axis, in the order of ``times``.

    Examples
    --------
    >>> import torch
    >>> lam = torch.tensor([0.0, 0.0, 1.0, 4.0], dtype=torch.float64)
    >>> score = lambda x, t: -x / (lam + t[:, None])  # exact score of N(0, diag(lam))
    >>> sv = mean_jacobian_spectra(score, torch.zeros(3, 4, dtype=torch.float64), [1.0])
    >>> [round(float(v), 3) for v in sv[0]]
    [0.2, 0.5, 1.0, 1.0]
    """
    from diffnb.jacobian import score_jacobian, singular_values

    check_choice(scale, MEAN_SPECTRUM_SCALES, "scale")
    X, t, xi = _points_times_noise(points, times, noise, dtype)
    out = np.empty((t.shape[0], X.shape[1]))
    for k, level in enumerate(t):
        x = X if xi is None else X + float(np.sqrt(level)) * xi
        J = score_jacobian(score_fn, x, float(level), method=method, **options).detach().mean(dim=0)
        sv = singular_values(J.to(torch.float64)).cpu().numpy()
        if scale == "t":
            sv = sv * level
        elif scale == "max":
            if sv.max() <= 0:
                raise ValueError(
                    f"the mean Jacobian at t = {level:g} is zero and cannot be divided by its largest value"
                )
            sv = sv / sv.max()
        out[k] = np.sort(sv)
    return out


def resolution_above(width: float, *, step: float = 0.05, margin: float = 0.025, minimum: float = 0.0) -> float:
    """The resolution ``delta`` for :func:`classify_phases` just above a normal bulk of the given width.

    The smallest multiple of ``step`` that is at least ``width + margin`` and at least ``minimum``: a round
    number that leaves the classifier room above the bulk (:func:`normal_bulk_width`).

    Parameters
    ----------
    width
        Width of the normal bulk, in ``[0, 1)`` (e.g. :attr:`PhaseClassification.normal_width`).
    step, margin, minimum
        Rounding step (positive), distance kept above the width (non-negative), and a lower bound.

    Returns
    -------
    float
        The resolution, strictly between ``width`` and 1.

    Raises
    ------
    ValueError
        When no resolution below 1 exists, or for arguments out of range.

    Examples
    --------
    >>> resolution_above(0.155), resolution_above(0.176), resolution_above(0.0, minimum=0.1)
    (0.2, 0.25, 0.1)
    """
    values = {"width": width, "step": step, "margin": margin, "minimum": minimum}
    for name, value in values.items():
        if not (isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not 0 <= width < 1:
        raise ValueError(f"width must lie in [0, 1), got {width!r}")
    if step <= 0 or margin < 0:
        raise ValueError(f"step must be positive and margin non-negative, got step={step!r}, margin={margin!r}")
    target = max(float(width) + float(margin), float(minimum))
    delta = round(float(np.ceil(target / step - 1e-9)) * step, 10)
    if delta <= width:  # margin 0 and a width on the grid: one step up
        delta = round(delta + step, 10)
    if delta >= 1:
        raise ValueError(
            f"no resolution below 1 lies {margin} above a normal bulk of width {width:.3g}: the spectrum does not "
            "separate normal from tangent directions"
        )
    return delta


__all__ += ["MEAN_SPECTRUM_SCALES", "mean_jacobian_spectra", "resolution_above"]


# ---------------------------------------------------------------------------------------------------------
# the three phases of generation, measured on spectra over time
# ---------------------------------------------------------------------------------------------------------

#: The labels of :func:`classify_phases`, in the order generation meets them (large ``t`` first), followed by
#: ``"collapsed"``, which only a memorising score reaches (see :func:`classify_phases`).
PHASES: tuple[str, ...] = ("trivial", "coverage", "consolidation", "collapsed")
#: The spectrum conventions :func:`classify_phases` accepts (notation appendix).
SPECTRUM_CONVENTIONS: tuple[str, ...] = ("eigenvalues", "singular", "singular_tj")


@dataclass(frozen=True)
class PhaseClassification:
    """Result of :func:`classify_phases`.

    Leading batch axes of the input spectra are kept; for a single spectrum over time the boundaries and
    widths are floats.

    Parameters
    ----------
    labels
        One of :data:`PHASES` per noise level, shape ``(..., n_times)``, in the order of the input ``times``.
    t_trivial
        Measured boundary between the trivial phase and manifold coverage: the first noise level, coming
        from large ``t``, at which a tangent value has moved more than ``delta`` away from the normal end
        (interpolated in ``log t``). NaN when the grid never shows the crossing.
    t_consolidation
        Measured boundary between coverage and consolidation: the first noise level at which every tangent
        value is within ``delta`` of the tangent end. NaN when it is never reached (e.g. a memorising score).
    escape
        ``1 - min(v)`` per level, shape ``(..., n_times)``, with ``v`` the values mapped to ``[0, 1]``
        (normal end 1, tangent end 0): how far the fastest tangent direction has left the normal end.
        Trivial where ``escape <= delta``.
    residual
        The ``n_tangent``-th smallest ``v`` per level: how far the slowest tangent direction still is from
        the tangent end. Consolidation where ``residual <= delta``.
    normal_width
        Width of the bulk of normal directions: ``1 - v`` of the smallest of the ``k - n_tangent`` largest
        values, maximised over noise levels. 0 for exact scores.
    n_tangent
        Number of tangent directions used (given, or estimated).
    delta, convention
        The resolution and the convention of the call.
    """

    labels: np.ndarray
    t_trivial: float | np.ndarray
    t_consolidation: float | np.ndarray
    escape: np.ndarray
    residual: np.ndarray
    normal_width: float | np.ndarray
    n_tangent: int | np.ndarray
    delta: float
    convention: str

    def fractions(self) -> dict[str, float]:
        """Fraction of all labelled noise levels in each phase (pooled over leading axes)."""
        return {name: float(np.mean(self.labels == name)) for name in PHASES}


def _unit_values(spectra: np.ndarray, convention: str) -> np.ndarray:
    """Map spectra to ``v`` in ``[0, 1]``: normal end 1, tangent end 0, ascending along the last axis."""
    if convention == "eigenvalues":
        if np.any(spectra < -1.0 - 1e-6):
            raise ValueError(
                "spectra: eigenvalues of the normalised Jacobian t*J lie in [-1, 0] for exact scores; a value "
                f"below -1 ({spectra.min():.4g}) means the Jacobian was not multiplied by t"
            )
        # positive eigenvalues (an empirical score between distant training points) count as fully visible
        v = np.clip(-spectra, 0.0, 1.0)
    elif convention == "singular_tj":
        if np.any(spectra < 0):
            raise ValueError("spectra: singular values must be non-negative (convention='singular_tj')")
        # normal directions scatter on both sides of 1; above 1 is as normal as 1
        v = np.clip(spectra, 0.0, 1.0)
    else:
        if np.any(spectra < 0):
            raise ValueError("spectra: singular values must be non-negative (convention='singular')")
        top = spectra.max(axis=-1, keepdims=True)
        if np.any(top <= 0):
            raise ValueError("spectra: a spectrum is all zero and cannot be divided by its largest value")
        v = spectra / top
    return np.sort(v, axis=-1)


def normal_bulk_width(spectra: Any, n_tangent: int, *, convention: str = "singular") -> np.ndarray:
    """Width of the bulk of normal directions at every noise level.

    A trained network's normal directions do not sit at a single value: after dividing by the largest singular
    value they form a bulk just below 1. Its width, ``1 - v`` for the smallest of the ``k - n_tangent``
    largest values ``v`` of a spectrum, bounds the resolution at which phases can be read: a ``delta`` below
    it would call the normal bulk itself "visible structure". For exact scores the width is 0.

    Parameters
    ----------
    spectra
        Shape ``(..., n_times, k)`` (or ``(k,)``), in the given ``convention``.
    n_tangent
        Number of tangent directions, ``1 <= n_tangent < k``.
    convention
        ``"singular"`` (values divided by the largest, normal near 1), ``"singular_tj"`` (singular values of
        ``t J``, normal near 1 on both sides) or ``"eigenvalues"`` (``t J`` in ``[-1, 0]``, normal at -1).

    Returns
    -------
    numpy.ndarray
        Shape ``spectra.shape[:-1]``. At levels where some tangent values are still among the largest ones
        (trivial phase) the result is a lower bound of the width.
    """
    check_choice(convention, SPECTRUM_CONVENTIONS, "convention")
    array = _as_array(spectra, "spectra")
    k = array.shape[-1]
    if not isinstance(n_tangent, (int, np.integer)) or isinstance(n_tangent, bool) or not 1 <= n_tangent < k:
        raise ValueError(f"n_tangent must be an integer in [1, {k - 1}] (k = {k} values), got {n_tangent!r}")
    v = _unit_values(array, convention)
    return 1.0 - v[..., int(n_tangent)]


def _estimate_n_tangent(v: np.ndarray) -> np.ndarray:
    """Per leading index: the count below the largest gap at the level where that gap is widest."""
    gaps = np.diff(v, axis=-1)  # (..., n_times, k - 1)
    where = np.argmax(gaps, axis=-1)  # position of the largest gap per level
    widest = np.max(gaps, axis=-1)  # (..., n_times)
    level = np.argmax(widest, axis=-1)  # (...)
    pos = np.take_along_axis(where, level[..., None], axis=-1)[..., 0]
    return pos + 1


def classify_phases(
    times: Any,
    spectra: Any,
    delta: float,
    *,
    convention: str = "eigenvalues",
    n_tangent: int | None = None,
) -> PhaseClassification:
    r"""Label every noise level of a spectrum over time as trivial, coverage or consolidation.

    The definitions are those of :func:`diffnb.theory.spectral.phase_boundaries`, read on measured spectra.
    Map every value to ``v`` in ``[0, 1]``, normal end at 1 and tangent end at 0 (for an exact score
    :math:`v = t/(\lambda + t)` along a tangent direction of variance :math:`\lambda`); the ``n_tangent``
    smallest values are the tangent directions. At resolution ``delta``:

    * **trivial**: every value is within ``delta`` of the normal end, ``min v >= 1 - delta`` (theory:
      ``t >= t_trivial = gamma_top (1 - delta) / delta``);
    * **consolidation**: every tangent value is within ``delta`` of the tangent end, ``v_(n_tangent) <= delta``
      (theory: ``t <= t_consolidation = gamma_bottom delta / (1 - delta)``);
    * **coverage**: neither.

    Where both conditions hold (possible only for ``delta >= 1/2``) the level is trivial, as in the theory.
    A memorising score (the empirical score of finite data, chapter 3) returns to an isotropic Jacobian at
    small ``t``: its values rejoin the normal end. Such a level meets the trivial condition *below* a level
    that does not; it is labelled ``"collapsed"`` instead — no exact score ever reaches it.

    The measured boundaries are the first crossings coming from large ``t`` (:func:`crossing_time`):
    ``t_trivial`` where ``escape = 1 - min v`` exceeds ``delta``, ``t_consolidation`` where
    ``residual = v_(n_tangent)`` falls to ``delta``. Between grid points the crossing is interpolated
    linearly in ``logit v`` against ``log t``, which is exact for ``v = t / (lambda + t)``: for the exact score
    of a Gaussian linear manifold the measured boundaries equal ``phase_boundaries`` evaluated with the
    extreme eigenvalues of its own covariance, to rounding, on any grid that brackets them.

    **Conventions.** ``"eigenvalues"``: eigenvalues of the normalised Jacobian :math:`tJ` of an exact score,
    in ``[-1, 0]``, normal directions at -1 (positive eigenvalues, which the empirical score has between
    distant training points, are clipped to 0, i.e. counted as fully visible tangent values). ``"singular"``:
    singular values of a network's Jacobian (any scale), divided by the largest one per level, so that normal
    directions sit **near** 1 (the book's convention for network spectra). ``"singular_tj"``: singular values
    of the normalised Jacobian ``t J`` of a network, not divided by anything; the normal directions then
    scatter around 1 on both sides (values above 1 are clipped to 1). Dividing by the largest value biases
    every value low by the upper spread of the normal bulk (the largest of many noisy normal values), which
    moves both measured boundaries to larger ``t``; ``t J`` has the normal level the theory knows, ``1/t``
    for ``J``. A network's normal directions form a bulk of width ``w`` below 1 (:func:`normal_bulk_width`):
    ``delta`` must exceed ``w``, or the normal bulk alone would keep every level out of the trivial phase.
    The width is measured on the input and a ``delta <= w`` raises ``ValueError``; it is returned in
    :attr:`PhaseClassification.normal_width` so that a chapter can report both.

    Parameters
    ----------
    times
        Noise levels (VE variances), shape ``(n_times,)``, positive, any order (``n_times >= 2``).
    spectra
        Shape ``(..., n_times, k)``: leading batch axes (e.g. points), one spectrum per level; any order
        along the last axis.
    delta
        Resolution, strictly between 0 and 1.
    convention
        One of :data:`SPECTRUM_CONVENTIONS`.
    n_tangent
        Number of tangent directions (the manifold dimension ``m``). ``None`` estimates it per leading
        index as the number of values below the largest gap at the level where that gap is widest.

    Returns
    -------
    PhaseClassification

    Raises
    ------
    ValueError
        For malformed ``times`` or ``spectra``, ``delta`` outside ``(0, 1)``, an unknown ``convention``, an
        ``n_tangent`` outside ``[1, k]``, values of ``t J`` below -1, or ``delta`` not above the normal bulk's
        width.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.geomspace(1e-3, 1e3, 61)
    >>> lam = np.array([0.0, 0.0, 0.5, 2.0])  # two normal, two tangent directions
    >>> eig = -t[:, None] / (lam + t[:, None])  # spectrum of t J for the exact score
    >>> res = classify_phases(t, eig, 0.1, n_tangent=2)
    >>> round(res.t_trivial / (2.0 * 0.9 / 0.1), 2), round(res.t_consolidation / (0.5 * 0.1 / 0.9), 2)
    (1.0, 1.0)
    """
    check_choice(convention, SPECTRUM_CONVENTIONS, "convention")
    try:
        delta = float(delta)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"delta must be a number strictly between 0 and 1, got {delta!r}") from exc
    if not (np.isfinite(delta) and 0.0 < delta < 1.0):
        raise ValueError(f"delta must be a resolution strictly between 0 and 1, got {delta!r}")
    t = _positive_times(times, min_levels=2)
    array = _as_array(spectra, "spectra")
    if array.ndim < 2 or array.shape[-2] != t.shape[0]:
        raise ValueError(
            f"spectra must have shape (..., n_times, k) with n_times = {t.shape[0]} (one spectrum per noise "
            f"level), got {array.shape}"
        )
    k = array.shape[-1]
    v = _unit_values(array, convention)
    batch = array.shape[:-2]
    if n_tangent is None:
        n_tan = _estimate_n_tangent(v)
    else:
        if not isinstance(n_tangent, (int, np.integer)) or isinstance(n_tangent, bool) or not 1 <= n_tangent <= k:
            raise ValueError(f"n_tangent must be an integer in [1, {k}] (k = {k} values), got {n_tangent!r}")
        n_tan = np.full(batch, int(n_tangent), dtype=int)
    # residual: the n_tangent-th smallest value; normal width: from the (n_tangent + 1)-th smallest
    idx = np.broadcast_to((n_tan - 1)[..., None, None], (*batch, t.shape[0], 1))
    residual = np.take_along_axis(v, idx, axis=-1)[..., 0]
    idx_n = np.broadcast_to(np.minimum(n_tan, k - 1)[..., None, None], (*batch, t.shape[0], 1))
    width = np.max(1.0 - np.take_along_axis(v, idx_n, axis=-1)[..., 0], axis=-1)
    width = np.where(n_tan < k, width, 0.0)  # no normal directions at all
    if np.any(width >= delta):
        raise ValueError(
            f"delta={delta} does not exceed the width of the normal bulk ({float(np.max(width)):.3g}): the normal "
            "directions themselves would count as visible structure. Choose delta above that width "
            "(normal_bulk_width reports it per noise level), or check n_tangent."
        )
    escape = 1.0 - v[..., 0]
    trivial = escape <= delta
    consolidated = residual <= delta
    labels = np.where(trivial, "trivial", np.where(consolidated, "consolidation", "coverage")).astype("<U13")
    # "collapsed": meets the trivial condition at a smaller t than some level that does not
    order = np.argsort(t)  # small t first
    nontrivial_sorted = ~trivial[..., order]
    # any non-trivial level at a larger t than this one (strictly above in the sorted order)
    above = np.flip(np.cumsum(np.flip(nontrivial_sorted, axis=-1), axis=-1), axis=-1) - nontrivial_sorted
    collapsed_sorted = trivial[..., order] & (above > 0)
    collapsed = np.empty_like(collapsed_sorted)
    collapsed[..., order] = collapsed_sorted
    labels = np.where(collapsed, "collapsed", labels)

    # interpolate logit(v) against log t: exact for the tangent values t / (lambda + t) of an exact score
    def logit(x: np.ndarray | float) -> np.ndarray:
        x = np.clip(x, 1e-12, 1.0 - 1e-12)
        return np.log(x) - np.log1p(-x)

    t_trivial = crossing_time(t, logit(1.0 - escape), level=float(logit(1.0 - delta)))
    t_consolidation = crossing_time(t, logit(residual), level=float(logit(delta)))

    def scalar(a: np.ndarray) -> float | np.ndarray:
        a = np.asarray(a)
        return float(a) if a.ndim == 0 else a

    return PhaseClassification(
        labels=labels,
        t_trivial=scalar(t_trivial),
        t_consolidation=scalar(t_consolidation),
        escape=escape,
        residual=residual,
        normal_width=scalar(width),
        n_tangent=int(n_tan) if n_tan.ndim == 0 else n_tan,
        delta=delta,
        convention=convention,
    )


def phase_labels(times: Any, t_trivial: float, t_consolidation: float) -> np.ndarray:
    """Labels of noise levels from given phase boundaries (e.g. the theory's), for comparison with measured ones.

    ``t >= t_trivial`` is trivial, ``t <= t_consolidation`` consolidation, coverage in between (the trivial
    label wins if the boundaries cross).

    Parameters
    ----------
    times
        Noise levels, shape ``(n_times,)``, positive.
    t_trivial, t_consolidation
        Boundaries, e.g. from :func:`diffnb.theory.spectral.phase_boundaries`.

    Returns
    -------
    numpy.ndarray
        Strings, shape ``(n_times,)``.
    """
    t = _positive_times(times)
    for name, value in (("t_trivial", t_trivial), ("t_consolidation", t_consolidation)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite non-negative noise level, got {value!r}")
    labels = np.where(t >= t_trivial, "trivial", np.where(t <= t_consolidation, "consolidation", "coverage"))
    return labels.astype("<U13")


def phase_sequence(times: Any, labels: Any) -> list[str]:
    """The phases in the order generation meets them: labels sorted by decreasing ``t``, repeats merged.

    A spectrum that passes through the three phases in order gives ``["trivial", "coverage",
    "consolidation"]`` (``list(PHASES[:3])``); a phase missing on the grid, a return to an earlier phase or a
    collapse shows in the list.

    Parameters
    ----------
    times
        Noise levels, shape ``(n_times,)``, positive, any order.
    labels
        One label of :data:`PHASES` per level, in the order of ``times`` (e.g.
        :attr:`PhaseClassification.labels` of a single spectrum over time).

    Returns
    -------
    list of str

    Examples
    --------
    >>> phase_sequence([1.0, 10.0, 100.0, 0.1], ["coverage", "coverage", "trivial", "consolidation"])
    ['trivial', 'coverage', 'consolidation']
    """
    t = _positive_times(times)
    lab = np.asarray(labels)
    if lab.shape != t.shape:
        raise ValueError(f"labels must have one entry per noise level, shape {t.shape}, got {lab.shape}")
    unknown = set(lab.tolist()) - set(PHASES)
    if unknown:
        raise ValueError(f"labels must be among {PHASES}, got {sorted(unknown)}")
    ordered = lab[np.argsort(-t, kind="stable")].tolist()
    return [p for k, p in enumerate(ordered) if k == 0 or p != ordered[k - 1]]


def gaussian_score_spectra(variances: Any, times: Any, *, convention: str = "singular_tj") -> np.ndarray:
    r"""Exact spectra over time of the score of a Gaussian with covariance eigenvalues ``variances``.

    The Jacobian :math:`J = -(C + tI)^{-1}` is the same at every point, so one spectrum per noise level is
    the whole story: ``t J`` has the eigenvalues :math:`-t/(\lambda_i + t)`, -1 along the directions of zero
    variance (normal directions of a manifold).

    Parameters
    ----------
    variances
        The ``d`` eigenvalues :math:`\lambda_i` of the covariance, shape ``(d,)``, finite and non-negative, any
        order (e.g. the classical eigenvalues of the random-matrix theory, zeros included).
    times
        VE noise variances, shape ``(n_times,)``, positive.
    convention
        One of :data:`SPECTRUM_CONVENTIONS`, as :func:`classify_phases` reads them: ``"eigenvalues"`` (of
        ``t J``, in ``[-1, 0]``), ``"singular_tj"`` (singular values of ``t J``, :math:`t/(\lambda_i + t)`) or
        ``"singular"`` (singular values divided by the largest one per level; the same as ``"singular_tj"``
        when a variance is zero).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_times, d)``, float64, ascending along the last axis, in the order of ``times``.

    Examples
    --------
    >>> gaussian_score_spectra([0.0, 1.0], [1.0, 3.0]).tolist()
    [[0.5, 1.0], [0.75, 1.0]]
    """
    check_choice(convention, SPECTRUM_CONVENTIONS, "convention")
    lam = _as_array(variances, "variances")
    if lam.ndim != 1 or np.any(lam < 0):
        raise ValueError(f"variances must be a 1-D array of non-negative values, got shape {lam.shape}")
    t = _positive_times(times)
    values = t[:, None] / (np.sort(lam)[::-1] + t[:, None])  # ascending along each row
    if convention == "eigenvalues":
        return -values[:, ::-1]
    if convention == "singular":
        return values / values[:, -1:]
    return values


def linear_score_spectra(F: Any, times: Any, *, convention: str = "singular_tj") -> np.ndarray:
    r"""Exact spectra over time of the score of the Gaussian linear manifold ``x = F z`` (notation appendix).

    :func:`gaussian_score_spectra` of the ``d`` eigenvalues of :math:`C = FF^\top` (``d - m`` of them zero),
    computed once in float64 from the smaller Gram matrix of ``F``, not one inverse per level.

    Parameters
    ----------
    F
        Embedding, shape ``(d, m)`` (array or tensor), finite.
    times, convention
        As in :func:`gaussian_score_spectra`.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_times, d)``, float64, ascending along the last axis, in the order of ``times``.

    Examples
    --------
    >>> import numpy as np
    >>> F = np.array([[1.0], [0.0]])  # one tangent direction of variance 1 in d = 2
    >>> linear_score_spectra(F, [1.0, 3.0]).tolist()
    [[0.5, 1.0], [0.75, 1.0]]
    """
    check_choice(convention, SPECTRUM_CONVENTIONS, "convention")
    Fa = _as_array(F, "F")
    if Fa.ndim != 2:
        raise ValueError(f"F must have shape (d, m), got {Fa.shape}")
    lam = gram_eigvalsh(torch.from_numpy(np.ascontiguousarray(Fa))).numpy()
    lam = np.concatenate([np.zeros(Fa.shape[0] - lam.size), lam])
    return gaussian_score_spectra(lam, times, convention=convention)


__all__ += [
    "PHASES",
    "SPECTRUM_CONVENTIONS",
    "PhaseClassification",
    "classify_phases",
    "gaussian_score_spectra",
    "linear_score_spectra",
    "normal_bulk_width",
    "phase_labels",
    "phase_sequence",
]


def band_dimension(spectra: Any, delta: float = 0.2, *, top: float = 0.5) -> np.ndarray:
    """Number of values clearly below the band of normal directions, at every noise level.

    The level of the normal band is the median of the largest ``top`` fraction of each spectrum, and a value
    counts as a visible tangent direction when it lies below ``(1 - delta)`` times that level. For an exact
    score the normal directions sit at exactly 1, the level is 1 and this is the ``"threshold"`` rule of
    :func:`dimension_over_time`; for a trained network, whose normal directions form a band below its largest
    value, the rule follows the band. Unlike the largest-gap rule it does not require a single wide gap, so
    it also counts directions in a smooth spectrum (gradual memorization), and an intermediate gap between
    tangent sub-spaces does not hide the sub-space below it. Requires fewer tangent than normal directions
    (``top=0.5``: fewer than half of the values tangent).

    Parameters
    ----------
    spectra
        Non-negative values, shape ``(..., k)`` (any order).
    delta
        Relative distance below the band, in ``(0, 1)``.
    top
        Fraction of the largest values that define the band level, in ``(0, 1]``.

    Returns
    -------
    numpy.ndarray
        Integers of shape ``spectra.shape[:-1]``.
    """
    array = _as_array(spectra, "spectra")
    if np.any(array < 0):
        raise ValueError("spectra must be non-negative")
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
    if not 0 < top <= 1:
        raise ValueError(f"top must lie in (0, 1], got {top!r}")
    values = np.sort(array, axis=-1)
    k = values.shape[-1]
    n_top = max(1, int(round(top * k)))
    level = np.median(values[..., k - n_top :], axis=-1, keepdims=True)
    return np.sum(values < (1.0 - delta) * level, axis=-1).astype(int)


__all__ += ["band_dimension"]
