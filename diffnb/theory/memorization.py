r"""Statistical physics of memorization: the empirical score as a random energy model.

The posterior weights of the empirical score are Boltzmann weights at inverse temperature one,

.. math:: w_\mu(x) = \frac{e^{-E_\mu}}{Z}, \qquad E_\mu = \frac{\lVert x - y_\mu\rVert^2}{2t},
          \qquad Z = \sum_{\mu=1}^P e^{-E_\mu},

and for a fixed test point ``x`` the energies of ``P`` independent training points are ``P`` independent
random numbers: a **random energy model** (REM, :cite:`derrida1981random`). Approximating them as Gaussian
with variance :math:`V` gives the classic REM results used here:

* high-temperature phase, :math:`V < 2\log P`: :math:`\log Z \approx \log P + V/2` and the weight is shared
  by exponentially many training points;
* condensed (frozen) phase, :math:`V > 2\log P`: :math:`\log Z \approx \sqrt{2V\log P}` and a few training
  points carry all the weight; the threshold is :func:`condensation_threshold`.

The memorization paper applies this **per direction** (the formula of its official plotting code): with the
reverse trajectory near the origin, :math:`x_i^2 \approx t`, direction ``i`` contributes an energy variance
:math:`V_i(t) = (t\sigma_i^2 + g\,\tfrac12\sum_j\sigma_j^4)/t^2` (:func:`direction_energy_variance`), where
``g = 0`` for data projected to the sphere (``normalized=True``: the norm of the data does not fluctuate)
and ``g = 1`` for Gaussian data. Direction ``i`` is frozen (lost to memorization) when
:math:`V_i(t) > 2\log P`, which gives :func:`critical_noise` and :func:`critical_size`; the spectrum the
paper plotted from this criterion is :func:`predicted_singular_values`.

The global alternative is the collapse condition of :cite:`biroli2024dynamical`: the excess entropy of the
noisy data, :func:`excess_entropy`, equals :math:`\log P` at :func:`collapse_time`. For Gaussian data the
effective number of active training points also has an exact annealed form,
:func:`gaussian_annealed_sample_size`, whose small-:math:`\sigma^2/t` expansion is the REM one.

``t`` is the VE noise variance throughout. Functions take NumPy arrays (or numbers) and return float64
NumPy arrays; per-direction results carry the direction as the last axis. Which quantities are read from
the paper's code and which are reconstructions is stated in each docstring.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq

__all__ = [
    "condensation_threshold",
    "energy_variance",
    "direction_energy_variance",
    "rem_log_partition",
    "effective_sample_size",
    "gaussian_annealed_sample_size",
    "critical_noise",
    "norm_critical_noise",
    "critical_size",
    "predicted_singular_values",
    "excess_entropy",
    "collapse_time",
]


# ----------------------------------------------------------------------------------------------- checks


def _positive(value: ArrayLike, name: str, *, ndim: int | None = None) -> np.ndarray:
    """``value`` as a float64 array of positive finite numbers (optionally of a given ``ndim``)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold real numbers, got {value!r}") from exc
    if ndim is not None and array.ndim != ndim:
        shape = "a 1-D array, one value per direction" if ndim == 1 else f"{ndim}-D"
        raise ValueError(f"{name} must be {shape}; got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must be positive and finite, got {array.ravel()[:6].tolist()}")
    return array


def _scales(scales: ArrayLike, name: str = "scales") -> np.ndarray:
    return _positive(scales, name, ndim=1)


def _n_train(n_train: ArrayLike) -> np.ndarray:
    try:
        n = np.asarray(n_train, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"n_train must be a number of training points, got {n_train!r}") from exc
    if n.size == 0 or not np.all(np.isfinite(n)) or np.any(n < 2):
        raise ValueError(
            f"n_train must be at least 2 (with one training point there is nothing to condense onto), "
            f"got {n.ravel()[:6].tolist()}"
        )
    return n


def _noise(t: ArrayLike, name: str = "t") -> np.ndarray:
    return _positive(t, name)


