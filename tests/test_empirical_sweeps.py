"""Chapter 4's experiment: the job functions of diffnb.empirical_sweeps and their job lists per scale."""

from __future__ import annotations

import numpy as np
import pytest

from diffnb import empirical_sweeps as es
from diffnb.experiments import PAPER_SIZES, get_experiment
from diffnb.posterior import official_probe_spectrum, sweep
from diffnb.spectra import dimension_over_time

NAME = "empirical-memorization"

SPHERE_JOB = {
    "part": "sphere",
    "seed": 0,
    "n_train": 60,
    "n_order": 5,
    "n_spectra": 3,
    "order_grid": [-3.0, 0.5, 6],
    "spec_grid": [-3.0, -0.3, 4],
    "n_population": 2_000,
    "delta": 0.05,
}

REFERENCE_JOB = {
    "part": "reference",
    "seed": 0,
    "n_train": 500,
    "n_points": 4,
    "order_grid": [-4.0, 1.5, 12],
    "t_range": [3e-3, 3.0],
    "n_population": 2_000,
}


def test_sphere_sweep_is_the_chapters_computation():
    """The job equals the chapter's former inline sweep: the same set, grids, test points and medians."""
    out = es.sphere_sweep(SPHERE_JOB)
    rng = es.job_rng(SPHERE_JOB)
    times, spec_times = np.logspace(-3, 0.5, 6), np.logspace(-3, -0.3, 4)
    variances = es.sphere_variances(2_000)
    data = es.SPHERE.sample(60, seed=rng)
    for kind in es.KINDS:
        base = data[rng.choice(60, 5, replace=False)] if kind == "train" else es.SPHERE.sample(5, seed=rng)
        noise = rng.standard_normal((5, 30))
        stats = sweep(data, base, noise, times, variances=variances, blocks=es.SPHERE_BLOCKS, spectra=False)
        spectra = sweep(data, base[:3], noise[:3], spec_times, order=False)["spectra"]
        np.testing.assert_allclose(out[f"{kind}_order"], np.median(stats["order"], axis=1))
        np.testing.assert_allclose(out[f"{kind}_participation"], np.median(stats["participation"], axis=1))
        np.testing.assert_allclose(out[f"{kind}_spectrum"], np.median(spectra, axis=1))
        dims = dimension_over_time(spectra, "threshold", delta=0.05)
        np.testing.assert_allclose(out[f"{kind}_dimension"], np.median(dims, axis=1))
    np.testing.assert_allclose(out["order_times"], times)
    np.testing.assert_allclose(out["spec_times"], spec_times)
    assert out["train_spectrum"].shape == (4, 30) and out["fresh_order"].shape == (6, 2)


def test_jobs_are_reproducible_and_independent():
    a = es.run(SPHERE_JOB)
    es.run({**SPHERE_JOB, "n_train": 30})  # another job in between changes nothing
    b = es.run(dict(SPHERE_JOB))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other = es.run({**SPHERE_JOB, "seed": 1})
    assert not np.array_equal(a["fresh_order"], other["fresh_order"])


def test_sphere_variances_after_projection():
    v = es.sphere_variances(50_000)
    assert v.shape == (30,)
    assert np.all(v[:2] == v[0]) and np.all(v[2:7] == v[2]) and np.all(v[7:] == v[7])
    assert 0.3 < v[0] < 0.4 and 0.045 < v[2] < 0.07 and v[7] < 2e-4  # the digest's 0.36 / 0.057 / 1e-4


