"""Committed results: small files that let a CPU-only build of the book show the papers' sizes.

``export`` turns an experiment's cached jobs into ``results/<experiment>/<scale>/<key>.npz`` (the arrays)
beside ``<key>.json`` (the job's configuration, package version, git commit, hardware and runtime);
``load`` reads them back, and ``gather`` gives a notebook every job of an experiment: at ``paper`` scale
the committed files where present (and says so, with the commit, hardware and runtime recorded with them),
the rest computed.
The folder is ``results/`` at the top of the repository, or ``$DIFFNB_RESULTS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from diffnb.config import get_scale
from diffnb.experiments import cached_jobs, get_experiment, job_key, run_job

ENV_VARIABLE = "DIFFNB_RESULTS"


def results_dir() -> Path:
    """``$DIFFNB_RESULTS`` when set, else ``results/`` next to the ``diffnb`` package (the repository top)."""
    env = os.environ.get(ENV_VARIABLE, "").strip()
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[1] / "results"


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def _commit() -> str:
    """The short commit of the repository, with ``+dirty`` when the package has uncommitted changes."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        if not head:
            return "unknown"
        dirty = _git("status", "--porcelain", "--", str(Path(__file__).resolve().parent))
        return f"{head}+dirty" if dirty else head
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _flatten(result: dict[str, Any]) -> dict[str, np.ndarray]:
    arrays = {}
    for key, value in result.items():
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        if array.dtype == object:
            raise TypeError(f"result field {key!r} is not an array or a number; it cannot be exported")
        arrays[key] = array
    return arrays


def record_version(meta: dict[str, Any]) -> int:
    """The experiment version an exported record was computed with (records written before versions were
    recorded count as version 1)."""
    return int(meta.get("experiment_version", 1))


