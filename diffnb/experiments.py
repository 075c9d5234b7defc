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

import functools
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffnb import __version__, cache
from diffnb.config import SCALES, active_scale, get_scale, pick

Job = dict[str, Any]
JobResult = dict[str, Any]


@dataclass(frozen=True)
class Experiment:
    """A sweep of independent jobs behind a chapter.

    Parameters
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
    version
        Version of ``run``'s results: part of every job's cache key from 2 on. Raise it when a change to
        ``run`` (or to what it calls, such as a dimension rule's defaults) alters the result of an unchanged
        job, so that cached results are recomputed instead of served stale.
    """

    name: str
    chapter: str
    description: str
    make_jobs: Callable[[str], list[Job]]
    run: Callable[[Job], JobResult]
    version: int = 1

    def jobs(self, scale: str | None = None) -> list[Job]:
        """The job configurations at ``scale`` (default: the active ``DIFFNB_SCALE``)."""
        return list(self.make_jobs(get_scale(scale)))

    @property
    def cache_kind(self) -> str:
        """Sub-folder of the cache that holds this experiment's jobs."""
        return f"experiment-{self.name}"

    def cache_config(self, job: Job) -> dict[str, Any]:
        """What a job is cached under: the job itself at version 1 (so that the keys of results computed
        before versions existed stay valid), else the job together with the version."""
        return job if self.version == 1 else {"job": job, "experiment_version": self.version}

    def lookup(self, job: Job, scale: str | None = None) -> dict[str, Any] | None:
        """The cached record of one job at ``scale`` (see :func:`run_job`), or ``None`` when not yet run."""
        return cache.lookup(self.cache_kind, self.cache_config(job), scale=get_scale(scale))


#: The registered experiments by name (filled by :func:`register`).
REGISTRY: dict[str, Experiment] = {}


def register(name: str, *, chapter: str, description: str, jobs: Callable[[str], list[Job]], version: int = 1):
    """Decorator that adds a job function to :data:`REGISTRY` under ``name`` (``version``: see
    :class:`Experiment`)."""
    if not name or not name.replace("-", "").isalnum():
        raise ValueError(f"name must be letters, digits and '-', got {name!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")

    def decorate(run: Callable[[Job], JobResult]) -> Callable[[Job], JobResult]:
        if name in REGISTRY:
            raise ValueError(f"an experiment named {name!r} is already registered")
        REGISTRY[name] = Experiment(name, chapter, description, jobs, run, version)
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
    """Cache key of one job (hash of the experiment, the job, the experiment's version from 2 on, the package
    version and the scale). Version 1 leaves the job alone, so that the keys of results computed before
    versions existed stay valid."""
    return cache.config_key(experiment.cache_kind, experiment.cache_config(job), scale=get_scale(scale))


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def hardware() -> str:
    """One line naming the machine a job ran on: CPU, cores, torch threads and accelerator.

    For example ``"x86_64, AMD EPYC, 2 cores, 1 torch thread, cpu"``.
    """
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    threads = torch.get_num_threads()
    return (
        f"{platform.machine()}, {_cpu_model()}, {os.cpu_count()} cores, "
        f"{threads} torch thread{'s' if threads != 1 else ''}, {device}"
    )


def run_job(name: str, job: Job, scale: str | None = None, *, use_cache: bool = True) -> dict[str, Any]:
    """Run one job through the cache; returns ``{"result", "seconds", "hardware", "version"}``.

    A job that is already cached is read back (its ``seconds`` are those of the run that computed it).
    With ``use_cache=False`` the job is computed and nothing is read or written. The job runs with ``scale``
    active (:func:`diffnb.config.active_scale`), whatever ``DIFFNB_SCALE`` says.
    """
    experiment = get_experiment(name)
    scale = get_scale(scale)

    def compute() -> dict[str, Any]:
        start = time.perf_counter()
        with active_scale(scale):  # what the job caches inside (a trained network) is keyed by this scale
            result = experiment.run(dict(job))
        return {
            "result": result,
            "seconds": time.perf_counter() - start,
            "hardware": hardware(),
            "version": __version__,
        }

    if not use_cache:
        return compute()
    return cache.cached(experiment.cache_kind, experiment.cache_config(job), compute, scale=scale)