def test_reference_probe_and_embedded_parts():
    ref = es.run(REFERENCE_JOB)
    assert np.all((ref["times"] > 3e-3) & (ref["times"] < 3.0))
    assert ref["order"].shape == (ref["times"].size, 2) and ref["participation"].shape == ref["times"].shape

    probe_job = {"part": "probe", "seed": 0, "n_train": 40, "grid": [1.0, 0.01, 3]}
    probe = es.run(probe_job)
    np.testing.assert_allclose(probe["times"], [1.0, 0.505, 0.01])
    data = es.SPHERE.sample(40, seed=es.job_rng(probe_job))
    np.testing.assert_allclose(probe["spectra"][1], official_probe_spectrum(np.zeros(30), data, 0.505)[0])

    job = {"part": "embedded", "seed": 0, "n_train": 80, "n_points": 4, "n_spectra": 2, "grid": [-1.0, 0.5, 3]}
    emb = es.run(job)
    assert emb["train_order"].shape == (3, 2) and emb["fresh_spectrum"].shape == (3, 100)
    assert "fresh_spectrum" not in es.run({**job, "n_spectra": 0})
    _, eigvals, eigvecs = es.embedded_set()
    assert np.all(np.diff(eigvals) <= 0) and eigvals.min() >= 1e-8
    np.testing.assert_allclose(eigvecs.T @ eigvecs, np.eye(100), atol=1e-10)


def test_unknown_part_is_rejected():
    with pytest.raises(ValueError, match="part must be one of"):
        es.run({"part": "nope", "seed": 0, "n_train": 1})


def test_job_lists_per_scale():
    experiment = get_experiment(NAME)
    paper = experiment.jobs("paper")
    sphere = [j for j in paper if j["part"] == "sphere"]
    assert [j["n_train"] for j in sphere] == PAPER_SIZES == [10, 50, 100, 250, 500, 1000, 2500, 5000, 20000]
    assert all(j["spec_grid"][2] == 100 for j in sphere)  # the paper's number of noise levels
    probes = [j for j in paper if j["part"] == "probe"]
    assert probes and all(j["grid"] == [1.0, 0.01, 100] for j in probes)  # the paper's grid
    assert 1000 in [j["n_train"] for j in probes]  # the paper's size for its empirical-score panel
    for scale in ("quick", "full", "paper"):
        jobs = experiment.jobs(scale)
        assert {j["part"] for j in jobs} == set(es.PARTS)
        assert len({str(sorted(j.items())) for j in jobs}) == len(jobs)  # no duplicate jobs
        assert sum(j["part"] == "reference" for j in jobs) == 1
        assert any(j["part"] == "embedded" and j["n_spectra"] > 0 for j in jobs)


def test_normalised_range_floor_per_scale():
    # quick: 5e-4, so that its coarse order grid has levels below the fresh crossing at P = 20 000 (as low as
    # 1.05e-3 over eight seeds); full and paper keep 1e-3, the committed paper results' range
    experiment = get_experiment(NAME)
    for scale, floor in (("quick", 5e-4), ("full", 1e-3), ("paper", 1e-3)):
        sphere = [j for j in experiment.jobs(scale) if j["part"] == "sphere"]
        assert sphere and all(j["normalised_range"] == [floor, 3.0] for j in sphere), scale
    quick = next(j for j in experiment.jobs("quick") if j["part"] == "sphere")
    times = es.log_grid(quick["order_grid"])
    assert np.sum((times >= 5e-4) & (times < 1e-3)) == 2  # 5.7e-4 and 8.9e-4


def test_sphere_variances_are_computed_once_and_callers_get_their_own_copy():
    first = es.sphere_variances(20_000, seed=3)
    first[:] = -1.0  # a caller's change must not reach the next job
    second = es.sphere_variances(20_000, seed=3)
    assert np.all(second > 0)
    np.testing.assert_array_equal(second, es.sphere_variances(20_000, seed=3))
    assert not np.array_equal(second, es.sphere_variances(20_000, seed=4))


