"""Tests of the phase classifier of diffnb.spectra on exact spectra whose boundaries are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffnb.data.linear import LinearManifold
from diffnb.scores import linear_score_jacobian
from diffnb.spectra import (
    PHASES,
    classify_phases,
    normal_bulk_width,
    phase_labels,
    phase_sequence,
)
from diffnb.theory.spectral import phase_boundaries

TIMES = np.geomspace(1e-4, 1e3, 71)


def exact_eigenvalues(variances, times=TIMES):
    """Eigenvalues of t J for the exact score of a Gaussian with these covariance eigenvalues, (n_times, d)."""
    lam = np.asarray(variances, dtype=float)
    t = np.asarray(times, dtype=float)[:, None]
    return -t / (lam + t)


def covariance_eigenvalues(manifold):
    return np.clip(np.linalg.eigvalsh(manifold.covariance), 0.0, None)


@pytest.mark.parametrize("delta", [0.05, 0.1, 0.3])
def test_exact_linear_score_matches_phase_boundaries_of_its_own_edges(delta):
    manifold = LinearManifold(d=60, block_dims=(24,), scales=(1.0,), seed=3)
    lam = covariance_eigenvalues(manifold)
    res = classify_phases(TIMES, exact_eigenvalues(lam), delta, n_tangent=manifold.m)
    top, bottom = lam.max(), np.sort(lam)[-manifold.m]
    # phase_boundaries' formulas with the finite matrix's extreme eigenvalues: exact up to rounding
    assert res.t_trivial == pytest.approx(top * (1 - delta) / delta, rel=1e-9)
    assert res.t_consolidation == pytest.approx(bottom * delta / (1 - delta), rel=1e-9)
    assert res.normal_width < 1e-9  # eigvalsh rounding of the zero eigenvalues
    assert res.n_tangent == manifold.m


def test_exact_linear_score_agrees_with_the_theory_at_large_d():
    d, delta = 1500, 0.1
    manifold = LinearManifold(d=d, block_dims=(600,), scales=(1.0,), seed=0)
    lam = np.linalg.eigvalsh(manifold.F.T @ manifold.F)  # the m non-zero eigenvalues
    spectra = exact_eigenvalues(np.concatenate([np.zeros(d - manifold.m), lam]))
    res = classify_phases(TIMES, spectra, delta, n_tangent=manifold.m)
    t_trivial, t_consolidation = phase_boundaries(manifold.alphas, manifold.sigma2s, delta)
    assert res.t_trivial == pytest.approx(t_trivial, rel=0.03)
    assert res.t_consolidation == pytest.approx(t_consolidation, rel=0.1)


def test_two_blocks_labels_agree_with_theory_labels():
    delta = 0.1
    manifold = LinearManifold(d=1000, block_dims=(200, 200), scales=(1.0, 0.3), seed=1)
    lam = np.concatenate([np.zeros(600), np.linalg.eigvalsh(manifold.F.T @ manifold.F)])
    res = classify_phases(TIMES, exact_eigenvalues(lam), delta, n_tangent=400)
    t_trivial, t_consolidation = phase_boundaries(manifold.alphas, manifold.sigma2s, delta)
    theory = phase_labels(TIMES, t_trivial, t_consolidation)
    # the grid points where the labels differ lie next to a boundary (finite-d edges)
    differ = TIMES[res.labels != theory]
    near = np.minimum(np.abs(np.log(differ / t_trivial)), np.abs(np.log(differ / t_consolidation)))
    assert np.all(near < np.log(1.5))
    assert set(np.unique(res.labels)) == {"trivial", "coverage", "consolidation"}


def test_labels_are_ordered_and_use_phase_names():
    lam = np.array([0.0, 0.0, 0.0, 0.2, 1.0, 3.0])
    res = classify_phases(TIMES, exact_eigenvalues(lam), 0.1, n_tangent=3)
    assert set(res.labels) <= set(PHASES)
    order = {"consolidation": 0, "coverage": 1, "trivial": 2}
    codes = np.array([order[label] for label in res.labels])
    assert np.all(np.diff(codes) >= 0)  # times ascending: consolidation, coverage, trivial
    assert res.fractions()["coverage"] > 0
    assert sum(res.fractions().values()) == pytest.approx(1.0)


def test_closed_form_jacobian_gives_the_same_labels():
    manifold = LinearManifold(d=30, block_dims=(10,), scales=(1.0,), seed=2)
    times = np.geomspace(1e-3, 1e2, 11)
    eig = np.stack([np.linalg.eigvalsh(t * linear_score_jacobian(manifold.F, t)) for t in times])
    res = classify_phases(times, eig, 0.2, n_tangent=10)
    ref = classify_phases(times, exact_eigenvalues(covariance_eigenvalues(manifold), times), 0.2, n_tangent=10)
    np.testing.assert_array_equal(res.labels, ref.labels)
    assert res.t_trivial == pytest.approx(ref.t_trivial, rel=1e-6)


def test_times_in_any_order():
    lam = np.array([0.0, 0.0, 0.5, 2.0])
    perm = np.random.default_rng(0).permutation(TIMES.size)
    res = classify_phases(TIMES[perm], exact_eigenvalues(lam)[perm], 0.1, n_tangent=2)
    ref = classify_phases(TIMES, exact_eigenvalues(lam), 0.1, n_tangent=2)
    np.testing.assert_array_equal(res.labels, ref.labels[perm])
    assert res.t_trivial == pytest.approx(ref.t_trivial)


def test_singular_convention_with_a_normal_bulk():
    """A network-like spectrum: normal values spread below 1, arbitrary overall scale."""
    rng = np.random.default_rng(0)
    lam = np.array([0.3, 0.8, 1.5, 2.5])
    d, width = 20, 0.15
    tangent = TIMES[:, None] / (lam + TIMES[:, None])
    normal = 1.0 - width * rng.uniform(size=(TIMES.size, d - lam.size))
    normal[:, 0] = 1.0
    sv = 7.0 * np.concatenate([tangent, normal], axis=1)
    widths = normal_bulk_width(sv, lam.size)
    # at the smallest t the tangent values are far below the bulk: the width is read exactly
    assert widths[0] == pytest.approx(1 - normal[0].min(), rel=1e-12)
    assert widths.max() <= width
    res = classify_phases(TIMES, sv, 0.2, convention="singular", n_tangent=lam.size)
    assert res.normal_width <= width
    assert res.t_trivial == pytest.approx(2.5 * 0.8 / 0.2, rel=1e-6)
    assert res.t_consolidation == pytest.approx(0.3 * 0.2 / 0.8, rel=1e-6)
    with pytest.raises(ValueError, match="width of the normal bulk"):
        classify_phases(TIMES, sv, 0.1, convention="singular", n_tangent=lam.size)


def test_estimated_number_of_tangent_directions():
    lam = np.r_[np.zeros(12), np.linspace(0.5, 2.0, 8)]
    res = classify_phases(TIMES, exact_eigenvalues(lam), 0.1)
    assert res.n_tangent == 8


def test_batch_axes():
    lam_a = np.r_[np.zeros(5), [0.5, 1.0]]
    lam_b = np.r_[np.zeros(5), [0.1, 4.0]]
    spectra = np.stack([exact_eigenvalues(lam_a), exact_eigenvalues(lam_b)])
    res = classify_phases(TIMES, spectra, 0.1, n_tangent=2)
    assert res.labels.shape == (2, TIMES.size)
    assert res.t_trivial.shape == (2,)
    np.testing.assert_allclose(res.t_trivial, [1.0 * 9, 4.0 * 9], rtol=1e-9)
    np.testing.assert_allclose(res.t_consolidation, [0.5 / 9, 0.1 / 9], rtol=1e-9)
    single = classify_phases(TIMES, spectra[1], 0.1, n_tangent=2)
    np.testing.assert_array_equal(single.labels, res.labels[1])


def test_memorising_score_collapses_and_never_consolidates():
    """Tangent values leave -1 and come back at small t, as for the empirical score of few points."""
    t = TIMES[:, None]
    lam = np.array([0.5, 1.0])
    eig = -t / (lam + t)
    eig = np.where(t < 0.2, -1.0, eig)  # frozen: back to the normal end
    spectra = np.concatenate([-np.ones((TIMES.size, 3)), eig], axis=1)
    res = classify_phases(TIMES, spectra, 0.1, n_tangent=2)
    assert np.isnan(res.t_consolidation)
    assert res.t_trivial == pytest.approx(9.0, rel=1e-9)
    assert np.all(res.labels[TIMES < 0.2] == "collapsed")
    assert "consolidation" not in res.labels


def test_positive_eigenvalues_count_as_visible():
    spectra = exact_eigenvalues([0.0, 0.0, 1.0])
    spectra[:, -1] = 0.3  # a positive eigenvalue of t J at every level
    res = classify_phases(TIMES, spectra, 0.1, n_tangent=1)
    assert np.all(res.labels == "consolidation")


def test_grid_that_misses_a_boundary_gives_nan():
    lam = np.array([0.0, 1.0])
    times = np.geomspace(1e-4, 1.0, 20)  # never trivial (t_trivial = 9)
    res = classify_phases(times, exact_eigenvalues(lam, times), 0.1, n_tangent=1)
    assert np.isnan(res.t_trivial)
    assert res.t_consolidation == pytest.approx(1 / 9, rel=1e-9)


def test_accepts_torch_tensors():
    spectra = torch.as_tensor(exact_eigenvalues([0.0, 1.0]))
    res = classify_phases(torch.as_tensor(TIMES), spectra, 0.1, n_tangent=1)
    assert res.t_trivial == pytest.approx(9.0)


def test_phase_labels():
    labels = phase_labels([0.01, 1.0, 100.0], 10.0, 0.1)
    assert labels.tolist() == ["consolidation", "coverage", "trivial"]
    with pytest.raises(ValueError, match="t_trivial"):
        phase_labels([1.0], np.nan, 0.1)
    with pytest.raises(ValueError, match="times"):
        phase_labels([-1.0], 1.0, 0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"delta": float("nan")}, "delta"),
        ({"delta": "big"}, "delta"),
        ({"convention": "svd"}, "convention"),
        ({"n_tangent": 0}, "n_tangent"),
        ({"n_tangent": 5}, "n_tangent"),
        ({"n_tangent": 1.5}, "n_tangent"),
    ],
)
def test_bad_arguments(kwargs, match):
    spectra = exact_eigenvalues([0.0, 0.0, 1.0, 2.0])
    args = {"delta": 0.1, "n_tangent": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        classify_phases(TIMES, spectra, **args)


def test_bad_spectra_and_times():
    spectra = exact_eigenvalues([0.0, 1.0])
    with pytest.raises(ValueError, match="n_times"):
        classify_phases(TIMES[:-1], spectra, 0.1)
    with pytest.raises(ValueError, match="n_times"):
        classify_phases(TIMES, spectra[0], 0.1)
    with pytest.raises(ValueError, match="times"):
        classify_phases(-TIMES, spectra, 0.1)
    with pytest.raises(ValueError, match="times"):
        classify_phases(TIMES[:1], spectra[:1], 0.1)
    with pytest.raises(ValueError, match="multiplied by t"):
        classify_phases(TIMES, spectra / TIMES[:, None], 0.1, n_tangent=1)
    with pytest.raises(ValueError, match="non-negative"):
        classify_phases(TIMES, spectra, 0.1, convention="singular")
    with pytest.raises(ValueError, match="all zero"):
        classify_phases(TIMES, np.zeros_like(spectra), 0.1, convention="singular")
    bad = spectra.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        classify_phases(TIMES, bad, 0.1)


def test_normal_bulk_width_bad_input():
    with pytest.raises(ValueError, match="n_tangent"):
        normal_bulk_width(np.ones((3, 4)), 4)
    with pytest.raises(ValueError, match="convention"):
        normal_bulk_width(np.ones((3, 4)), 2, convention="x")
    np.testing.assert_array_equal(normal_bulk_width(-np.ones((3, 4)), 2, convention="eigenvalues"), 0.0)


def test_singular_tj_convention_is_not_biased_by_the_largest_normal_value():
    """Normal values of t J scatter on both sides of 1; dividing by the largest shifts the boundaries."""
    rng = np.random.default_rng(1)
    lam = np.array([0.3, 1.0, 2.5])
    tangent = TIMES[:, None] / (lam + TIMES[:, None])
    normal = 1.0 + 0.1 * rng.uniform(-1, 1, size=(TIMES.size, 30))
    sv_tj = np.concatenate([tangent, normal], axis=1)
    res = classify_phases(TIMES, sv_tj, 0.2, convention="singular_tj", n_tangent=3)
    assert res.t_trivial == pytest.approx(2.5 * 0.8 / 0.2, rel=1e-6)
    assert res.t_consolidation == pytest.approx(0.3 * 0.2 / 0.8, rel=1e-6)
    assert res.normal_width <= 0.1
    biased = classify_phases(TIMES, sv_tj, 0.25, convention="singular", n_tangent=3)
    assert biased.t_consolidation > 1.05 * 0.3 * 0.25 / 0.75  # dividing by ~1.1 shrinks every value
    with pytest.raises(ValueError, match="non-negative"):
        classify_phases(TIMES, -sv_tj, 0.2, convention="singular_tj", n_tangent=3)


def test_phase_sequence_orders_by_decreasing_noise_and_merges_repeats():
    man = LinearManifold(60, (20,), (1.0,), seed=0)
    eig = exact_eigenvalues(covariance_eigenvalues(man))
    res = classify_phases(TIMES, eig, 0.1, n_tangent=20)
    assert phase_sequence(TIMES, res.labels) == list(PHASES[:3])
    shuffled = np.random.default_rng(0).permutation(TIMES.size)
    assert phase_sequence(TIMES[shuffled], res.labels[shuffled]) == list(PHASES[:3])
    # a memorising score: back to an isotropic Jacobian below some t
    t = np.array([100.0, 10.0, 1.0, 0.1])
    assert phase_sequence(t, ["trivial", "coverage", "coverage", "collapsed"]) == ["trivial", "coverage", "collapsed"]
    # a return to an earlier phase shows
    assert phase_sequence(t, ["trivial", "coverage", "trivial", "coverage"]) == [
        "trivial",
        "coverage",
        "trivial",
        "coverage",
    ]


def test_phase_sequence_bad_input():
    with pytest.raises(ValueError, match="one entry per noise level"):
        phase_sequence([1.0, 2.0], ["trivial"])
    with pytest.raises(ValueError, match="labels must be among"):
        phase_sequence([1.0, 2.0], ["trivial", "solid"])
    with pytest.raises(ValueError, match="times"):
        phase_sequence([1.0, -2.0], ["trivial", "trivial"])