def cached_jobs(name: str, scale: str | None = None) -> list[tuple[Job, dict[str, Any] | None]]:
    """Every job of an experiment at ``scale`` with its cached record, or ``None`` when not yet run."""
    experiment = get_experiment(name)
    scale = get_scale(scale)
    return [(job, experiment.lookup(job, scale)) for job in experiment.jobs(scale)]


# ------------------------------------------------------------------------------------------- built-ins
#: The memorization paper's data-set-size sweep on its d = 30 set (official code, figure files
#: ``linear_model_spectrum_ds_{P}_...``): the sizes of chapter 4's set (a) at ``full`` and ``paper`` scale.
PAPER_SIZES = [10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 20_000]


def _memorization_jobs(scale: str) -> list[Job]:
    """Chapter 4's jobs at ``scale``; see :mod:`diffnb.empirical_sweeps` for what each part computes.

    At ``paper`` scale the data-set sizes of set (a) are the paper's own, and the spectra use its number of
    noise levels (100; the paper spaces them linearly on ``[0.01, 1]``, the book logarithmically on
    ``[1e-4, 0.5]``); the probe at the origin is the paper's grid ``linspace(1, 0.01, 100)``. The numbers of
    test points, the order-parameter grid, the reference and set (b) are the book's additions (the papers
    give no sizes for them; set (b)'s largest size is the spectral-gaps companion code's default, 20 000).

    Set (a)'s order parameter is also divided by its generalising value point by point
    (:func:`diffnb.empirical_sweeps.normalised_sphere_order`) at the first ``n_normalised`` test points, on the
    levels in ``normalised_range``, with chains of ``reference_steps`` steps. Its floor is 1e-3 at ``full`` and
    ``paper`` scale and 5e-4 at ``quick``: the crossings of half the generalising value at quick scale lie between
    1.05e-3 (fresh samples, P = 20 000) and 0.49 (P = 10) over eight seeds of the jobs (0, 10, ..., 70), and the
    quick grid's levels nearest 1e-3 are 1.4e-3 and 8.9e-4, so with a floor of 1e-3 one draw in eight had no level
    below its fresh crossing at P = 20 000 (NaN); at 5.7e-4, the lowest level the quick floor adds, the median
    ratio of the sigma = 0.3 block there was at most 0.08 in all eight (at 8.9e-4 up to 0.40; the pair's at
    most 0.025 and 0.17). One chain per point, level and kind
    at 5e5 to 8e5 chain steps a second on one CPU thread (batches of 2048 chains,
    ``empirical_sweeps._CHAIN_BATCH``), so about 15 s per job at ``quick`` scale (96 points, 20 levels), 85-90 s at
    ``full`` (all 384 points, 30 levels) and 80-100 s at ``paper`` (256 points, 40 levels). With 3000 steps, three
    chain seeds moved the median per-point ratio by at most 0.043 at t >= 0.1 and 0.086 at smaller t (quick scale,
    P = 100, 1000 and 20 000, both kinds of point). At ``full`` every test point is used: with 128 of them the
    crossings of neighbouring sizes (2x apart, where theory expects them to fall by about 10%) came out of order,
    the fresh block's rising by 33% from P = 2500 to 5000; with 384 they fall at every step.
    """
    p = functools.partial(pick, scale=scale)
    order_grid = [-4.0, 1.5, p(quick=30, full=48, paper=64)]
    sphere = {
        "part": "sphere",
        "seed": 0,
        "n_order": p(quick=96, full=384, paper=1024),
        "n_spectra": p(quick=12, full=48, paper=128),
        "order_grid": order_grid,
        "spec_grid": [-4.0, float(np.log10(0.5)), p(quick=20, full=36, paper=100)],
        "n_population": p(quick=100_000, full=400_000),
        "delta": 0.05,
        "n_normalised": p(quick=96, full=384, paper=256),
        "normalised_range": [p(quick=5e-4, full=1e-3), 3.0],  # see the docstring
        "reference_steps": 3000,
    }
    jobs = [
        {**sphere, "n_train": n} for n in p(quick=[10, 100, 1_000, 5_000, 20_000], full=PAPER_SIZES, paper=PAPER_SIZES)
    ]
    jobs.append(
        {
            "part": "reference",
            "seed": 0,
            "n_train": p(quick=50_000, full=400_000),
            "n_points": 32,
            "order_grid": order_grid,
            "t_range": [3e-3, 3.0],
            "n_population": sphere["n_population"],
        }
    )
    jobs += [
        {"part": "probe", "seed": 0, "n_train": n, "grid": [1.0, 0.01, p(quick=34, full=100)]}
        for n in p(quick=[1_000, 20_000], full=[1_000, 20_000, 200_000])
    ]
    spectrum_sizes = p(quick=[1_000, 5_000], full=[1_000, 10_000], paper=[1_000, 20_000])
    jobs += [
        {
            "part": "embedded",
            "seed": 0,
            "n_train": n,
            "n_points": p(quick=64, full=256, paper=512),
            "n_spectra": p(quick=32, full=32, paper=64) if n in spectrum_sizes else 0,
            "grid": [-2.5, 0.8, p(quick=22, full=40, paper=48)],
        }
        for n in p(
            quick=[100, 1_000, 5_000],
            full=[100, 300, 1_000, 3_000, 10_000],
            paper=[100, 300, 1_000, 3_000, 10_000, 20_000],
        )
    ]
    return jobs


