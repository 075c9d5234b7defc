r"""Chapter 4's sweeps of the exact empirical score, one job per data-set size.

Chapter 4 measures geometric memorization with the exact empirical score on two linear manifolds:

* **set (a)**, the memorization paper's synthetic data (:data:`SPHERE`): ``d = 30``, 2 coordinates at scale
  1, 5 at scale 0.3, 23 at 0.01, every sample projected to the unit sphere;
* **set (b)**, the spectral-gaps paper's random embedding (:func:`embedded_set`): ``d = 100``, two blocks of
  20 latents at scales 1 and 0.3, not normalised; its blocks are the eigenspaces of the data covariance.

Each function below computes one job of the registered experiment ``empirical-memorization``
(:mod:`diffnb.experiments`) from a small JSON-able configuration, and returns **exactly what the chapter
plots**: medians over test points of the per-block order parameter, the participation ratio, the normalised
Jacobian spectrum and the dimension read from it. The notebook and ``python -m diffnb run`` call the same
functions, so results computed on a cluster, exported with ``python -m diffnb export`` and committed under
``results/`` are the chapter's own numbers (see :func:`diffnb.results.gather`).

Every job draws its random numbers from its own generator, seeded by ``(seed, part, n_train)``
(:func:`job_rng`), so a job gives the same numbers alone, in any order, or on any worker.

Job configurations (``part`` selects the function; noise grids are ``[log10 t_min, log10 t_max, n]`` for
:func:`log_grid`, or ``[t_start, t_stop, n]`` for :func:`numpy.linspace` in the probe):

* ``{"part": "sphere", "n_train", "seed", "n_order", "n_spectra", "order_grid", "spec_grid", "n_population",
  "delta"}``, optionally with ``"n_normalised"``, ``"normalised_range"`` and ``"reference_steps"``:
  :func:`sphere_sweep`;
* ``{"part": "reference", "n_train", "seed", "n_points", "order_grid", "t_range", "n_population"}``:
  :func:`sphere_reference`;
* ``{"part": "probe", "n_train", "seed", "grid"}``: :func:`origin_probe`;
* ``{"part": "embedded", "n_train", "seed", "n_points", "n_spectra", "grid"}``: :func:`embedded_sweep`.

:func:`sphere_population_reference` is not a job: it computes the generalising value of set (a)'s order
parameter from the data population itself (a few seconds), as medians over test points.
:func:`normalised_sphere_order` divides a measured order parameter by that value *point by point* (the
population posterior at the same noised point), which :func:`sphere_sweep` does for its first
``n_normalised`` test points; chapter 3 calls it on its own sweeps.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from diffnb.data import AxisAlignedManifold, LinearManifold
from diffnb.posterior import _order_from_var, _times, official_probe_spectrum, sphere_posterior_variance, sweep
from diffnb.scores import prepare_data
from diffnb.spectra import dimension_over_time

__all__ = [
    "EMBEDDED_BLOCKS",
    "KINDS",
    "PARTS",
    "SPHERE",
    "SPHERE_BLOCKS",
    "embedded_set",
    "embedded_sweep",
    "job_rng",
    "log_grid",
    "normalised_sphere_order",
    "origin_probe",
    "reference_points",
    "run",
    "sphere_population_reference",
    "sphere_reference",
    "sphere_sweep",
    "sphere_variances",
]

#: Set (a), the memorization paper's synthetic data, as in its official code (``d = 30``, ``d1 = 2``,
#: ``d2 = 5``, scales 1, 0.3 and 0.01, ``is_normalized=True``).
SPHERE = AxisAlignedManifold(30, (2, 5), (1.0, 0.3), normal_scale=0.01, normalized=True)
#: The tangent blocks of set (a), the scale-1 pair and the scale-0.3 block.
SPHERE_BLOCKS = (slice(0, 2), slice(2, 7))
#: The tangent blocks of set (b), as ranges of eigenvectors of its covariance (largest first).
EMBEDDED_BLOCKS = (slice(0, 20), slice(20, 40))
#: The two kinds of test point near the data, noised training points and noised fresh samples.
KINDS = ("train", "fresh")
#: The parts of the experiment, in the order of their code in :func:`job_rng`.
PARTS = ("sphere", "reference", "probe", "embedded")


def log_grid(grid: Any) -> np.ndarray:
    """Noise levels ``numpy.logspace(a, b, n)`` from a job's ``[a, b, n]`` (``a``, ``b`` are ``log10 t``)."""
    a, b, n = grid
    return np.logspace(float(a), float(b), int(n))


