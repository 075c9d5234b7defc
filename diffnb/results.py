"""Committed results: small files that let a CPU-only build of the book show the papers' sizes.

``export`` turns an experiment's cached jobs into ``results/<experiment>/<scale>/<key>.npz`` (the arrays)
beside ``<key>.json`` (the job's configuration, package version, git commit, hardware and runtime);
``load`` reads them back. Notebooks at ``paper`` scale load these files when they are present and say so.
The folder is ``results/`` at the top of the repository, or ``$DIFFNB_RESULTS``.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from diffnb.config import get_scale
from diffnb.experiments import cached_jobs, get_experiment, job_key

ENV_VARIABLE = "DIFFNB_RESULTS"


def results_dir() -> Path:
    """``$DIFFNB_RESULTS`` when set, else ``results/`` next to the ``diffnb`` package (the repository top)."""
    env = os.environ.get(ENV_VARIABLE, "").strip()
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[1] / "results"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
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


def export(name: str, scale: str | None = None, folder: Path | str | None = None) -> list[Path]:
    """Write every cached job of experiment ``name`` at ``scale`` as ``.npz`` + ``.json``; returns the files.

    Jobs that have not run are skipped (run them first with ``python -m diffnb run``).
    """
    experiment = get_experiment(name)
    scale = get_scale(scale)
    target = (Path(folder) if folder is not None else results_dir()) / name / scale
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
