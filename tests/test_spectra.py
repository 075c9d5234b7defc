"""Tests of diffnb.spectra on exact spectra of linear manifolds, where the dimension is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffnb.data.linear import LinearManifold
from diffnb.scores import linear_score_jacobian
from diffnb.spectra import (
    DIMENSION_METHODS,
    cliff_dimensions,
    crossing_time,
    dimension_over_time,
    estimate_dimension,
    first_level_where,
    gaussian_score_spectra,
    linear_score_spectra,
    normalize_spectrum,
    rayleigh_quotients,
)


def exact_singular_values(variances, t):
    """Singular values of t J for the exact score of a Gaussian manifold with these covariance eigenvalues."""
    variances = np.asarray(variances, dtype=float)
    t = np.asarray(t, dtype=float)[..., None]
    return t / (variances + t)


def axis_spectrum(m_high=2, m_low=5, d=30, high=1.0, low=0.09, t=0.05):
    variances = np.r_[np.full(m_high, high), np.full(m_low, low), np.zeros(d - m_high - m_low)]
    return exact_singular_values(variances, t)


# ---------------------------------------------------------------------------------- normalisation


def test_normalize_spectrum_sorts_and_divides_by_largest():
    out = normalize_spectrum([2.0, 4.0, 1.0])
    np.testing.assert_allclose(out, [0.25, 0.5, 1.0])
    np.testing.assert_allclose(normalize_spectrum([2.0, 4.0, 1.0], descending=True), [1.0, 0.5, 0.25])


def test_normalize_spectrum_drop_largest_as_the_papers_plot():
    values = np.array([[100.0, 50.0, 10.0, 10.0, 1.0], [3.0, 3.0, 3.0, 3.0, 3.0]])
    out = normalize_spectrum(values, drop_largest=2)
    np.testing.assert_allclose(out, [[0.1, 1.0, 1.0], [1.0, 1.0, 1.0]])


def test_normalize_spectrum_accepts_tensors_and_batches():
    values = torch.rand(4, 3, 6, dtype=torch.float64) + 0.1
    out = normalize_spectrum(values)
    assert isinstance(out, np.ndarray) and out.shape == (4, 3, 6)
    np.testing.assert_allclose(out[..., -1], 1.0)


@pytest.mark.parametrize(
    ("values", "kwargs", "match"),
    [
        ([1.0, -0.5], {}, "non-negative"),
        ([0.0, 0.0], {}, "all zero"),
        ([1.0, np.nan], {}, "NaN"),
        ([1.0, 2.0], {"drop_largest": 2}, "drop_largest"),
        ([1.0, 2.0], {"drop_largest": -1}, "drop_largest"),
        (3.0, {}, "scalar"),
        (np.zeros((2, 0)), {}, "empty"),
    ],
)
def test_normalize_spectrum_bad_input(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        normalize_spectrum(values, **kwargs)


# ------------------------------------------------------------------------- dimension: exact spectra


@pytest.mark.parametrize("method", DIMENSION_METHODS)
def test_dimension_of_a_single_block_linear_manifold(method):
    # d=100, m=40 random embedding at small t: the manifold gap separates 40 tangent values from 60 normal ones
    manifold = LinearManifold(d=100, block_dims=(40,), scales=(1.0,), seed=0)
    t = 1e-3
    sv = np.abs(np.linalg.eigvalsh(t * linear_score_jacobian(manifold.F, t)))
    assert estimate_dimension(sv, method) == 40


@pytest.mark.parametrize("order", ["ascending", "descending", "shuffled"])
def test_dimension_is_independent_of_the_order_of_values(order):
    sv = axis_spectrum()
    if order == "descending":
        sv = sv[::-1]
    elif order == "shuffled":
        sv = np.random.default_rng(0).permutation(sv)
    assert estimate_dimension(sv, "threshold") == 7
    assert estimate_dimension(sv, "cliff") == 7


def test_largest_gap_finds_the_most_prominent_gap():
    # at t=0.05 the gap below the normal bulk (0.36 -> 1) is the largest: 7 tangent values
    assert estimate_dimension(axis_spectrum(t=0.05), "largest_gap") == 7
    # at t=0.3 the gap between the two tangent blocks is larger than the one to the bulk: 2
    sv = axis_spectrum(t=0.3)
    assert estimate_dimension(sv, "largest_gap") == 2
    assert estimate_dimension(sv, "threshold", delta=0.05) == 7


def test_two_variance_random_manifold_dimension_over_time():
    manifold = LinearManifold(d=100, block_dims=(20, 20), scales=(1.0, 0.3), seed=1)
    lam = np.clip(np.linalg.eigvalsh(manifold.covariance), 0, None)
    times = np.logspace(-3, 2, 11)
    spectra = exact_singular_values(lam, times)
    dims = dimension_over_time(spectra, "threshold", delta=0.1)
    assert dims.shape == (11,)
    assert dims[0] == 40  # small t: all 40 tangent directions
    assert dims[-1] == 0  # large t: the trivial phase, everything looks normal
    assert np.all(np.diff(dims) <= 0)  # directions only disappear as t grows


def test_flat_spectrum_has_dimension_zero():
    flat = np.ones(30)
    for method in DIMENSION_METHODS:
        assert estimate_dimension(flat, method) == 0
    nearly = 1 - 1e-3 * np.random.default_rng(0).random(30)
    assert estimate_dimension(nearly, "largest_gap") == 0
    assert estimate_dimension(nearly, "threshold") == 0


def test_threshold_counts_values_below_one_minus_delta():
    assert estimate_dimension([0.1, 0.85, 0.95, 1.0], "threshold", delta=0.1) == 2
    assert estimate_dimension([0.1, 0.85, 0.95, 1.0], "threshold", delta=0.01) == 3
    assert estimate_dimension([10.0, 9.5, 1.0], "threshold", delta=0.1) == 1  # normalised first


def test_drop_largest_option():
    # frozen directions jump above the bulk (as in the theory panel); dropping them recovers the count
    values = np.r_[50.0, 50.0, np.ones(20), 0.2 * np.ones(5)]
    assert estimate_dimension(values, "threshold", drop_largest=2) == 5
    assert estimate_dimension(values, "largest_gap", drop_largest=2) == 5


# ----------------------------------------------------------------------------------------- cliff


def test_cliff_reduce_options_on_a_sharp_step():
    sv = axis_spectrum(m_high=0, m_low=7, low=1.0, t=0.01)  # 23 values at 1, 7 at ~0.01
    assert estimate_dimension(sv, "cliff") == 7
    # the official pooling also counts the top corner of the step (dimension 8) and averages: 7.5 -> 8
    assert estimate_dimension(sv, "cliff", reduce="mean") == 8
    pooled = cliff_dimensions(sv)
    np.testing.assert_array_equal(np.sort(pooled), [7, 8])


def test_cliff_official_pooling_with_d_bar_and_global_median():
    rng = np.random.default_rng(3)
    # smooth decaying spectra with a cliff after 60 of 100 values (d_bar drops the top 10)
    base = np.r_[np.linspace(10, 8, 60), np.linspace(1.0, 0.5, 40)]
    spectra = base + 0.001 * rng.standard_normal((5, 100))
    dims = cliff_dimensions(spectra, c=10.0, d_bar=10)
    assert dims.size >= 5 and set(np.unique(dims)) <= {40, 41}
    assert estimate_dimension(spectra[0], "cliff", d_bar=10) == 40


def test_cliff_no_spike_and_too_short():
    assert cliff_dimensions(np.ones((3, 10))).size == 0
    with pytest.raises(ValueError, match="d_bar"):
        cliff_dimensions(np.ones(5), d_bar=3)
    with pytest.raises(ValueError, match="cliff estimator needs"):
        estimate_dimension(np.ones(4), "cliff", d_bar=2)


# ---------------------------------------------------------------------------- options and bad input


def test_unknown_method_and_options():
    with pytest.raises(ValueError, match="method must be one of"):
        estimate_dimension([1.0, 0.1], "elbow")
    with pytest.raises(TypeError, match="unknown options"):
        estimate_dimension([1.0, 0.1], "threshold", min_gap=0.1)
    with pytest.raises(ValueError, match="delta"):
        estimate_dimension([1.0, 0.1], "threshold", delta=1.5)
    with pytest.raises(ValueError, match="min_gap"):
        estimate_dimension([1.0, 0.1], "largest_gap", min_gap=-0.1)
    with pytest.raises(ValueError, match="reduce"):
        estimate_dimension(np.ones(5), "cliff", reduce="median")
    with pytest.raises(ValueError, match="c must"):
        estimate_dimension(np.ones(5), "cliff", c=0)


def test_estimate_dimension_wants_one_spectrum():
    with pytest.raises(ValueError, match="one spectrum"):
        estimate_dimension(np.ones((2, 3)))


def test_dimension_over_time_leading_axes_and_torch():
    spectra = np.stack([axis_spectrum(t=t) for t in (1e-3, 0.05)])  # (2 times, 30)
    batch = np.stack([spectra, spectra[::-1]])  # (2, 2, 30)
    dims = dimension_over_time(torch.as_tensor(batch), "threshold")
    np.testing.assert_array_equal(dims, [[7, 7], [7, 7]])
    assert dims.dtype.kind == "i"
    cliff = dimension_over_time(batch, "cliff")
    assert cliff.shape == (2, 2)


# ------------------------------------------------------------------------------------ crossing_time


def test_crossing_time_log_interpolation():
    times = np.array([1e-3, 1e-2, 1e-1, 1.0])
    curve = np.array([0.0, 0.25, 0.75, 1.0])
    # between 1e-2 (0.25) and 1e-1 (0.75): half way in log t
    assert float(crossing_time(times, curve)) == pytest.approx(10**-1.5)
    # any order of times
    assert float(crossing_time(times[::-1], curve[::-1])) == pytest.approx(10**-1.5)


def test_crossing_time_first_crossing_from_large_noise_and_nan_cases():
    times = np.logspace(-3, 0, 4)
    curves = np.array(
        [
            [0.0, 0.9, 0.2, 1.0],  # dips below at 1e-1 first (from large t)
            [0.9, 0.9, 0.9, 0.9],  # never crosses
            [0.1, 0.1, 0.1, 0.1],  # starts below
        ]
    )
    out = crossing_time(times, curves, level=0.5)
    assert out.shape == (3,)
    assert 1e-1 < out[0] < 1.0
    assert np.isnan(out[1]) and np.isnan(out[2])


def test_crossing_time_bad_input():
    with pytest.raises(ValueError, match="times"):
        crossing_time([0.1, -1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="times"):
        crossing_time([0.1], [1.0])
    with pytest.raises(ValueError, match="curve"):
        crossing_time([0.1, 1.0], [1.0, 0.0, 0.5])


def test_first_level_where_hand_built():
    times = np.array([1e-3, 1e-2, 1e-1, 1.0])
    dims = np.array([0, 3, 6, 7])
    # from large t down: first level where the dimension drops below 6, and where it reaches 0
    assert float(first_level_where(times, dims < 6)) == pytest.approx(1e-2)
    assert float(first_level_where(times, dims == 0)) == pytest.approx(1e-3)
    # from small t up: the smallest level at which any direction is read
    assert float(first_level_where(times, dims > 0, start="small")) == pytest.approx(1e-2)
    # a dip and a recovery: the first level met from each end
    wavy = np.array([True, False, True, False])
    assert float(first_level_where(times, wavy)) == pytest.approx(1e-1)
    assert float(first_level_where(times, wavy, start="small")) == pytest.approx(1e-3)


def test_first_level_where_any_order_of_times_and_batches():
    times = np.array([1e-3, 1e-2, 1e-1, 1.0])
    dims = np.array([[0, 3, 6, 7], [0, 0, 5, 7], [1, 2, 3, 4]])
    perm = np.array([2, 0, 3, 1])
    for start in ("large", "small"):
        cond = dims < 6 if start == "large" else dims > 0
        out = first_level_where(times, cond, start=start)
        assert out.shape == (3,)
        np.testing.assert_array_equal(first_level_where(times[perm], cond[:, perm], start=start), out)
    np.testing.assert_allclose(first_level_where(times, dims < 6), [1e-2, 1e-1, 1.0])
    np.testing.assert_allclose(first_level_where(times, dims > 0, start="small"), [1e-2, 1e-1, 1e-3])
    # torch booleans are accepted
    assert float(first_level_where(times, torch.tensor(dims[0] < 6))) == pytest.approx(1e-2)


def test_first_level_where_never_gives_nan():
    times = np.logspace(-3, 0, 4)
    out = first_level_where(times, np.array([[False] * 4, [False, False, True, False]]))
    assert np.isnan(out[0]) and out[1] == pytest.approx(1e-1)
    assert np.isnan(first_level_where(times, np.zeros(4, dtype=bool), start="small"))


def test_first_level_where_bad_input():
    with pytest.raises(TypeError, match="condition"):
        first_level_where([0.1, 1.0], [0, 3])  # integers, not a comparison
    with pytest.raises(ValueError, match="condition"):
        first_level_where([0.1, 1.0], [True, False, True])
    with pytest.raises(ValueError, match="condition"):
        first_level_where([0.1, 1.0], np.bool_(True))
    with pytest.raises(ValueError, match="times"):
        first_level_where([0.1, -1.0], [True, False])
    with pytest.raises(ValueError, match="start"):
        first_level_where([0.1, 1.0], [True, False], start="middle")


# ---------------------------------------------------------------------------------- exact linear-score spectra


@pytest.mark.parametrize("convention", ["eigenvalues", "singular_tj", "singular"])
def test_linear_score_spectra_against_the_closed_form_jacobian(convention):
    man = LinearManifold(30, (6, 4), (1.0, 0.3), seed=3)
    times = np.geomspace(1e-3, 1e2, 7)
    out = linear_score_spectra(man.F, times, convention=convention)
    assert out.shape == (7, 30) and out.dtype == np.float64
    assert np.all(np.diff(out, axis=-1) >= 0)
    # reference: diagonalise t J = -t (C + t I)^{-1} at every level
    eig = np.stack([np.linalg.eigvalsh(t * linear_score_jacobian(man.F, t)) for t in times])
    if convention == "eigenvalues":
        ref = eig
    elif convention == "singular_tj":
        ref = np.sort(-eig, axis=-1)
    else:
        sv = np.stack([np.linalg.svd(linear_score_jacobian(man.F, t), compute_uv=False) for t in times])
        ref = normalize_spectrum(sv)
    np.testing.assert_allclose(out, ref, atol=1e-12)
    # d - m = 20 normal directions at the normal end
    end = -1.0 if convention == "eigenvalues" else 1.0
    np.testing.assert_allclose(out[:, :20] if end < 0 else out[:, 10:], end, atol=1e-12)


def test_linear_score_spectra_full_rank_and_torch_input():
    F = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # variances 4 and 1, no normal direction
    out = linear_score_spectra(F, [1.0])
    np.testing.assert_allclose(out, [[0.2, 0.5]])
    np.testing.assert_allclose(linear_score_spectra(F, [1.0], convention="singular"), [[0.4, 1.0]])


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.ones(3), [1.0]), {}, "F must have shape"),
        ((np.ones((3, 1)), [0.0]), {}, "times"),
        ((np.ones((3, 1)), [[1.0]]), {}, "times"),
        ((np.full((3, 1), np.nan), [1.0]), {}, "F holds NaN"),
        ((np.ones((3, 1)), [1.0]), {"convention": "svd"}, "convention"),
    ],
)
def test_linear_score_spectra_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        linear_score_spectra(*args, **kwargs)


# ---------------------------------------------------------------------------------- Rayleigh quotients


def test_rayleigh_quotients_of_an_exact_score_are_t_over_lambda_plus_t():
    man = LinearManifold(20, (5,), (1.0,), seed=1)
    lam, U = np.linalg.eigh(man.covariance)
    t = 0.2
    J = linear_score_jacobian(man.F, t)
    q = rayleigh_quotients(t * J, U.T, normalize=False)
    np.testing.assert_allclose(q, t / (np.clip(lam, 0, None) + t), atol=1e-12)
    # normalised by |J| = 1/t (the normal directions): the same numbers
    np.testing.assert_allclose(rayleigh_quotients(J, U.T), q, atol=1e-12)
    # unnormalised directions are normalised
    np.testing.assert_allclose(rayleigh_quotients(J, 3.0 * U.T), q, atol=1e-12)


def test_rayleigh_quotients_ignore_the_antisymmetric_part_and_broadcast():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((4, 6, 6))
    S = -(S @ S.transpose(0, 2, 1))  # symmetric, negative definite
    A = rng.standard_normal((4, 6, 6))
    A = A - A.transpose(0, 2, 1)
    u = rng.standard_normal((4, 1, 6))  # one direction per matrix
    un = u / np.linalg.norm(u, axis=-1, keepdims=True)
    q = rayleigh_quotients(torch.as_tensor(S + A), u, normalize=False)
    assert q.shape == (4, 1)
    np.testing.assert_allclose(q[:, 0], -np.einsum("nd,nde,ne->n", un[:, 0], S, un[:, 0]), rtol=1e-10)
    # normalised by the largest singular value of the full (non-symmetric) matrix
    top = np.linalg.svd(S + A, compute_uv=False)[:, 0]
    np.testing.assert_allclose(rayleigh_quotients(S + A, u)[:, 0], q[:, 0] / top, rtol=1e-10)
    # shared directions against a batch
    assert rayleigh_quotients(S, np.eye(6)).shape == (4, 6)


@pytest.mark.parametrize(
    ("J", "U", "match"),
    [
        (np.ones((3, 2)), np.eye(3), "jacobians must have shape"),
        (np.eye(3), np.ones(3), "directions must have shape"),
        (np.eye(3), np.ones((2, 4)), "directions must have shape"),
        (np.eye(3), np.zeros((1, 3)), "non-zero"),
        (np.zeros((3, 3)), np.eye(3), "zero"),
        (np.full((3, 3), np.nan), np.eye(3), "jacobians holds NaN"),
    ],
)
def test_rayleigh_quotients_bad_input(J, U, match):
    with pytest.raises(ValueError, match=match):
        rayleigh_quotients(J, U)


def test_gaussian_score_spectra_matches_the_closed_form_in_any_order():
    variances = np.array([2.0, 0.0, 0.5, 0.0])
    times = np.array([0.1, 1.0, 10.0])
    out = gaussian_score_spectra(variances[::-1], times, convention="eigenvalues")
    for t, row in zip(times, out, strict=True):
        J = -np.linalg.inv(np.diag(variances) + t * np.eye(4))
        np.testing.assert_allclose(row, np.linalg.eigvalsh(t * J), rtol=1e-13, atol=1e-15)
    F = np.diag(np.sqrt(variances))[:, [0, 2]]  # the same covariance as a linear manifold
    np.testing.assert_allclose(gaussian_score_spectra(variances, times), linear_score_spectra(F, times), rtol=1e-12)


@pytest.mark.parametrize(
    "variances, match",
    [([[1.0, 2.0]], "1-D array"), ([1.0, -0.5], "non-negative"), ([], "empty"), ([1.0, np.nan], "finite|NaN")],
)
def test_gaussian_score_spectra_bad_input(variances, match):
    with pytest.raises(ValueError, match=match):
        gaussian_score_spectra(variances, [1.0])


def test_implied_variances_of_the_exact_linear_score():
    # along the eigenvectors of C the exact score implies the data variances, at any t and any points
    from diffnb.data import LinearManifold
    from diffnb.metrics import LinearFrame
    from diffnb.scores import make_linear_score
    from diffnb.spectra import implied_variances

    man = LinearManifold(d=12, block_dims=(3, 2), scales=(1.0, 0.3), seed=0)
    frame = LinearFrame.from_embedding(man.F)
    x = torch.as_tensor(man.sample(4, seed=1))
    for t in (0.5, 1e-3):
        got = implied_variances(make_linear_score(man.F), x, t, frame.tangent_basis.T)
        np.testing.assert_allclose(got, frame.variances, rtol=1e-8)
    with pytest.raises(ValueError, match="t must be a positive number"):
        implied_variances(make_linear_score(man.F), x, -1.0, frame.tangent_basis.T)