def job_rng(job: dict[str, Any]) -> np.random.Generator:
    """The job's own random generator, seeded by ``(seed, part, n_train)``."""
    return np.random.default_rng([int(job["seed"]), PARTS.index(job["part"]), int(job["n_train"])])


def sphere_variances(n_population: int, seed: int = 1) -> np.ndarray:
    """Per-direction variances of set (a) after the projection to the sphere, averaged within each block.

    Estimated from ``n_population`` samples (seed ``seed``); shape ``(30,)``: the pair, the block of 5 and
    the 23 normal directions each share one value.
    """
    return _sphere_variances(int(n_population), int(seed)).copy()


@functools.lru_cache(maxsize=4)
def _sphere_variances(n_population: int, seed: int) -> np.ndarray:
    # every job of a sweep asks for the same estimate (about 1 s at n_population = 400 000): once per process
    population = SPHERE.sample(n_population, seed=seed)
    edges = [*SPHERE_BLOCKS, slice(SPHERE.m, SPHERE.d)]
    block_var = [population[:, block].var(0).mean() for block in edges]
    return np.repeat(block_var, [block.stop - block.start for block in edges])


def embedded_set() -> tuple[LinearManifold, np.ndarray, np.ndarray]:
    """Set (b): the manifold, the eigenvalues of its covariance (descending, floored at ``1e-8``) and the
    eigenvectors as columns, in the same order."""
    manifold = LinearManifold(d=100, block_dims=(20, 20), scales=(1.0, 0.3), seed=0)
    eigvals, eigvecs = np.linalg.eigh(manifold.covariance)
    eigvals, eigvecs = eigvals[::-1].copy(), eigvecs[:, ::-1].copy()
    return manifold, np.clip(eigvals, 1e-8, None), eigvecs


def _test_points(kind: str, data: np.ndarray, n: int, manifold: Any, rng: np.random.Generator) -> np.ndarray:
    """``n`` base points: training points (with replacement when ``n > P``) or fresh samples."""
    if kind == "train":
        P = data.shape[0]
        return data[rng.choice(P, n, replace=P < n)]
    return manifold.sample(n, seed=rng)


