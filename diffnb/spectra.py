r"""Spectra over time: normalisation conventions, dimension estimators and crossings of curves over noise.

A *spectrum* here is a set of non-negative values per point and noise level, typically the singular values
of the score Jacobian (SPEC §2): for the normalised Jacobian :math:`tJ` of an exact score they are
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
* :func:`crossing_time` — the noise level at which a curve over time first falls below a level.

NumPy arrays and torch tensors are accepted; results are NumPy (dimensions are integers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "DIMENSION_METHODS",
    "normalize_spectrum",
    "estimate_dimension",
    "dimension_over_time",
    "cliff_dimensions",
    "crossing_time",
]

#: The methods of :func:`estimate_dimension`.
DIMENSION_METHODS: tuple[str, ...] = ("largest_gap", "threshold", "cliff")
_DEFAULTS: dict[str, dict[str, Any]] = {
    "largest_gap": {"min_gap": 0.05, "drop_largest": 0},
    "threshold": {"delta": 0.1, "drop_largest": 0},
    "cliff": {"c": 10.0, "d_bar": 0, "reduce": "bottom", "floor": 1e-9},
}


def _as_array(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers, got {type(values).__name__}") from exc
    if array.ndim == 0:
        raise ValueError(f"{name} must have at least one axis (the spectrum), got a scalar")
    if array.shape[-1] == 0:
        raise ValueError(f"{name} is empty along its last axis")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


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
    if method not in DIMENSION_METHODS:
        raise ValueError(f"method must be one of {DIMENSION_METHODS}, got {method!r}")
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
    t = _as_array(times, "times")
    if t.ndim != 1 or t.shape[0] < 2 or np.any(t <= 0):
        raise ValueError(f"times must be a 1-D array of at least two positive noise levels, got {t.shape}")
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


def score_spectra_over_time(
    score_fn: Any,
    points: Any,
    times: Any,
    *,
    method: str = "autograd",
    normalize: bool = True,
    dtype: torch.dtype | None = None,
    **options: Any,
) -> np.ndarray:
    """Singular values of the score Jacobian at every point and noise level, in one batched computation.

    For a trained network this is the "spectrum over time" of both papers: the Jacobian of
    ``score_fn(x, t)`` at every point of ``points`` and every VE noise variance of ``times`` (computed by
    :func:`diffnb.jacobian.score_jacobian`, exact autograd by default), its singular values, sorted
    ascending and, with ``normalize``, divided by the largest one (SPEC §2: normal directions near 1).

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
    from diffnb.jacobian import score_jacobian

    if isinstance(points, torch.Tensor):
        X = points.detach()
        if dtype is not None:
            X = X.to(dtype)
    else:
        X = torch.as_tensor(np.asarray(points, dtype=np.float64), dtype=dtype or torch.float32)
    if X.ndim != 2:
        raise ValueError(f"points must have shape (n_points, d), got {tuple(X.shape)}")
    t = _as_array(times, "times")
    if t.ndim != 1 or np.any(t <= 0):
        raise ValueError(f"times must be a 1-D array of positive noise variances, got shape {t.shape}")
    n, d = X.shape
    k = t.shape[0]
    # every (point, time) pair is one row: points vary slowest
    X_rep = X.repeat_interleave(k, dim=0)
    t_rep = torch.as_tensor(np.tile(t, n), dtype=X.dtype, device=X.device)
    J = score_jacobian(score_fn, X_rep, t_rep, method=method, **options)
    sv = torch.linalg.svdvals(J.detach()).cpu().numpy().astype(np.float64)
    sv = np.sort(sv, axis=-1).reshape(n, k, d)
    if normalize:
        sv = sv / sv[..., -1:]
    return sv


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


__all__ += ["score_spectra_over_time", "plateau_length"]