def _gate(normalized: bool) -> float:
    if not isinstance(normalized, (bool, np.bool_)):
        raise ValueError(f"normalized must be True or False, got {normalized!r}")
    return 0.0 if normalized else 1.0


# ----------------------------------------------------------------------------------------- REM basics


def condensation_threshold(n_train: ArrayLike) -> np.ndarray:
    """Energy variance at which a REM of ``n_train`` configurations condenses, :math:`V_c = 2\\log P`.

    Parameters
    ----------
    n_train
        Number of training points ``P >= 2`` (scalar or array).

    Returns
    -------
    numpy.ndarray
        ``2 log P``, with the shape of ``n_train``.
    """
    return 2.0 * np.log(_n_train(n_train))


def energy_variance(x: ArrayLike, t: ArrayLike, scales: ArrayLike, normalized: bool = True) -> np.ndarray:
    """Variance over training points of the REM energies :math:`E_\\mu = \\lVert x - y_\\mu\\rVert^2/(2t)`.

    For independent coordinates with standard deviations ``scales`` (a Gaussian model of the data)

    .. math:: V(x, t) = \\frac{\\sum_i \\sigma_i^2 x_i^2 + g\\,\\tfrac12 \\sum_i \\sigma_i^4}{t^2},

    where the second term, the fluctuation of :math:`\\lVert y\\rVert^2/(2t)`, is absent (``g = 0``) for
    data on the sphere. [derived; matches the official code's per-direction formula at ``x_i^2 = t``]

    Parameters
    ----------
    x
        Test points, shape ``(..., d)``.
    t
        Noise variance, positive; broadcast against ``x.shape[:-1]``.
    scales
        Standard deviation of each coordinate of the data, shape ``(d,)``.
    normalized
        Data projected to the unit sphere (no norm fluctuation).

    Returns
    -------
    numpy.ndarray
        Shape ``broadcast(x.shape[:-1], t.shape)``.
    """
    s = _scales(scales)
    X = np.asarray(x, dtype=np.float64)
    if X.ndim < 1 or X.shape[-1] != s.shape[0]:
        raise ValueError(f"x must have shape (..., {s.shape[0]}) to match scales, got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("x holds NaN or infinite values")
    tt = _noise(t)
    s2 = s**2
    numerator = X**2 @ s2 + _gate(normalized) * 0.5 * np.sum(s2**2)
    return numerator / tt**2


def direction_energy_variance(t: ArrayLike, scales: ArrayLike, normalized: bool = True) -> np.ndarray:
    """Energy variance carried by each direction near the origin, :math:`V_i(t)` [code].

    With :math:`x_i^2 \\approx t` (a reverse trajectory near the origin at noise ``t``),
    :math:`V_i(t) = (t\\sigma_i^2 + g\\,\\tfrac12\\sum_j \\sigma_j^4)/t^2`, ``g = 0`` when ``normalized``.

    Parameters
    ----------
    t
        Noise variance, positive (scalar or array).
    scales
        Standard deviation of every direction, shape ``(d,)``; all of them enter the norm term.
    normalized
        Data on the sphere (``g = 0``) or Gaussian (``g = 1``).

    Returns
    -------
    numpy.ndarray
        Shape ``t.shape + (d,)``.
    """
    s2 = _scales(scales) ** 2
    tt = _noise(t)[..., None]
    return (tt * s2 + _gate(normalized) * 0.5 * np.sum(s2**2)) / tt**2


def rem_log_partition(energy_var: ArrayLike, n_train: ArrayLike, beta: ArrayLike = 1.0) -> np.ndarray:
    """Quenched :math:`\\log Z(\\beta)` of a Gaussian REM with ``P`` levels of energy variance ``V``.

    .. math:: \\log Z = \\begin{cases} \\log P + \\beta^2 V/2 & \\beta < \\beta_c = \\sqrt{2\\log P/V} \\\\
              \\beta\\sqrt{2V\\log P} & \\beta \\ge \\beta_c \\end{cases}

    (leading order in :math:`\\log P`; :cite:`derrida1981random`).

    Parameters
    ----------
    energy_var
        Energy variance ``V >= 0``.
    n_train
        Number of levels ``P >= 2``.
    beta
        Inverse temperature, positive (the empirical score sits at ``beta = 1``).

    Returns
    -------
    numpy.ndarray
        Broadcast shape of the inputs.
    """
    V = np.asarray(energy_var, dtype=np.float64)
    if not np.all(np.isfinite(V)) or np.any(V < 0):
        raise ValueError(f"energy_var must be non-negative and finite, got {V.ravel()[:6].tolist()}")
    log_p = np.log(_n_train(n_train))
    b = _positive(beta, "beta")
    hot = b**2 * V < 2.0 * log_p
    return np.where(hot, log_p + 0.5 * b**2 * V, b * np.sqrt(2.0 * V * log_p))


def effective_sample_size(energy_var: ArrayLike, n_train: ArrayLike, order: float = 2.0) -> np.ndarray:
    """Predicted effective number of active training points, from the REM free energy.

    The Rényi entropy of order ``q`` of the Boltzmann weights is
    :math:`H_q = (\\log Z(q) - q\\log Z(1))/(1-q)` and :math:`e^{H_q}` counts the active points:

    * ``order=2`` is the **participation ratio** :math:`1/\\sum_\\mu w_\\mu^2` (what
      :func:`diffnb.scores.participation_ratio` measures): :math:`P e^{-V}` for :math:`V < \\tfrac12\\log P`,
      :math:`\\exp[(\\sqrt{2\\log P} - \\sqrt V)^2]` up to :math:`V = 2\\log P`, and 1 beyond;
    * ``order=1`` (Shannon) is :math:`P e^{-V/2}` up to the condensation, the number of levels at the
      dominant energy (the "effective sample size going from P to 1" of the paper) [derived].

    Parameters
    ----------
    energy_var
        Energy variance ``V >= 0`` (e.g. from :func:`energy_variance`).
    n_train
        Number of training points ``P >= 2``.
    order
        Rényi order ``q > 0``.

    Returns
    -------
    numpy.ndarray
        Values in ``[1, P]``, broadcast shape of ``energy_var`` and ``n_train``.
    """
    q = float(order)
    if not np.isfinite(q) or q <= 0:
        raise ValueError(f"order must be a positive Rényi order, got {order!r}")
    V = np.asarray(energy_var, dtype=np.float64)
    log_z1 = rem_log_partition(V, n_train, 1.0)
    if q == 1.0:
        log_p = np.log(_n_train(n_train))
        entropy = np.where(V < 2.0 * log_p, log_p - 0.5 * V, 0.0)
    else:
        entropy = (rem_log_partition(V, n_train, q) - q * log_z1) / (1.0 - q)
    return np.exp(np.maximum(entropy, 0.0))


def gaussian_annealed_sample_size(
    x: ArrayLike, t: ArrayLike, scales: ArrayLike, n_train: ArrayLike, order: float = 2.0
) -> np.ndarray:
    """Effective number of active points for Gaussian data, from annealed partition functions [derived].

    For data :math:`y \\sim N(0, \\mathrm{diag}(\\sigma^2))` the average Boltzmann factor is Gaussian in closed
    form, :math:`\\mathbb E_y e^{-q\\lVert x-y\\rVert^2/2t} = \\prod_i (1+qa_i)^{-1/2}
    e^{-q x_i^2/(2(t+q\\sigma_i^2))}` with :math:`a_i = \\sigma_i^2/t`, so :math:`\\log Z(q) \\approx \\log P +`
    that logarithm and the Rényi entropy of order ``q`` is

    .. math:: H_q = \\log P - \\frac{1}{q-1}\\Big[\\tfrac12\\sum_i\\big(q\\log(1+a_i) - \\log(1+qa_i)\\big)
              + \\tfrac q2 \\sum_i x_i^2\\Big(\\frac{1}{t+\\sigma_i^2} - \\frac{1}{t+q\\sigma_i^2}\\Big)\\Big].

    Its expansion to second order in :math:`\\sigma_i^2/t` is the Gaussian-energy REM
    (:func:`effective_sample_size` of :func:`energy_variance` with ``normalized=False``); unlike the REM it
    keeps the logarithmic growth
    of the entropy loss when :math:`\\sigma_i^2 \\gg t`. The annealed average holds while many points are
    active, so the result is clipped to ``[1, P]``. ``order=1`` uses the limit

    .. math:: H_1 = \\log P - \\tfrac12\\sum_i\\Big[\\log(1+a_i) - \\frac{a_i}{1+a_i}\\Big]
              - \\tfrac12\\sum_i \\frac{x_i^2\\sigma_i^2}{(t+\\sigma_i^2)^2}.

    Parameters
    ----------
    x
        Test points, shape ``(..., d)``.
    t
        Noise variance, broadcast against ``x.shape[:-1]``.
    scales
        Standard deviations of the Gaussian data, shape ``(d,)``.
    n_train
        Number of training points ``P >= 2``, broadcast against ``x.shape[:-1]``.
    order
        Rényi order ``q > 0`` (2: participation ratio).

    Returns
    -------
    numpy.ndarray
        Shape ``broadcast(x.shape[:-1], t.shape, n_train.shape)``.
    """
    s2 = _scales(scales) ** 2
    X = np.asarray(x, dtype=np.float64)
    if X.ndim < 1 or X.shape[-1] != s2.shape[0]:
        raise ValueError(f"x must have shape (..., {s2.shape[0]}) to match scales, got {X.shape}")
    tt = _noise(t)[..., None]
    log_p = np.log(_n_train(n_train))
    q = float(order)
    if not np.isfinite(q) or q <= 0:
        raise ValueError(f"order must be a positive Rényi order, got {order!r}")
    a = s2 / tt
    if q == 1.0:
        loss = 0.5 * np.sum(np.log1p(a) - a / (1.0 + a), axis=-1)
        loss = loss + 0.5 * np.sum(X**2 * s2 / (tt + s2) ** 2, axis=-1)
    else:
        bracket = 0.5 * np.sum(q * np.log1p(a) - np.log1p(q * a), axis=-1)
        bracket = bracket + 0.5 * q * np.sum(X**2 * (1.0 / (tt + s2) - 1.0 / (tt + q * s2)), axis=-1)
        loss = bracket / (q - 1.0)
    entropy = np.clip(log_p - loss, 0.0, log_p)
    return np.exp(entropy)


# ------------------------------------------------------------------------ per-direction thresholds [code]


def critical_noise(scales: ArrayLike, n_train: ArrayLike, normalized: bool = True) -> np.ndarray:
    """Critical noise variance of every direction: below it the direction is frozen by memorization.

    Direction ``i`` is frozen when :math:`V_i(t) > 2\\log P` (:func:`direction_energy_variance`) [code]:

    * ``normalized=True`` (data on the sphere): :math:`v^*_i = \\sigma_i^2/(2\\log P)`;
    * ``normalized=False``: the positive root of :math:`2\\log P\\, v^2 - \\sigma_i^2 v - \\tfrac12\\sum_j\\sigma_j^4
      = 0`, :math:`v^*_i = [\\sigma_i^2 + \\sqrt{\\sigma_i^4 + 4\\log P\\sum_j\\sigma_j^4}]/(4\\log P)`, never
      below :func:`norm_critical_noise` (the norm fluctuation makes all directions freeze almost together).

    Parameters
    ----------
    scales
        Standard deviation of **every** direction, shape ``(d,)`` (the unnormalised threshold depends on all
        of them).
    n_train
        Number of training points ``P >= 2``, scalar or array.
    normalized
        Data projected to the sphere.

    Returns
    -------
    numpy.ndarray
        Shape ``n_train.shape + (d,)``.

    Examples
    --------
    >>> import numpy as np
    >>> scales = np.r_[np.ones(2), 0.3 * np.ones(5), 1e-6 * np.ones(23)]
    >>> critical_noise(scales, 1000)[[0, 2]].round(5)
    array([0.07238, 0.00651])
    """
    s2 = _scales(scales) ** 2
    two_log_p = 2.0 * np.log(_n_train(n_train))[..., None]
    if _gate(normalized) == 0.0:
        return s2 / two_log_p
    norm_term = 0.5 * np.sum(s2**2)
    return (s2 + np.sqrt(s2**2 + 4.0 * two_log_p * norm_term)) / (2.0 * two_log_p)


def norm_critical_noise(scales: ArrayLike, n_train: ArrayLike) -> np.ndarray:
    """Direction-independent threshold of unnormalised data, :math:`v^*_0 = \\sqrt{\\sum_j\\sigma_j^4/(4\\log P)}`.

    Below it the fluctuation of :math:`\\lVert y\\rVert^2` alone condenses the weights (``t_c0`` of the
    official code) [code]. It is the critical noise of a direction of zero variance.

    Parameters
    ----------
    scales
        Standard deviations of all directions, shape ``(d,)``.
    n_train
        Number of training points ``P >= 2``.

    Returns
    -------
    numpy.ndarray
        Shape of ``n_train``.
    """
    s2 = _scales(scales) ** 2
    return np.sqrt(np.sum(s2**2) / (4.0 * np.log(_n_train(n_train))))


def critical_size(scales: ArrayLike, t: ArrayLike, normalized: bool = True) -> np.ndarray:
    """Critical data-set size of every direction at noise ``t``: the direction is frozen when ``P`` is smaller.

    :math:`P^*_i(t) = \\exp(V_i(t)/2)`, i.e. :math:`\\exp(\\sigma_i^2/(2t))` for data on the sphere [derived
    from the code's criterion]. Values that overflow float64 are returned as ``inf``.

    Parameters
    ----------
    scales
        Standard deviations of all directions, shape ``(d,)``.
    t
        Noise variance, positive, scalar or array.
    normalized
        Data projected to the sphere.

    Returns
    -------
    numpy.ndarray
        Shape ``t.shape + (d,)``.
    """
    V = direction_energy_variance(t, scales, normalized)
    with np.errstate(over="ignore"):
        return np.exp(0.5 * V)


def predicted_singular_values(
    t: ArrayLike, scales: ArrayLike, n_train: ArrayLike, normalized: bool = True
) -> np.ndarray:
    """The theory spectrum of the memorization paper's "Theory" panel, per direction and unsorted [code].

    Reproduces the official plotting code: each direction has the exact-score value
    :math:`1/(t+\\sigma_i^2)`; once frozen, an extra term is added in quadrature,

    .. math:: s_i(t) = \\sqrt{\\frac{1}{(t+\\sigma_i^2)^2} + \\big[f(t)\\,(\\phi_0(t) + \\phi_i(t))\\big]^2},
              \\qquad f(t) = \\sum_j \\frac{\\sigma_j^2}{t^2(t+\\sigma_j^2)},

    with :math:`\\phi_i = \\max(0, 1/t - 1/t_{c,i}(t))`, :math:`t_{c,i}(t) = \\sqrt{V_i(t)\\,t^2/(2\\log P)}`,
    and :math:`\\phi_0 = \\max(0, 1/t - 1/v^*_0)` for unnormalised data (0 otherwise). A frozen direction
    jumps above the normal bulk; the paper then sorts, drops the ``m`` largest values and divides by the
    largest remaining one (:func:`diffnb.spectra.normalize_spectrum` with ``drop_largest``). The official
    figure uses ``scales = (1, 1, 0.3 x 5, 1e-6 x 23)``, ``P = 1000`` and ``drop_largest = 7``.

    Parameters
    ----------
    t
        Noise variance, positive, scalar or array.
    scales
        Standard deviations of all directions, shape ``(d,)``.
    n_train
        Number of training points ``P >= 2``; scalar or broadcastable to ``t``.
    normalized
        Data projected to the sphere (the paper's setting).

    Returns
    -------
    numpy.ndarray
        Shape ``broadcast(t, n_train).shape + (d,)``.
    """
    s2 = _scales(scales) ** 2
    tt = _noise(t)
    log_p = np.log(_n_train(n_train))
    tt, log_p = np.broadcast_arrays(tt, log_p)
    tt, log_p = tt[..., None], log_p[..., None]
    g = _gate(normalized)
    eigenvalues = 1.0 / (tt + s2)
    t_c = np.sqrt((g * 0.5 * np.sum(s2**2) + tt * s2) / (2.0 * log_p))
    phi = np.maximum(0.0, 1.0 / tt - 1.0 / t_c)
    if g:
        t_c0 = np.sqrt(0.5 * np.sum(s2**2) / (2.0 * log_p))
        phi0 = np.maximum(0.0, 1.0 / tt - 1.0 / t_c0)
    else:
        phi0 = 0.0
    factor = np.sum(s2 / (tt**2 * (tt + s2)), axis=-1, keepdims=True)
    extra = factor * (phi0 + phi)
    return np.sqrt(eigenvalues**2 + extra**2)


# ------------------------------------------------------------------------------- global collapse


def excess_entropy(t: ArrayLike, variances: ArrayLike) -> np.ndarray:
    """Entropy of the noisy Gaussian data in excess of the noise, :math:`\\sum_i \\tfrac12\\log(1 + v_i/t)`.

    It decreases from infinity (``t -> 0``) to 0 (``t -> inf``); collapse onto single training points happens
    where it equals :math:`\\log P` (:func:`collapse_time`, :cite:`biroli2024dynamical`). For
    :math:`v_i \\ll t` each term is :math:`v_i/(2t)`, the per-direction REM criterion [derived].

    Parameters
    ----------
    t
        Noise variance, positive, scalar or array.
    variances
        Variance of every direction, shape ``(d,)``.

    Returns
    -------
    numpy.ndarray
        Shape of ``t``.
    """
    v = _positive(variances, "variances", ndim=1)
    tt = _noise(t)
    return 0.5 * np.sum(np.log1p(v / tt[..., None]), axis=-1)


def collapse_time(variances: ArrayLike, n_train: ArrayLike) -> float | np.ndarray:
    """Global collapse noise level: the root of :math:`\\sum_i \\tfrac12\\log(1 + v_i/t) = \\log P`.

    The left side decreases strictly in ``t``; the root is bracketed by the isotropic solutions
    :math:`v/(P^{2/d}-1)` at the smallest and largest variance and found by Brent's method on
    :math:`\\log t` in float64 (relative accuracy ~1e-13).

    Parameters
    ----------
    variances
        Variance of every direction, shape ``(d,)``, positive.
    n_train
        Number of training points ``P >= 2``, scalar or array.

    Returns
    -------
    float or numpy.ndarray
        A float for a scalar ``n_train``, else an array of its shape.

    Examples
    --------
    >>> round(collapse_time([1.0, 1.0], 10), 6)  # isotropic: v / (P**(2/d) - 1) = 1/9
    0.111111
    """
    v = _positive(variances, "variances", ndim=1)
    n = _n_train(n_train)
    d = v.shape[0]

    def solve(log_p: float) -> float:
        denom = np.expm1(2.0 * log_p / d)
        lo, hi = np.log(v.min() / denom), np.log(v.max() / denom)
        lo, hi = lo - 1e-9 * max(1.0, abs(lo)) - 1e-12, hi + 1e-9 * max(1.0, abs(hi)) + 1e-12

        def f(log_t: float) -> float:
            return 0.5 * float(np.sum(np.log1p(v * np.exp(-log_t)))) - log_p

        if f(lo) * f(hi) > 0:  # pragma: no cover - guarded by the bracket's construction
            raise RuntimeError("collapse_time: could not bracket the root")
        return float(np.exp(brentq(f, lo, hi, xtol=1e-14, rtol=1e-14, maxiter=500)))

    roots = np.array([solve(lp) for lp in np.log(n).ravel()]).reshape(n.shape)
    return float(roots) if roots.ndim == 0 else roots