def test_population_reference_and_the_reference_jobs_points():
    v = es.sphere_variances(20_000)
    times = [1e-3, 0.03, 0.3]
    ref = es.sphere_population_reference(times, v, n_points=8, n_steps=300, seed=1)
    assert ref["order"].shape == (3, 2) and np.all(ref["order"] > 0)
    again = es.sphere_population_reference(times, v, n_points=8, n_steps=300, seed=1)
    np.testing.assert_array_equal(ref["order"], again["order"])  # seeded
    # the reference job's own test points: the large-P sweep at them is the job's result
    job = {**REFERENCE_JOB, "order_grid": [-2.0, 0.0, 3], "t_range": [1e-3, 3.0], "n_population": 20_000}
    base, noise = es.reference_points(job)
    data = es.SPHERE.sample(500, seed=es.job_rng(job))
    res = sweep(data, base, noise, [0.01, 0.1, 1.0], variances=v, blocks=es.SPHERE_BLOCKS, spectra=False)
    np.testing.assert_allclose(np.median(res["order"], axis=1), es.run(job)["order"])
    at_points = es.sphere_population_reference([0.1], v, base=base, noise=noise, n_steps=200)
    assert at_points["order"].shape == (1, 2)
    with pytest.raises(ValueError, match="reference job"):
        es.reference_points(SPHERE_JOB)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variances": np.zeros(30)}, "variances must be 30 positive"),
        ({"variances": np.ones(29)}, "variances must be 30 positive"),
        ({"base": np.ones((2, 30)) / np.sqrt(30)}, "base and noise must be given together"),
        ({"base": np.ones((2, 30)) / np.sqrt(30), "noise": np.zeros((3, 30))}, "must both have shape"),
        ({"base": np.full((2, 30), np.nan), "noise": np.zeros((2, 30))}, "must be finite"),
        ({"times": [0.1, -1.0]}, "times must be"),
    ],
)
def test_population_reference_bad_input(kwargs, match):
    args = {"times": [0.1], "variances": np.ones(30), **kwargs}
    with pytest.raises(ValueError, match=match):
        es.sphere_population_reference(args.pop("times"), args.pop("variances"), n_steps=60, **args)


def test_normalised_order_is_one_for_a_huge_training_set_and_small_when_memorizing():
    """Per-point ratio empirical / population posterior: about 1 at P = 50 000 (measured 0.982 to 1.020 over
    4 seeds of 24 points at t = 0.05, 0.2, 0.6, chains of 2000 steps; 0.986 to 1.033 at P = 100 000), and
    near 0 for a small training set at small noise (its posterior sits on one training point)."""
    v = es.sphere_variances(20_000)
    times = [0.05, 0.2, 0.6]
    rng = np.random.default_rng([7, 0])
    data = es.SPHERE.sample(50_000, seed=rng)
    base, noise = es.SPHERE.sample(24, seed=rng), rng.standard_normal((24, 30))
    order = sweep(data, base, noise, times, variances=v, blocks=es.SPHERE_BLOCKS, spectra=False)["order"]
    out = es.normalised_sphere_order(order, base, noise, times, v, n_steps=2000, seed=0)
    np.testing.assert_allclose(out["normalised"], 1.0, atol=0.06)
    assert 0.4 < out["population"][0, 0] < 0.85  # the ring at small noise: below 1 (measured 0.69)
    np.testing.assert_array_equal(out["times"], times)
    small = sweep(data[:100], base, noise, [0.003], variances=v, blocks=es.SPHERE_BLOCKS, spectra=False)["order"]
    frozen = es.normalised_sphere_order(small, base, noise, [0.003], v, n_steps=300, seed=0)["normalised"]
    assert np.all(frozen < 0.1)


