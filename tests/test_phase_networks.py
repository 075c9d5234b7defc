"""Chapter 8's networks as an experiment: jobs, training sets, results that rebuild the networks, and the
committed paper-scale weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from diffnb import experiments, phase_networks, results
from diffnb.config import ScaleError, active_scale, get_scale
from diffnb.data import LinearManifold
from diffnb.experiments import get_experiment, run_job
from diffnb.nets import NetConfig
from diffnb.training import TrainConfig

REAL_JOBS = phase_networks.network_jobs  # before any test patches it
COMMITTED = Path(__file__).resolve().parents[1] / "results" / phase_networks.EXPERIMENT / "paper"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache"))
    return tmp_path


def tiny_jobs(scale: str | None = None) -> list[dict]:
    """The real jobs, shrunk to a few steps of a small network on few points."""
    jobs = []
    for job in REAL_JOBS(scale):
        net = {**job["net"], "width": 8, "depth": 1, "emb_dim": 4, "emb_hidden": 8}
        data = {**job["data"], "n_train": 40} if job["network"] == "linear" else job["data"]
        jobs.append({**job, "data": data, "net": net, "train": {**job["train"], "steps": 3, "batch_size": 8}})
    return jobs


@pytest.mark.parametrize("scale", ["quick", "full", "paper"])
def test_jobs_are_json_and_build_their_configs(scale):
    jobs = phase_networks.network_jobs(scale)
    assert [job["network"] for job in jobs] == list(phase_networks.NETWORKS)
    assert get_experiment(phase_networks.EXPERIMENT).jobs(scale) == jobs
    for job in jobs:
        assert json.loads(json.dumps(job)) == job  # committed results are matched by the job's JSON
        net, train = phase_networks.configs(job)
        assert isinstance(net, NetConfig) and isinstance(train, TrainConfig)
        assert net.d == (100 if job["network"] == "linear" else 64)
    assert jobs[0]["train"]["steps"] == {"quick": 1_500, "full": 8_000, "paper": 100_000}[scale]


def test_training_sets():
    linear, digits = phase_networks.network_jobs("full")
    expected = LinearManifold(100, (40,), (1.0,), seed=0).sample(5_000, seed=1)
    np.testing.assert_array_equal(phase_networks.training_set(linear), expected)
    np.testing.assert_array_equal(phase_networks.manifold(linear).F, LinearManifold(100, (40,), (1.0,), seed=0).F)
    images = phase_networks.training_set(digits)
    assert images.shape == (1497, 64) and images.dtype == np.float64
    np.testing.assert_allclose(images.mean(axis=0), 0.0, atol=1e-12)


def test_bad_jobs_are_named():
    with pytest.raises(ValueError, match="job must be one of network_jobs"):
        phase_networks.training_set({"network": "cifar"})
    with pytest.raises(ValueError, match="job must be one of network_jobs"):
        phase_networks.configs(["linear"])
    with pytest.raises(ValueError, match="not trained on a linear manifold"):
        phase_networks.manifold(phase_networks.network_jobs()[1])


def test_a_result_rebuilds_the_network(cache_dir):
    job = tiny_jobs("quick")[0]
    trained = phase_networks.train_network(job, progress=False)
    result = phase_networks.run_network_job(job)  # the same network, from the training cache
    assert result["n_train"] == 40 and result["losses"].shape == (3,)
    assert result["trained_seconds"] > 0  # the training time, not the loading time
    rebuilt = phase_networks.network_from_result(job, result)
    x = torch.randn(5, 100)
    torch.testing.assert_close(rebuilt.score(x, 0.3), trained.score(x, 0.3), rtol=0, atol=0)
    assert rebuilt.extra["trained_seconds"] == result["trained_seconds"] and rebuilt.raw_state == {}


def test_committed_networks_are_read_at_paper_scale_for_the_current_jobs(cache_dir, monkeypatch):
    monkeypatch.setattr(phase_networks, "network_jobs", tiny_jobs)
    name, folder = phase_networks.EXPERIMENT, cache_dir / "results"
    for job in tiny_jobs("paper"):
        run_job(name, job, "paper")
    assert len(results.export(name, "paper", folder)) == 4  # .npz and .json per network
    loaded = phase_networks.committed_networks("paper", folder)
    assert sorted(loaded) == sorted(phase_networks.NETWORKS)
    x = torch.randn(3, 100)
    again = phase_networks.train_network(tiny_jobs("paper")[0])  # from the cache: the network that was exported
    torch.testing.assert_close(loaded["linear"][0].score(x, 1.0), again.score(x, 1.0), rtol=0, atol=0)
    assert loaded["linear"][1]["scale"] == "paper"
    assert phase_networks.committed_networks("full", folder) == {}  # only at paper scale

    # a changed configuration is not served stale weights
    def one_more_point(scale=None):
        linear, digits = tiny_jobs(scale)
        return [{**linear, "data": {**linear["data"], "n_train": 41}}, digits]

    monkeypatch.setattr(phase_networks, "network_jobs", one_more_point)
    with pytest.warns(UserWarning, match="no current committed result for linear"):
        assert sorted(phase_networks.committed_networks("paper", folder)) == ["digits"]


def test_active_scale_sets_and_restores(monkeypatch):
    monkeypatch.delenv("DIFFNB_SCALE", raising=False)
    with active_scale("paper") as scale:
        assert scale == "paper" and get_scale() == "paper"
    assert "DIFFNB_SCALE" not in os.environ
    monkeypatch.setenv("DIFFNB_SCALE", "full")
    with pytest.raises(RuntimeError), active_scale("quick"):
        assert get_scale() == "quick"
        raise RuntimeError
    assert os.environ["DIFFNB_SCALE"] == "full"
    with pytest.raises(ScaleError, match="valid scales are"), active_scale("huge"):
        pass


def test_jobs_run_at_their_sweeps_scale(monkeypatch):
    monkeypatch.setenv("DIFFNB_SCALE", "quick")
    toy = experiments.Experiment("toy-scale", "0", "toy", lambda scale: [{}], lambda job: {"scale": get_scale()})
    monkeypatch.setitem(experiments.REGISTRY, "toy-scale", toy)
    assert run_job("toy-scale", {}, "full", use_cache=False)["result"]["scale"] == "full"
    assert get_scale() == "quick"


@pytest.mark.skipif(not COMMITTED.is_dir(), reason=f"no committed networks in {COMMITTED}")
def test_the_committed_paper_networks_are_current_and_load():
    name = phase_networks.EXPERIMENT
    entries = results.committed_entries(name, "paper")
    assert all(entry is not None for entry in entries), (
        f"a paper-scale job of {name} has no current committed result; "
        f"`python -m diffnb run {name} --scale paper --export` recomputes them"
    )
    loaded = phase_networks.committed_networks("paper")
    for job, entry in zip(phase_networks.network_jobs("paper"), entries, strict=True):
        trained, meta = loaded[job["network"]]
        assert meta["commit"] != "unknown" and not meta["commit"].endswith("+dirty")
        assert trained.extra["trained_seconds"] > 1_000 and len(trained.losses) == job["train"]["steps"]
        assert all(torch.isfinite(p).all() for p in trained.model.parameters())
        assert entry["result"]["n_train"] == len(phase_networks.training_set(job))
    # network weights, unlike chapter 4's spectra, are not small: two float32 networks of 0.72 M parameters
    size = sum(p.stat().st_size for p in COMMITTED.iterdir())
    assert size < 8 * 2**20, f"{COMMITTED} holds {size / 2**20:.1f} MB; keep it under 8 MB"