def sphere_sweep(job: dict[str, Any]) -> dict[str, np.ndarray]:
    """Set (a) at one data-set size: order parameter, participation, spectra and dimension, both kinds.

    For each kind of test point (:data:`KINDS`), ``n_order`` points ``x = y + sqrt(t) xi`` move with the
    noise over the ``order_grid`` (order parameter of the two blocks, participation ratio); the first
    ``n_spectra`` of them also get the exact normalised Jacobian spectrum over the ``spec_grid`` and the
    dimension read from it (normalised values below ``1 - delta``).

    When the job has ``n_normalised > 0`` (at most ``n_order``), the first ``n_normalised`` test points of
    each kind also get the order parameter divided by its generalising value at the same point and noise
    level (:func:`normalised_sphere_order`), on the order levels inside ``normalised_range = [t_lo, t_hi]``
    (inclusive; NaN elsewhere; every level when the job has no ``normalised_range``), with Monte Carlo chains
    of ``reference_steps`` steps (default 3000). At a
    noised training point the generalising value is as well defined as at a fresh sample: a training point
    is a sample of the population, so the population posterior at ``x`` is what a perfectly generalising
    score would use there. The chains draw from their own generator,
    ``numpy.random.default_rng([seed, len(PARTS) + 1, n_train])``, so the job's other outputs are the same
    numbers with or without them.

    Returns
    -------
    dict
        ``order_times``, ``spec_times``, ``variances`` (30,); and for ``k`` in ``train``, ``fresh``, medians
        over test points: ``{k}_order`` (order levels, 2), ``{k}_participation`` (order levels,),
        ``{k}_spectrum`` (spectrum levels, 30; ascending at every level), ``{k}_dimension``
        (spectrum levels,); with ``n_normalised > 0`` also ``{k}_order_normalised`` (order levels, 2), the
        median over the first ``n_normalised`` points of the per-point ratio, and ``{k}_order_population``
        (order levels, 2), the median of the generalising value itself at those points (both NaN outside
        ``normalised_range``).
    """
    rng = job_rng(job)
    order_times, spec_times = log_grid(job["order_grid"]), log_grid(job["spec_grid"])
    variances = sphere_variances(job["n_population"])
    n_order, n_spectra = int(job["n_order"]), int(job["n_spectra"])
    n_normalised = int(job.get("n_normalised", 0))
    if not 0 <= n_normalised <= n_order:
        raise ValueError(f"n_normalised must lie in [0, n_order = {n_order}], got {n_normalised}")
    if n_normalised:
        t_range = job.get("normalised_range")  # None: every level
        n_steps = int(job.get("reference_steps", 3000))
        # the chains' own generator: the draws of job_rng (hence every other output) stay as they were
        chain_rng = np.random.default_rng([int(job["seed"]), len(PARTS) + 1, int(job["n_train"])])
    data = SPHERE.sample(int(job["n_train"]), seed=rng)
    prepared = prepare_data(data)  # checked once for the four sweeps
    out = {"order_times": order_times, "spec_times": spec_times, "variances": variances}
    for kind in KINDS:
        base = _test_points(kind, data, n_order, SPHERE, rng)
        noise = rng.standard_normal((n_order, SPHERE.d))
        stats = sweep(prepared, base, noise, order_times, variances=variances, blocks=SPHERE_BLOCKS, spectra=False)
        spectra = sweep(prepared, base[:n_spectra], noise[:n_spectra], spec_times, order=False)["spectra"]
        out[f"{kind}_order"] = np.median(stats["order"], axis=1)
        out[f"{kind}_participation"] = np.median(stats["participation"], axis=1)
        out[f"{kind}_spectrum"] = np.median(spectra, axis=1)
        dims = dimension_over_time(spectra, "threshold", delta=float(job["delta"]))
        out[f"{kind}_dimension"] = np.median(dims, axis=1)
        if n_normalised:
            k = n_normalised
            normalised = normalised_sphere_order(
                stats["order"][:, :k],
                base[:k],
                noise[:k],
                order_times,
                variances,
                t_range=t_range,
                n_steps=n_steps,
                seed=chain_rng,
            )
            out[f"{kind}_order_normalised"] = normalised["normalised"]
            out[f"{kind}_order_population"] = normalised["population"]
    return out