def test_normalised_order_shapes_range_and_seed():
    v = es.sphere_variances(20_000)
    times = np.logspace(-3, 0.5, 5)
    rng = np.random.default_rng(3)
    base, noise = es.SPHERE.sample(6, seed=rng), rng.standard_normal((6, 30))
    order = rng.uniform(0.2, 1.0, (5, 6, 2))
    out = es.normalised_sphere_order(order, base, noise, times, v, t_range=[1e-2, 1.0], n_steps=100, seed=1)
    assert out["normalised"].shape == out["population"].shape == (5, 2)
    inside = (times >= 1e-2) & (times <= 1.0)
    assert np.all(np.isnan(out["normalised"][~inside])) and np.all(np.isnan(out["population"][~inside]))
    assert np.all(np.isfinite(out["normalised"][inside])) and np.all(out["population"][inside] > 0)
    again = es.normalised_sphere_order(order, base, noise, times, v, t_range=[1e-2, 1.0], n_steps=100, seed=1)
    np.testing.assert_array_equal(out["normalised"], again["normalised"])  # seeded
    # twice the measured order parameter: twice the ratio, point by point
    double = es.normalised_sphere_order(2 * order, base, noise, times, v, t_range=[1e-2, 1.0], n_steps=100, seed=1)
    np.testing.assert_allclose(double["normalised"][inside], 2 * out["normalised"][inside])
    none = es.normalised_sphere_order(order, base, noise, times, v, t_range=[10.0, 20.0], n_steps=100)
    assert np.all(np.isnan(none["normalised"]))


def test_sphere_sweep_normalised_outputs_leave_the_others_unchanged():
    """The new outputs draw from their own generator: every old output is the same number, and the new ones
    are normalised_sphere_order at the job's first n_normalised points with the documented generator."""
    job = {**SPHERE_JOB, "n_normalised": 4, "normalised_range": [1e-2, 1.0], "reference_steps": 100}
    old, new = es.sphere_sweep(SPHERE_JOB), es.sphere_sweep(job)
    assert set(new) - set(old) == {f"{k}_order_{w}" for k in es.KINDS for w in ("normalised", "population")}
    for key in old:
        np.testing.assert_array_equal(old[key], new[key])
    times = old["order_times"]
    inside = (times >= 1e-2) & (times <= 1.0)
    rng = es.job_rng(job)
    data = es.SPHERE.sample(60, seed=rng)
    chains = np.random.default_rng([0, len(es.PARTS) + 1, 60])
    for kind in es.KINDS:
        base = es._test_points(kind, data, 5, es.SPHERE, rng)
        noise = rng.standard_normal((5, 30))
        order = sweep(data, base, noise, times, variances=new["variances"], blocks=es.SPHERE_BLOCKS, spectra=False)
        expected = es.normalised_sphere_order(
            order["order"][:, :4],
            base[:4],
            noise[:4],
            times,
            new["variances"],
            t_range=[1e-2, 1.0],
            n_steps=100,
            seed=chains,
        )
        np.testing.assert_array_equal(new[f"{kind}_order_normalised"], expected["normalised"])
        assert new[f"{kind}_order_normalised"].shape == (6, 2)
        assert np.all(np.isnan(new[f"{kind}_order_normalised"][~inside]))
    with pytest.raises(ValueError, match="n_normalised must lie"):
        es.sphere_sweep({**job, "n_normalised": 6})
    # without a normalised_range every level is computed
    every = es.sphere_sweep({k: v for k, v in job.items() if k != "normalised_range"})
    for kind in es.KINDS:
        assert np.all(np.isfinite(every[f"{kind}_order_normalised"]))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"order": np.ones((2, 3, 2))}, "order must have shape"),
        ({"order": -np.ones((1, 3, 2))}, "finite, non-negative"),
        ({"noise": np.zeros((2, 30))}, "must both have shape"),
        ({"base": np.full((3, 30), np.nan)}, "must be finite"),
        ({"variances": np.ones(7)}, "variances must be 30 positive"),
        ({"times": [0.0]}, "times must be"),
        ({"t_range": [1.0, 0.1]}, "t_range must be"),
        ({"t_range": [0.1]}, "t_range must be"),
        ({"n_steps": 10}, "n_steps must be"),
    ],
)
def test_normalised_order_bad_input(change, match):
    args = {
        "order": np.ones((1, 3, 2)),
        "base": np.ones((3, 30)) / np.sqrt(30),
        "noise": np.zeros((3, 30)),
        "times": [0.1],
        "variances": np.ones(30),
        **change,
    }
    kwargs = {k: args.pop(k) for k in ("t_range", "n_steps") if k in args}
    with pytest.raises(ValueError, match=match):
        es.normalised_sphere_order(*args.values(), **kwargs)