@register(
    "empirical-memorization",
    chapter="4",
    description="exact empirical-score spectra, order parameters and dimensions over noise and data-set size",
    jobs=_memorization_jobs,
    # 2: the population sampler behind set (a)'s normalised order parameter gained its small moves
    version=2,
)
def empirical_memorization(job: Job) -> JobResult:
    """One job of chapter 4 (:func:`diffnb.empirical_sweeps.run`): a data-set size of set (a) or (b), the
    large-``P`` reference, or the paper's probe at the origin."""
    from diffnb.empirical_sweeps import run

    return run(job)


def _image_jobs(scale: str) -> list[Job]:
    from diffnb.image_protocol import image_jobs

    return image_jobs(scale)


@register(
    "images-memorization",
    chapter="7",
    description="latent dimension of image models against training-set size (memorization paper, Fig. 6)",
    jobs=_image_jobs,
)
def images_memorization(job: Job) -> JobResult:
    """One job of the memorization paper's image protocol (:func:`diffnb.image_protocol.run_image_job`)."""
    from diffnb.image_protocol import run_image_job

    return run_image_job(job)


def _phase_network_jobs(scale: str) -> list[Job]:
    from diffnb.phase_networks import network_jobs

    return network_jobs(scale)


@register(
    "phase-networks",
    chapter="8",
    description="the two score networks whose phases chapter 8 reads (a linear manifold at d = 100, the digits)",
    jobs=_phase_network_jobs,
)
def phase_networks(job: Job) -> JobResult:
    """One network of chapter 8 (:func:`diffnb.phase_networks.run_network_job`): its weights and loss curve."""
    from diffnb.phase_networks import run_network_job

    return run_network_job(job)


__all__ = [
    "SCALES",
    "Experiment",
    "PAPER_SIZES",
    "REGISTRY",
    "cached_jobs",
    "get_experiment",
    "hardware",
    "job_key",
    "register",
    "run_job",
]