def export(name: str, scale: str | None = None, folder: Path | str | None = None) -> list[Path]:
    """Write every cached job of experiment ``name`` at ``scale`` as ``.npz`` + ``.json``; returns the files.

    Jobs that have not run are skipped (run them first with ``python -m diffnb run``). Records of another
    version of the experiment in the target folder are removed: they are superseded, and :func:`gather` would
    not use them.
    """
    experiment = get_experiment(name)
    scale = get_scale(scale)
    target = (Path(folder) if folder is not None else results_dir()) / name / scale
    for meta_file in sorted(target.glob("*.json")):
        if record_version(json.loads(meta_file.read_text())) != experiment.version:
            meta_file.unlink()
            meta_file.with_suffix(".npz").unlink(missing_ok=True)
    written = []
    commit = _commit()
    for job, record in cached_jobs(name, scale):
        if record is None:
            continue
        target.mkdir(parents=True, exist_ok=True)
        stem = target / job_key(experiment, job, scale)[:16]
        np.savez_compressed(stem.with_suffix(".npz"), **_flatten(record["result"]))
        meta = {
            "experiment": name,
            "chapter": experiment.chapter,
            "scale": scale,
            "job": job,
            "experiment_version": experiment.version,
            "version": record.get("version"),
            "commit": commit,
            "hardware": record.get("hardware"),
            "seconds": record.get("seconds"),
            "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        stem.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        written += [stem.with_suffix(".npz"), stem.with_suffix(".json")]
    return written


def load(name: str, scale: str | None = None, folder: Path | str | None = None) -> list[dict[str, Any]]:
    """The exported results of ``name`` at ``scale``: a list of ``{"job", "result", "meta"}``, sorted by job.

    Returns an empty list when nothing was exported.
    """
    get_experiment(name)
    source = (Path(folder) if folder is not None else results_dir()) / name / get_scale(scale)
    entries = []
    for meta_file in sorted(source.glob("*.json")):
        meta = json.loads(meta_file.read_text())
        with np.load(meta_file.with_suffix(".npz")) as arrays:
            result = {key: arrays[key] for key in arrays.files}
        entries.append({"job": meta["job"], "result": result, "meta": meta})
    return sorted(entries, key=lambda e: json.dumps(e["job"], sort_keys=True))


def _job_text(job: dict[str, Any]) -> str:
    return json.dumps(job, sort_keys=True)


def committed_entries(name: str, scale: str | None = None, folder: Path | str | None = None) -> list[dict | None]:
    """For every job of experiment ``name`` at ``scale``, in the experiment's order, its committed entry
    (as :func:`load` gives it) when one of the experiment's current version is committed for exactly that
    job, else ``None``."""
    experiment = get_experiment(name)
    scale = get_scale(scale)
    stored = {
        _job_text(entry["job"]): entry
        for entry in load(name, scale, folder)
        if record_version(entry["meta"]) == experiment.version
    }
    return [stored.get(_job_text(job)) for job in experiment.jobs(scale)]


@dataclass
class Gathered:
    """The results of every job of an experiment at one scale, with where each came from.

    Parameters
    ----------
    name, scale
        The experiment and the scale.
    jobs
        The job configurations, in the experiment's order.
    results
        One result (a dict of arrays) per job.
    sources
        Per job: ``"committed"`` (read from ``results/``), ``"cache"`` (read from :mod:`diffnb.cache`) or
        ``"computed"``.
    metas
        Per job: the JSON record of a committed result, else ``None``.
    folder
        Where committed results were looked for (a ``pathlib.Path``), or ``None`` when they were not.
    seconds
        Per job: the runtime of the run that computed it (from its record, or measured here).
    """

    name: str
    scale: str
    jobs: list[dict[str, Any]]
    results: list[dict[str, Any]]
    sources: list[str]
    metas: list[dict[str, Any] | None]
    folder: Any  # a pathlib.Path, or None (kept untyped for the offline API reference)
    seconds: list[float]

    def select(self, **match: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """``(job, result)`` pairs of the jobs whose configuration has all the given ``key=value`` items."""
        return [
            (job, result)
            for job, result in zip(self.jobs, self.results, strict=True)
            if all(job.get(k) == v for k, v in match.items())
        ]

    @property
    def committed(self) -> int:
        """How many jobs were read from the committed results."""
        return self.sources.count("committed")

    def summary(self) -> str:
        """Where the results came from, in a few lines (for a notebook's output).

        For committed results: the folder, and the package version, git commit, hardware, export date and
        runtime recorded with them.
        """
        n = len(self.jobs)
        lines = []
        if self.committed:
            metas = [m for m in self.metas if m is not None]

            def values(key: str) -> str:
                return ", ".join(sorted({str(m.get(key)) for m in metas}))

            seconds = [float(m.get("seconds") or 0.0) for m in metas]
            lines.append(f"{self.name} at scale {self.scale}:")
            lines.append(f"  loaded {self.committed} of {n} jobs from the committed results in")
            lines.append(f"  {self.folder}")
            recorded = f"diffnb {values('version')}, commit {values('commit')}, exported {values('exported')[:10]}"
            lines.append(f"  recorded with {recorded}")
            lines.append(f"  hardware: {values('hardware')}")
            lines.append(f"  runtime: {sum(seconds):.0f} s in all, longest job {max(seconds):.0f} s")
        elif self.folder is not None:
            lines.append(f"{self.name} at scale {self.scale}: no committed results in")
            lines.append(f"  {self.folder}")
        else:
            lines.append(f"{self.name} at scale {self.scale}")
            lines.append("  (committed results are read at paper scale only):")
        rest = n - self.committed
        if rest:
            cached = self.sources.count("cache")
            spent = sum(s for s, src in zip(self.seconds, self.sources, strict=True) if src != "committed")
            how = "computed" if not cached else f"computed or read from the cache ({cached} cached)"
            lines.append(f"  {rest} jobs {how}, {spent:.0f} s of compute")
            if self.folder is not None:
                lines.append("  to precompute them:")
                lines.append(f"    python -m diffnb run {self.name} --scale {self.scale} --export")
        return "\n".join(lines)


def gather(
    name: str,
    scale: str | None = None,
    *,
    committed: bool | None = None,
    cache: bool | None = None,
    folder: Path | str | None = None,
) -> Gathered:
    """Every job of experiment ``name`` at ``scale``: committed results where present, the rest computed.

    This is how a notebook gets its heavy numbers. At ``paper`` scale (or with ``committed=True``) it first
    reads the exported results under ``results/<name>/<scale>/`` (:func:`load`) and uses those whose job
    configuration equals one of the experiment's jobs and whose experiment version is the current one
    (records exported before versions were recorded count as version 1); jobs without such a result are
    computed in this process (with a warning that says so first), through the on-disk cache unless ``cache``
    is false.

    Parameters
    ----------
    name
        A registered experiment.
    scale
        The scale (default: ``DIFFNB_SCALE``).
    committed
        Use committed results; default: only at ``paper`` scale.
    cache
        Compute through :mod:`diffnb.cache` (a rerun reads the results back); default: at every scale but
        ``quick``, where jobs are cheap and always computed afresh.
    folder
        Where committed results live (default :func:`results_dir`).

    Returns
    -------
    Gathered
        Results in the experiment's job order; :meth:`Gathered.summary` says where they came from.
    """
    experiment = get_experiment(name)
    scale = get_scale(scale)
    jobs = experiment.jobs(scale)
    committed = scale == "paper" if committed is None else committed
    cache = scale != "quick" if cache is None else cache
    root = Path(folder) if folder is not None else results_dir()
    stored = committed_entries(name, scale, root) if committed else [None] * len(jobs)
    out = Gathered(name, scale, [], [], [], [], root / name / scale if committed else None, [])
    missing = stored.count(None)
    if committed and missing:
        warnings.warn(
            f"{name}: {missing} of {len(jobs)} jobs at scale {scale} have no committed result of the experiment's "
            f"version {experiment.version} in {out.folder}; "
            f"computing them here (`python -m diffnb run {name} --scale {scale} --export` precomputes them)",
            stacklevel=2,
        )
    for job, entry in zip(jobs, stored, strict=True):
        if entry is not None:
            result, source, meta, seconds = entry["result"], "committed", entry["meta"], entry["meta"].get("seconds")
        else:
            record = experiment.lookup(job, scale) if cache else None
            source = "computed" if record is None else "cache"
            record = record if record is not None else run_job(name, job, scale, use_cache=cache)
            result, meta, seconds = record["result"], None, record["seconds"]
        out.jobs.append(job)
        out.results.append(result)
        out.sources.append(source)
        out.metas.append(meta)
        out.seconds.append(float(seconds or 0.0))
    return out
