"""Experiments registry, sweeps (sequential and on a Dask LocalCluster), exported results and the CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from diffnb import cli, experiments, results
from diffnb.sweeps import run_sweep

NAME = "empirical-memorization"


@pytest.fixture
def small_jobs(monkeypatch):
    """Shrink the built-in experiment to two tiny jobs (kept when Dask pickles the experiment by name)."""
    base = {
        "part": "sphere",
        "seed": 1,
        "n_order": 3,
        "n_spectra": 2,
        "order_grid": [-3.0, 0.5, 4],
        "spec_grid": [-3.0, -0.3, 4],
        "n_population": 1_000,
        "delta": 0.05,
    }
    jobs = [{**base, "n_train": n} for n in (50, 400)]
    original = experiments.REGISTRY[NAME]
    monkeypatch.setitem(
        experiments.REGISTRY,
        NAME,
        experiments.Experiment(NAME, original.chapter, original.description, lambda scale: jobs, original.run),
    )
    return jobs


def _arrays(summary):
    return [o.record["result"] for o in summary.outcomes]


def test_sequential_sweep_caches_and_skips(tmp_path, monkeypatch, small_jobs):
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache"))
    first = run_sweep(NAME, "quick", progress=False)
    assert len(first.outcomes) == 2 and not first.failed
    assert not any(o.from_cache for o in first.outcomes)
    second = run_sweep(NAME, "quick", progress=False)
    assert all(o.from_cache for o in second.outcomes)
    for a, b in zip(_arrays(first), _arrays(second), strict=True):
        np.testing.assert_array_equal(a["fresh_spectrum"], b["fresh_spectrum"])
    assert "2 from the cache" in second.report()


def test_dask_local_cluster_matches_sequential(tmp_path, monkeypatch, small_jobs):
    pytest.importorskip("distributed")
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "sequential"))
    sequential = run_sweep(NAME, "quick", progress=False)
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "dask"))
    # threads, not processes: workers must see the shrunken job list patched into this process
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        dask = run_sweep(NAME, "quick", executor="dask", address=cluster.scheduler_address, progress=False)
    assert not dask.failed and dask.executor == "dask"
    for a, b in zip(_arrays(sequential), _arrays(dask), strict=True):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-12)
    assert Client  # imported above only to check availability


def test_failed_job_is_reported_and_others_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache"))

    def run(job):
        if job["x"] == 2:
            raise RuntimeError("job two breaks")
        return {"y": np.array([job["x"] ** 2])}

    jobs = [{"x": 1}, {"x": 2}, {"x": 3}]
    monkeypatch.setitem(experiments.REGISTRY, "toy", experiments.Experiment("toy", "0", "toy", lambda scale: jobs, run))
    summary = run_sweep("toy", "quick", progress=False)
    assert [o.ok for o in summary.outcomes] == [True, False, True]
    assert "job two breaks" in summary.failed[0].error and "{'x': 2}" in summary.report()
    rerun = run_sweep("toy", "quick", progress=False)
    assert [o.from_cache for o in rerun.outcomes] == [True, False, True]


def test_export_and_load_roundtrip(tmp_path, monkeypatch, small_jobs):
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache"))
    summary = run_sweep(NAME, "quick", progress=False)
    files = results.export(NAME, "quick", tmp_path / "results")
    assert len(files) == 4
    loaded = results.load(NAME, "quick", tmp_path / "results")
    assert [e["job"] for e in loaded] == sorted(small_jobs, key=lambda j: json.dumps(j, sort_keys=True))
    by_size = {o.job["n_train"]: o.record["result"] for o in summary.outcomes}
    for entry in loaded:
        expected = by_size[entry["job"]["n_train"]]
        np.testing.assert_array_equal(entry["result"]["fresh_spectrum"], expected["fresh_spectrum"])
        assert {"version", "commit", "hardware", "seconds"} <= set(entry["meta"])
    assert results.load(NAME, "full", tmp_path / "results") == []


def test_registry_errors():
    with pytest.raises(KeyError, match="known experiments"):
        experiments.get_experiment("nope")
    with pytest.raises(ValueError, match="already registered"):
        experiments.register(NAME, chapter="4", description="", jobs=lambda s: [])(lambda job: {})
    with pytest.raises(ValueError, match="executor"):
        run_sweep(NAME, "quick", executor="ray")


def test_cli_lists_experiments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert NAME in capsys.readouterr().out
    assert cli.main(["list"]) == 0
    assert NAME in capsys.readouterr().out


def test_cli_rejects_unknown_scale(capsys):
    assert cli.main(["cached", "--scale", "bogus"]) == 2
    assert "valid scales" in capsys.readouterr().err


def test_gather_reads_committed_results_and_computes_the_rest(tmp_path, monkeypatch, small_jobs):
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "results"
    fresh = results.gather(NAME, "quick")  # quick: no committed results, no cache
    assert fresh.sources == ["computed", "computed"] and fresh.folder is None
    assert not (tmp_path / "cache").exists()
    assert "2 jobs computed" in fresh.summary()

    run_sweep(NAME, "paper", progress=False)
    files = results.export(NAME, "paper", folder)
    small, large = sorted(small_jobs, key=lambda j: j["n_train"])
    # drop one job's files, and make another exported record stale (its job no longer matches)
    for path in files:
        meta = json.loads(path.read_text()) if path.suffix == ".json" else None
        if meta and meta["job"]["n_train"] == large["n_train"]:
            meta["job"]["n_order"] = 99
            path.write_text(json.dumps(meta))
    monkeypatch.setenv("DIFFNB_CACHE", "off")
    with pytest.warns(UserWarning, match="1 of 2 jobs at scale paper have no committed result of the"):
        got = results.gather(NAME, "paper", folder=folder)
    assert got.sources == ["committed", "computed"] and got.committed == 1
    assert got.folder == folder / NAME / "paper"
    text = got.summary()
    assert "loaded 1 of 2 jobs from the committed results" in text
    assert "commit" in text and "hardware" in text and "runtime" in text
    assert f"python -m diffnb run {NAME} --scale paper --export" in text
    np.testing.assert_array_equal(got.results[0]["fresh_order"], fresh.results[0]["fresh_order"])
    np.testing.assert_array_equal(got.results[1]["fresh_order"], fresh.results[1]["fresh_order"])
    assert [job["n_train"] for job, _ in got.select(part="sphere")] == [small["n_train"], large["n_train"]]
    assert got.select(part="probe") == []

    # committed=False ignores the folder; with the cache on, a second call reads the cache
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache2"))
    first = results.gather(NAME, "full", folder=folder)
    second = results.gather(NAME, "full", folder=folder)
    assert first.sources == ["computed", "computed"] and second.sources == ["cache", "cache"]
    assert "2 cached" in second.summary()


def test_gather_ignores_committed_results_of_an_older_experiment_version(tmp_path, monkeypatch, small_jobs):
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache"))
    folder, legacy = tmp_path / "results", tmp_path / "legacy"
    run_sweep(NAME, "paper", progress=False)
    files = results.export(NAME, "paper", folder)
    metas = [json.loads(path.read_text()) for path in files if path.suffix == ".json"]
    assert [meta["experiment_version"] for meta in metas] == [1, 1]
    shutil.copytree(folder, legacy)
    # the experiment's results change (version 2): the version 1 records must not be served
    original = experiments.REGISTRY[NAME]
    monkeypatch.setitem(
        experiments.REGISTRY,
        NAME,
        experiments.Experiment(NAME, original.chapter, original.description, original.make_jobs, original.run, 2),
    )
    monkeypatch.setenv("DIFFNB_CACHE", "off")
    with pytest.warns(
        UserWarning, match="2 of 2 jobs at scale paper have no committed result of the experiment's version 2"
    ):
        got = results.gather(NAME, "paper", folder=folder)
    assert got.sources == ["computed", "computed"] and got.committed == 0
    # exporting version 2 replaces the version 1 records
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache"))
    run_sweep(NAME, "paper", progress=False)
    results.export(NAME, "paper", folder)
    assert [entry["meta"]["experiment_version"] for entry in results.load(NAME, "paper", folder)] == [2, 2]
    assert not any(path.exists() for path in files)
    # a record exported before versions were recorded counts as version 1
    monkeypatch.setenv("DIFFNB_CACHE", "off")
    for path in (legacy / NAME / "paper").glob("*.json"):
        meta = json.loads(path.read_text())
        del meta["experiment_version"]
        path.write_text(json.dumps(meta))
    monkeypatch.setitem(experiments.REGISTRY, NAME, original)  # the fixture's version 1 experiment
    assert results.gather(NAME, "paper", folder=legacy).sources == ["committed", "committed"]


def test_experiments_are_registered_without_importing_their_modules():
    """A Dask worker imports only diffnb.experiments; every experiment must be found there."""
    import subprocess
    import sys

    code = (
        "import diffnb.experiments as e, sys; print(sorted(e.REGISTRY)); "
        "print([m in sys.modules for m in ('diffnb.image_protocol', 'diffnb.phase_networks')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "['empirical-memorization', 'images-memorization', 'phase-networks']"
    assert out[1] == "[False, False]"  # registration does not import the heavy modules


def test_experiment_version_enters_the_job_key_from_2_on():
    original = experiments.REGISTRY[NAME]
    job = {"n_train": 10}

    def versioned(version):
        return experiments.Experiment(
            NAME, original.chapter, original.description, original.make_jobs, original.run, version
        )

    key_1 = experiments.job_key(versioned(1), job, "quick")
    # version 1 keeps the keys of results computed before versions existed
    assert key_1 == experiments.cache.config_key(original.cache_kind, job, scale="quick")
    key_2 = experiments.job_key(versioned(2), job, "quick")
    assert key_2 != key_1 and key_2 != experiments.job_key(versioned(3), job, "quick")


def test_a_new_experiment_version_recomputes_cached_jobs(tmp_path, monkeypatch, small_jobs):
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache"))
    run_sweep(NAME, "full", progress=False)
    assert all(record is not None for _, record in experiments.cached_jobs(NAME, "full"))
    original = experiments.REGISTRY[NAME]
    monkeypatch.setitem(experiments.REGISTRY, NAME, dataclasses.replace(original, version=2))
    # the version 1 results stay on disk but are not served to version 2
    assert all(record is None for _, record in experiments.cached_jobs(NAME, "full"))
    summary = run_sweep(NAME, "full", progress=False)
    assert not any(outcome.from_cache for outcome in summary.outcomes)
    assert all(record is not None for _, record in experiments.cached_jobs(NAME, "full"))
    assert results.gather(NAME, "full").sources == ["cache", "cache"]
    monkeypatch.setitem(experiments.REGISTRY, NAME, original)
    assert run_sweep(NAME, "full", progress=False).outcomes[0].from_cache


@pytest.mark.parametrize("version", [0, -1, 1.5, True])
def test_register_rejects_a_bad_version(version):
    with pytest.raises(ValueError, match="version must be a positive integer"):
        experiments.register("some-test-name", chapter="x", description="x", jobs=lambda scale: [], version=version)
