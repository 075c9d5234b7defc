"""Run an experiment's jobs one after another or on a Dask cluster, skipping what the cache already holds.

* ``executor="sequential"`` runs the jobs in this process;
* ``executor="dask"`` submits them to a ``distributed.LocalCluster`` (default), to a running scheduler
  (``address="tcp://host:8786"``), or to a ``dask-jobqueue`` cluster on a batch system
  (``cluster="slurm"``, ``"pbs"``, ``"sge"``, ``"lsf"``, ``"htcondor"``, with ``cluster_options``).

Each job writes its own cache entry when it finishes, so a failed job loses nothing of the others, and a
rerun submits only the jobs that are missing. A failure is reported with its configuration and traceback.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from diffnb import cache
from diffnb._progress import tqdm
from diffnb._validation import check_choice
from diffnb.config import get_scale
from diffnb.experiments import Job, cached_jobs, get_experiment, job_key, run_job

CLUSTERS = ("slurm", "pbs", "sge", "lsf", "htcondor")


@dataclass
class JobOutcome:
    """What happened to one job.

    Parameters
    ----------
    job
        The job's configuration.
    record
        What :func:`~diffnb.experiments.run_job` returned (``{"result", "seconds", "hardware", "version"}``),
        or ``None`` when the job failed.
    error
        The traceback of a failed job, else ``None``.
    from_cache
        Whether the record was read from the cache rather than computed by this sweep.
    """

    job: Job
    record: dict[str, Any] | None = None
    error: str | None = None
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        """Whether the job succeeded (it has no error)."""
        return self.error is None


@dataclass
class SweepSummary:
    """All outcomes of a sweep, and how long it took.

    Parameters
    ----------
    name
        The experiment.
    scale
        The scale it ran at.
    executor
        ``"sequential"`` or ``"dask"``.
    outcomes
        One :class:`JobOutcome` per job, in the experiment's job order.
    wall_seconds
        Wall-clock time of the whole sweep.
    """

    name: str
    scale: str
    executor: str
    outcomes: list[JobOutcome] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def failed(self) -> list[JobOutcome]:
        """The outcomes of the jobs that failed."""
        return [o for o in self.outcomes if not o.ok]

    def report(self) -> str:
        """A few lines: what ran, what was cached, what failed, where the results are, how long it took."""
        ran = sum(o.ok and not o.from_cache for o in self.outcomes)
        cached = sum(o.from_cache for o in self.outcomes)
        lines = [
            f"experiment {self.name} at scale {self.scale} ({self.executor}): {len(self.outcomes)} jobs, "
            f"{ran} run, {cached} from the cache, {len(self.failed)} failed, {self.wall_seconds:.1f} s",
            f"results are cached under {cache.cache_dir()}/{get_experiment(self.name).cache_kind}",
        ]
        for outcome in self.failed:
            last = outcome.error.strip().splitlines()[-1] if outcome.error else ""
            lines.append(f"FAILED {outcome.job}: {last}")
        return "\n".join(lines)


def _execute(name: str, job: Job, scale: str) -> JobOutcome:
    """Run one job and catch its failure (module level, so that Dask workers can import it)."""
    try:
        return JobOutcome(job=job, record=run_job(name, job, scale))
    except Exception:  # noqa: BLE001 - a failed job is reported with its traceback, the sweep goes on
        return JobOutcome(job=job, error=traceback.format_exc())


def _client(address: str | None, cluster: str | None, n_workers: int | None, cluster_options: dict | None):
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ImportError("executor='dask' needs the 'distributed' package: pip install 'dask[distributed]'") from exc
    if address is not None:
        return Client(address), None
    if cluster is not None:
        check_choice(cluster, CLUSTERS, "cluster")
        try:
            import dask_jobqueue
        except ImportError as exc:
            raise ImportError(
                f"cluster={cluster!r} needs dask-jobqueue: pip install 'diffnb[cluster]' (or dask-jobqueue)"
            ) from exc
        cls = getattr(dask_jobqueue, {"htcondor": "HTCondorCluster"}.get(cluster, f"{cluster.upper()}Cluster"))
        batch = cls(**(cluster_options or {}))
        batch.scale(jobs=n_workers or 1)
        return Client(batch), batch
    local = LocalCluster(n_workers=n_workers or 2, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(local), local


def run_sweep(
    name: str,
    scale: str | None = None,
    *,
    executor: str = "sequential",
    address: str | None = None,
    cluster: str | None = None,
    n_workers: int | None = None,
    cluster_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> SweepSummary:
    """Run every job of experiment ``name`` at ``scale``; cached jobs are read, not rerun.

    Parameters
    ----------
    name
        A registered experiment (see ``python -m diffnb list``).
    scale
        ``quick``, ``full`` or ``paper``; default ``DIFFNB_SCALE``.
    executor
        ``"sequential"`` or ``"dask"``.
    address
        Scheduler address of a running Dask cluster (``executor="dask"``).
    cluster
        Batch system for ``dask-jobqueue`` (``executor="dask"``): one of ``"slurm"``, ``"pbs"``, ``"sge"``,
        ``"lsf"``, ``"htcondor"``.
    n_workers
        Local workers (default 2) or batch jobs (default 1).
    cluster_options
        Keyword arguments of the ``dask-jobqueue`` cluster's constructor
        (e.g. ``{"cores": 8, "memory": "32GB", "walltime": "04:00:00"}``).
    progress
        Show a progress bar.

    Returns
    -------
    SweepSummary
        One outcome per job; failed jobs carry their traceback (see :meth:`SweepSummary.report`).
    """
    if executor not in ("sequential", "dask"):
        raise ValueError(f"executor must be 'sequential' or 'dask', got {executor!r}")
    if executor == "sequential" and (address or cluster):
        raise ValueError("address and cluster need executor='dask'")
    experiment = get_experiment(name)
    scale = get_scale(scale)
    start = time.perf_counter()
    summary = SweepSummary(name=name, scale=scale, executor=executor)

    pending: list[Job] = []
    for job, record in cached_jobs(name, scale):
        if record is None:
            pending.append(job)
        else:
            summary.outcomes.append(JobOutcome(job=job, record=record, from_cache=True))

    bar = tqdm(total=len(pending), disable=not progress or not pending, desc=name)
    if executor == "sequential":
        for job in pending:
            summary.outcomes.append(_execute(name, job, scale))
            bar.update()
    elif pending:
        from distributed import as_completed

        client, owned = _client(address, cluster, n_workers, cluster_options)
        try:
            futures = [client.submit(_execute, name, job, scale, pure=False) for job in pending]
            for future in as_completed(futures):
                try:
                    summary.outcomes.append(future.result())
                except Exception:  # noqa: BLE001 - a worker that died still leaves the others' results
                    index = futures.index(future)
                    summary.outcomes.append(JobOutcome(job=pending[index], error=traceback.format_exc()))
                bar.update()
        finally:
            client.close()
            if owned is not None:
                owned.close()
    bar.close()
    order = {job_key(experiment, job, scale): i for i, job in enumerate(experiment.jobs(scale))}
    summary.outcomes.sort(key=lambda o: order[job_key(experiment, o.job, scale)])
    summary.wall_seconds = time.perf_counter() - start
    return summary
