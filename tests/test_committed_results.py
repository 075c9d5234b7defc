"""The committed paper-scale results under results/: complete, current, well-formed and small.

Chapter 4 at ``DIFFNB_SCALE=paper`` reads these files instead of computing (:func:`diffnb.results.gather`);
if the experiment's paper-scale jobs change, these tests fail until the results are recomputed with
``python -m diffnb run empirical-memorization --scale paper --export``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffnb import results
from diffnb.experiments import get_experiment

ROOT = Path(__file__).resolve().parents[1] / "results"
NAME = "empirical-memorization"
FOLDER = ROOT / NAME / "paper"

pytestmark = pytest.mark.skipif(
    not FOLDER.is_dir(),
    reason=f"no committed results in {FOLDER}; `python -m diffnb run {NAME} --scale paper --export` writes them",
)


def _text(job: dict) -> str:
    return json.dumps(job, sort_keys=True)


@pytest.fixture(scope="module")
def loaded():
    return results.load(NAME, "paper", ROOT)


def test_every_paper_job_is_committed_and_current(loaded):
    jobs = get_experiment(NAME).jobs("paper")
    assert sorted(_text(e["job"]) for e in loaded) == sorted(_text(j) for j in jobs), (
        "the committed results do not match the experiment's paper-scale jobs; recompute them"
    )
    version = get_experiment(NAME).version
    assert all(results.record_version(e["meta"]) == version for e in loaded), (
        f"some committed results predate version {version} of the experiment; recompute them"
    )


def test_records_say_where_and_how(loaded):
    for entry in loaded:
        meta = entry["meta"]
        assert {"version", "commit", "hardware", "seconds", "exported", "job"} <= set(meta)
        assert meta["experiment"] == NAME and meta["scale"] == "paper" and meta["chapter"] == "4"
        assert meta["seconds"] > 0 and meta["commit"] != "unknown"


def _expected_shapes(job: dict) -> dict[str, tuple[int, ...]]:
    part = job["part"]
    if part == "sphere":
        n_o, n_s = job["order_grid"][2], job["spec_grid"][2]
        shapes = {"order_times": (n_o,), "spec_times": (n_s,), "variances": (30,)}
        for kind in ("train", "fresh"):
            shapes |= {
                f"{kind}_order": (n_o, 2),
                f"{kind}_participation": (n_o,),
                f"{kind}_spectrum": (n_s, 30),
                f"{kind}_dimension": (n_s,),
            }
            if job.get("n_normalised", 0):
                shapes |= {f"{kind}_order_normalised": (n_o, 2), f"{kind}_order_population": (n_o, 2)}
        return shapes
    if part == "probe":
        return {"times": (job["grid"][2],), "spectra": (job["grid"][2], 30)}
    if part == "embedded":
        n = job["grid"][2]
        shapes = {"times": (n,), "train_order": (n, 2), "fresh_order": (n, 2)}
        return shapes | ({"fresh_spectrum": (n, 100)} if job["n_spectra"] else {})
    assert part == "reference", part
    return {}


def test_arrays_have_the_expected_keys_and_shapes(loaded):
    for entry in loaded:
        job, result = entry["job"], entry["result"]
        normalised = {k for k in result if k.endswith(("_order_normalised", "_order_population"))}
        assert all(np.all(np.isfinite(v)) for k, v in result.items() if k not in normalised), job
        if normalised:
            # finite exactly on the levels inside normalised_range (the generalising value positive, the ratio
            # non-negative: 0 where memorization has frozen a block), NaN elsewhere
            lo, hi = job["normalised_range"]
            times = result["order_times"]
            inside = (times >= lo) & (times <= hi)
            for key in normalised:
                values = result[key][inside]
                assert np.all(np.isfinite(values)) and np.all(values > 0 if "population" in key else values >= 0)
                assert np.all(np.isnan(result[key][~inside])), (key, job)
        if job["part"] == "reference":
            n = result["times"].shape[0]
            assert set(result) == {"times", "order", "participation"} and n > 0
            assert result["order"].shape == (n, 2) and result["participation"].shape == (n,)
            continue
        shapes = {key: value.shape for key, value in result.items()}
        assert shapes == _expected_shapes(job), job
        if job["part"] == "sphere":
            # spectra ascending in [0, 1]; dimensions within [0, 30]
            for kind in ("train", "fresh"):
                spectrum = result[f"{kind}_spectrum"]
                assert np.all(np.diff(spectrum, axis=-1) >= 0) and spectrum.min() >= 0 and spectrum.max() <= 1
                assert np.all((result[f"{kind}_dimension"] >= 0) & (result[f"{kind}_dimension"] <= 30))


def test_results_are_small():
    size = sum(p.stat().st_size for p in FOLDER.iterdir())
    assert size < 5 * 2**20, f"{FOLDER} holds {size / 2**20:.1f} MB; keep committed results under 5 MB"