def _reference_draws(job: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training set, the fresh base points and the noise of a ``reference`` job, in the job's order."""
    rng = job_rng(job)
    data = SPHERE.sample(int(job["n_train"]), seed=rng)
    n = int(job["n_points"])
    base, noise = SPHERE.sample(n, seed=rng), rng.standard_normal((n, SPHERE.d))
    return data, base, noise


def sphere_reference(job: dict[str, Any]) -> dict[str, np.ndarray]:
    """Set (a) with very many training points, at fresh samples: the generalising reference of the order
    parameter, over the levels of ``order_grid`` inside ``t_range``.

    Returns
    -------
    dict
        ``times`` (levels,), ``order`` (levels, 2) and ``participation`` (levels,), medians over the
        ``n_points`` test points.
    """
    times = log_grid(job["order_grid"])
    lo, hi = job["t_range"]
    times = times[(times > lo) & (times < hi)]
    data, base, noise = _reference_draws(job)
    variances = sphere_variances(job["n_population"])
    stats = sweep(data, base, noise, times, variances=variances, blocks=SPHERE_BLOCKS, spectra=False)
    return {
        "times": times,
        "order": np.median(stats["order"], axis=1),
        "participation": np.median(stats["participation"], axis=1),
    }


def reference_points(job: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The base points and noise of a ``reference`` job (:func:`sphere_reference`), shapes ``(n_points, 30)``:
    the same test points, for a comparison of its large-``P`` empirical posterior with the population's
    (:func:`sphere_population_reference`)."""
    if job.get("part") != "reference":
        raise ValueError(f"job must be a reference job (part 'reference'), got part {job.get('part')!r}")
    _, base, noise = _reference_draws(job)
    return base, noise


def _sphere_points(variances: Any, base: Any, noise: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked float64 ``variances`` (30,), ``base`` and ``noise`` (n, 30) of set (a)'s test points."""
    v = np.asarray(variances, dtype=np.float64)
    if v.shape != (SPHERE.d,) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"variances must be {SPHERE.d} positive numbers, got shape {v.shape}")
    base, noise = np.asarray(base, dtype=np.float64), np.asarray(noise, dtype=np.float64)
    if base.ndim != 2 or base.shape[1] != SPHERE.d or noise.shape != base.shape:
        raise ValueError(f"base and noise must both have shape (n, {SPHERE.d}), got {base.shape} and {noise.shape}")
    if not (np.all(np.isfinite(base)) and np.all(np.isfinite(noise))):
        raise ValueError("base and noise must be finite")
    return v, base, noise


def sphere_population_reference(
    times: Any,
    variances: Any,
    *,
    base: Any = None,
    noise: Any = None,
    n_points: int = 96,
    n_steps: int = 3000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The generalising value of set (a)'s order parameter: the population posterior instead of ``P`` points.

    On the sphere the posterior of the data population is not Gaussian, so the order parameter of a score
    that generalises perfectly is not 1: about 0.6 for the scale-1 pair at small noise (its two coordinates
    form a thin ring, whose radial direction carries little posterior variance) and about 0.9 for the
    scale-0.3 block. This computes it with :func:`diffnb.posterior.sphere_posterior_variance` (exact up to
    Monte Carlo error) at noised fresh samples ``x = base + sqrt(t) noise`` that move with the noise, like the
    sweeps'. It returns medians over its points, which describe the generalising value's typical size; to
    normalise a measured order parameter, divide point by point with :func:`normalised_sphere_order`. A
    median over *other* points is off by that median's sampling spread, which is large for the pair (its
    value goes like ``t/|x_pair|``): the 96 points of seed 0 put it 11-15% low at ``t`` = 0.1-0.6.

    Parameters
    ----------
    times
        Noise levels, shape ``(n_times,)``.
    variances
        Per-direction variances used by the order parameter (:func:`sphere_variances`), shape ``(30,)``.
    base, noise
        Test points ``(n, 30)`` on the sphere and standard normal noise ``(n, 30)``; by default ``n_points``
        fresh samples and noise drawn with ``seed``.
    n_points, n_steps, seed
        Number of fresh samples (when ``base`` is not given), steps of every chain, and the seed.

    Returns
    -------
    dict
        ``times`` (levels,) and ``order`` (levels, 2): medians over the points of the two blocks' order
        parameter under the population posterior.
    """
    tt = _times(times, "times")
    if (base is None) != (noise is None):
        raise ValueError("base and noise must be given together (or neither, for fresh samples)")
    rng = np.random.default_rng([int(seed), len(PARTS)])
    if base is None:
        if int(n_points) != n_points or n_points < 1:
            raise ValueError(f"n_points must be a positive integer, got {n_points!r}")
        base = SPHERE.sample(int(n_points), seed=rng)
        noise = rng.standard_normal(base.shape)
    v, base, noise = _sphere_points(variances, base, noise)
    order = _population_order(base, noise, tt, v, n_steps=n_steps, rng=rng)
    return {"times": tt, "order": np.median(order, axis=1)}


#: Chains of :func:`sphere_posterior_variance` run at once by :func:`normalised_sphere_order` and
#: :func:`sphere_population_reference` (per chain, larger batches run slower on one CPU thread: about 4.8e5
#: chain steps per second at 2000, 3.2e5 at 8000).
#: The batches draw from one generator in turn, so changing this changes the chains' draws, hence the
#: results of a seeded call (within their Monte Carlo error): it is part of what a job computes.
_CHAIN_BATCH = 2048


def _population_order(
    base: np.ndarray,
    noise: np.ndarray,
    tt: np.ndarray,
    variances: np.ndarray,
    *,
    n_steps: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Set (a)'s order parameter under the population posterior at ``base + sqrt(t) noise``, every point and
    level: shape ``(levels, n, 2)``. The chains run :data:`_CHAIN_BATCH` at a time, drawing from ``rng`` in
    the order of the levels, then the points."""
    n = base.shape[0]
    x = (base[None] + np.sqrt(tt)[:, None, None] * noise[None]).reshape(-1, SPHERE.d)
    t_all = np.repeat(tt, n)
    batch = _CHAIN_BATCH
    var = np.concatenate(
        [
            sphere_posterior_variance(
                x[i : i + batch], t_all[i : i + batch], SPHERE.coordinate_scales, n_steps=n_steps, seed=rng
            )
            for i in range(0, x.shape[0], batch)
        ]
    ).reshape(tt.size, n, SPHERE.d)
    blocks = [np.arange(SPHERE.d)[b] for b in SPHERE_BLOCKS]
    return np.stack([_order_from_var(var_t, float(t), variances, blocks) for var_t, t in zip(var, tt, strict=True)])


def normalised_sphere_order(
    order: Any,
    base: Any,
    noise: Any,
    times: Any,
    variances: Any,
    *,
    t_range: Sequence[float] | None = None,
    n_steps: int = 3000,
    seed: int | np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Set (a)'s order parameter divided by its generalising value at the same point: the per-point ratio.

    The generalising value of the order parameter at a noised point ``x`` is its value under the population
    posterior (:func:`diffnb.posterior.sphere_posterior_variance`), and it varies strongly from point to
    point: along the scale-1 ring the posterior is close to a von Mises law of concentration about
    ``|x_pair|/t``, so the pair's value goes like ``t/|x_pair|`` (10-90% range about 0.5-1.5 of its median).
    Dividing the median of a measured order parameter by the median of the generalising value over *other*
    points (:func:`sphere_population_reference`) therefore leaves a bias of the size of the sampling spread
    of that median; this function instead divides point by point, ``r(x) = order(x) / order_pop(x)``, and
    takes the median of ``r`` over the points. A score that generalises perfectly gives 1 at every level
    (up to the Monte Carlo error of the chains); a block frozen by memorization gives 0.

    The points may be noised fresh samples or noised training points: a training point is a sample of the
    population, so the population posterior at ``x`` is defined in the same way for both.

    Parameters
    ----------
    order
        Measured order parameter of the two blocks of :data:`SPHERE_BLOCKS`, point by point, shape
        ``(levels, n, 2)``, at the points ``base + sqrt(t) * noise`` (``sweep(...)["order"]`` of
        :func:`diffnb.posterior.sweep` with ``variances`` and ``blocks=SPHERE_BLOCKS``).
    base, noise
        Base points ``(n, 30)`` and the standard normal noise ``(n, 30)`` of those points.
    times
        Noise levels, shape ``(levels,)``.
    variances
        Per-direction variances of the order parameter (:func:`sphere_variances`), shape ``(30,)``.
    t_range
        ``(t_lo, t_hi)``: only the levels with ``t_lo <= t <= t_hi`` are computed (the cost is one Markov
        chain per point and level); the others are NaN. All levels by default.
    n_steps
        Steps of every chain (:func:`diffnb.posterior.sphere_posterior_variance`).
    seed
        Seed or generator of the chains.

    Returns
    -------
    dict
        ``times`` (levels,); ``normalised`` (levels, 2), the median over points of the per-point ratio;
        ``population`` (levels, 2), the median over the same points of the generalising value itself. Both
        are NaN at levels outside ``t_range``.
    """
    tt = _times(times, "times")
    v, base, noise = _sphere_points(variances, base, noise)
    measured = np.asarray(order, dtype=np.float64)
    expected = (tt.size, base.shape[0], len(SPHERE_BLOCKS))
    if measured.shape != expected:
        raise ValueError(f"order must have shape (levels, n, 2) = {expected}, got {measured.shape}")
    if not np.all(np.isfinite(measured)) or np.any(measured < 0):
        raise ValueError("order must hold finite, non-negative values")
    if t_range is None:
        inside = np.ones(tt.size, dtype=bool)
    else:
        bounds = np.asarray(t_range, dtype=np.float64)
        if bounds.shape != (2,) or not np.all(np.isfinite(bounds)) or not 0 < bounds[0] <= bounds[1]:
            raise ValueError(f"t_range must be two noise levels 0 < t_lo <= t_hi, got {t_range!r}")
        inside = (tt >= bounds[0]) & (tt <= bounds[1])
    normalised = np.full((tt.size, len(SPHERE_BLOCKS)), np.nan)
    population = normalised.copy()
    if inside.any():
        rng = np.random.default_rng(seed)
        pop = _population_order(base, noise, tt[inside], v, n_steps=n_steps, rng=rng)
        # A chain that (almost) never moved would underestimate the population variance and put its point's
        # ratio too high, +inf for an estimate of 0. The sampler's small moves have made such chains vanish
        # (none in 20 000 at t = 1e-3 to 0.1), and the median over points would be robust to a few.
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(pop > 0, measured[inside] / pop, np.inf)
        normalised[inside] = np.median(ratio, axis=1)
        population[inside] = np.median(pop, axis=1)
    return {"times": tt, "normalised": normalised, "population": population}


def origin_probe(job: dict[str, Any]) -> dict[str, np.ndarray]:
    """The memorization paper's empirical-score simulation at the origin, on ``np.linspace(*grid)``.

    Returns
    -------
    dict
        ``times`` (levels,) and ``spectra`` (levels, 30): the raw singular values of
        :func:`diffnb.posterior.official_probe_spectrum`, descending.
    """
    rng = job_rng(job)
    start, stop, n = job["grid"]
    times = np.linspace(float(start), float(stop), int(n))
    data = prepare_data(SPHERE.sample(int(job["n_train"]), seed=rng))  # checked once for every level
    spectra = np.array([official_probe_spectrum(np.zeros(SPHERE.d), data, t)[0] for t in times])
    return {"times": times, "spectra": spectra}


def embedded_sweep(job: dict[str, Any]) -> dict[str, np.ndarray]:
    """Set (b) at one data-set size: the order parameter of both bulks at both kinds of test point, and
    (when ``n_spectra > 0``) the median normalised spectrum at fresh samples.

    Returns
    -------
    dict
        ``times`` (levels,); ``train_order`` and ``fresh_order`` (levels, 2), medians over the ``n_points``
        test points; ``fresh_spectrum`` (levels, 100) when ``n_spectra > 0``.
    """
    rng = job_rng(job)
    manifold, variances, eigvecs = embedded_set()
    times = log_grid(job["grid"])
    data = manifold.sample(int(job["n_train"]), seed=rng)
    prepared = prepare_data(data)  # checked once for every sweep
    n, n_spectra = int(job["n_points"]), int(job["n_spectra"])
    out = {"times": times}
    for kind in KINDS:
        base = _test_points(kind, data, n, manifold, rng)
        noise = rng.standard_normal((n, manifold.d))
        stats = sweep(
            prepared, base, noise, times, variances=variances, blocks=EMBEDDED_BLOCKS, basis=eigvecs, spectra=False
        )
        out[f"{kind}_order"] = np.median(stats["order"], axis=1)
        if kind == "fresh" and n_spectra > 0:
            spectra = sweep(prepared, base[:n_spectra], noise[:n_spectra], times, order=False)["spectra"]
            out["fresh_spectrum"] = np.median(spectra, axis=1)
    return out


_RUNNERS = {"sphere": sphere_sweep, "reference": sphere_reference, "probe": origin_probe, "embedded": embedded_sweep}


def run(job: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run one job of chapter 4's experiment (dispatch on ``job["part"]``, one of :data:`PARTS`)."""
    part = job.get("part")
    if part not in _RUNNERS:
        raise ValueError(f"job part must be one of {', '.join(PARTS)}, got {part!r}")
    return _RUNNERS[part](job)
