"""Named experiments: the heavy computations behind the chapters, as sweeps of independent jobs.

An :class:`Experiment` turns a scale into a list of **jobs** (small JSON-able configurations, one per point
of a sweep: a data-set size, a seed, a data set) and runs one job into a dict of arrays and numbers. Every
job goes through :mod:`diffnb.cache`, so a rerun skips what is done, and :mod:`diffnb.sweeps` can hand the
jobs to a Dask cluster. ``python -m diffnb list`` shows the registry.

Register a new experiment with :func:`register`::

    @register("my-sweep", chapter="5", description="...", jobs=lambda scale: [{"n_train": n} for n in ...])
    def my_sweep(job: dict) -> dict:
        ...
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffnb import __version__, cache
from diffnb.config import SCALES, get_scale, pick

Job = dict[str, Any]
JobResult = dict[str, Any]


@dataclass(frozen=True)
class Experiment:
    """A sweep of independent jobs behind a chapter.

    Attributes
    ----------
    name
        Registry name (letters, digits and ``-``).
    chapter
        The book chapter that plots the results.
    description
        One line for ``diffnb list``.
    make_jobs
        ``make_jobs(scale) -> list[dict]``: the job configurations at a scale.
    run
        ``run(job) -> dict``: arrays and numbers of one job; must be a module-level function so that Dask
        workers can import it.
    """

    name: str
    chapter: str
    description: str
    make_jobs: Callable[[str], list[Job]]
    run: Callable[[Job], JobResult]

    def jobs(self, scale: str | None = None) -> list[Job]:
        """The job configurations at ``scale`` (default: the active ``DIFFNB_SCALE``)."""
        return list(self.make_jobs(get_scale(scale)))

    @property
    def cache_kind(self) -> str:
        """Sub-folder of the cache that holds this experiment's jobs."""
        return f"experiment-{self.name}"


REGISTRY: dict[str, Experiment] = {}


def register(name: str, *, chapter: str, description: str, jobs: Callable[[str], list[Job]]):
    """Decorator that adds a job function to :data:`REGISTRY` under ``name``."""
    if not name or not name.replace("-", "").isalnum():
        raise ValueError(f"name must be letters, digits and '-', got {name!r}")

    def decorate(run: Callable[[Job], JobResult]) -> Callable[[Job], JobResult]:
        if name in REGISTRY:
            raise ValueError(f"an experiment named {name!r} is already registered")
        REGISTRY[name] = Experiment(name, chapter, description, jobs, run)
        return run

    return decorate


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``; the error lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY)) or "(none)"
        raise KeyError(f"no experiment named {name!r}; known experiments: {known}") from None


def job_key(experiment: Experiment, job: Job, scale: str | None = None) -> str:
    """Cache key of one job (hash of the experiment, the job, the package version and the scale)."""
    return cache.config_key(experiment.cache_kind, job, scale=get_scale(scale))


def hardware() -> str:
    """One line naming the machine a job ran on."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, {device}".strip()


def run_job(name: str, job: Job, scale: str | None = None) -> dict[str, Any]:
    """Run one job through the cache; returns ``{"result", "seconds", "hardware", "version"}``.

    A job that is already cached is read back (its ``seconds`` are those of the run that computed it).
    """
    experiment = get_experiment(name)
    scale = get_scale(scale)

    def compute() -> dict[str, Any]:
        start = time.perf_counter()
        result = experiment.run(dict(job))
        return {
            "result": result,
            "seconds": time.perf_counter() - start,
            "hardware": hardware(),
            "version": __version__,
        }

    return cache.cached(experiment.cache_kind, job, compute, scale=scale)


def cached_jobs(name: str, scale: str | None = None) -> list[tuple[Job, dict[str, Any] | None]]:
    """Every job of an experiment at ``scale`` with its cached record, or ``None`` when not yet run."""
    experiment = get_experiment(name)
    scale = get_scale(scale)
    return [(job, cache.lookup(experiment.cache_kind, job, scale=scale)) for job in experiment.jobs(scale)]


# ------------------------------------------------------------------------------------------- built-ins
def _memorization_jobs(scale: str) -> list[Job]:
    sizes = pick(
        quick=[100, 1000, 10_000],
        full=[10, 50, 100, 250, 500, 1000, 2500, 5000, 20_000],
        scale=scale,
    )
    return [
        {
            "n_train": n,
            "seed": 0,
            "n_points": pick(quick=16, full=64, scale=scale),
            "n_times": pick(quick=24, full=60, scale=scale),
        }
        for n in sizes
    ]


@register(
    "empirical-memorization",
    chapter="4",
    description="exact empirical-score spectra and block order parameters over noise, memorization paper's set",
    jobs=_memorization_jobs,
)
def empirical_memorization(job: Job) -> JobResult:
    """One data-set size of chapter 4's sweep: the ``d = 30`` set on the sphere, noised fresh samples."""
    from diffnb.data import AxisAlignedManifold
    from diffnb.posterior import sweep
    from diffnb.spectra import dimension_over_time

    manifold = AxisAlignedManifold(30, (2, 5), (1.0, 0.3), normal_scale=0.01, normalized=True)
    rng = np.random.default_rng(job["seed"])
    data = manifold.sample(job["n_train"], seed=rng)
    fresh = manifold.sample(job["n_points"], seed=rng)
    noise = rng.standard_normal(fresh.shape)
    times = np.geomspace(1.0, 1e-3, job["n_times"])
    variances = manifold.sample(20_000, seed=rng).var(axis=0)
    out = sweep(data, fresh, noise, times, variances=variances, blocks=manifold.block_slices())
    return {
        "times": times,
        "spectra": out["spectra"],
        "order": out["order"],
        "participation": out["participation"],
        # chapter 4's read-out: directions whose normalised value lies below 1 - 0.05
        "dimension": dimension_over_time(out["spectra"], "threshold", delta=0.05),
    }


__all__ = [
    "SCALES",
    "Experiment",
    "REGISTRY",
    "cached_jobs",
    "get_experiment",
    "hardware",
    "job_key",
    "register",
    "run_job",
]
