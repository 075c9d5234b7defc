"""Tests of diffnb.metrics: frames of linear manifolds and distances between sample sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffnb.data.linear import LinearManifold
from diffnb.metrics import LinearFrame, ks_distances, sliced_wasserstein, wasserstein_1d


@pytest.fixture(scope="module")
def manifold():
    return LinearManifold(d=20, block_dims=(4, 3), scales=(1.0, 0.3), seed=0)


def test_frame_is_orthonormal_and_complete(manifold):
    frame = LinearFrame.from_embedding(manifold.F)
    assert (frame.d, frame.m) == (20, 7)
    basis = np.concatenate([frame.tangent_basis, frame.normal_basis], axis=1)
    np.testing.assert_allclose(basis.T @ basis, np.eye(20), atol=1e-12)
    np.testing.assert_allclose(np.sort(frame.variances), np.linalg.eigvalsh(manifold.F.T @ manifold.F), rtol=1e-10)
    assert np.all(np.diff(frame.variances) <= 0)


def test_data_have_no_normal_part_and_tangent_variances(manifold):
    frame = LinearFrame.from_embedding(manifold.F)
    x = manifold.sample(20000, seed=1)
    assert frame.distance(x).max() < 1e-12
    tan = frame.tangent(x)
    np.testing.assert_allclose(tan.var(axis=0), frame.variances, rtol=0.05)
    # tangent and normal coordinates together preserve the norm
    y = np.random.default_rng(2).standard_normal((50, 20))
    np.testing.assert_allclose(
        np.linalg.norm(frame.tangent(y), axis=1) ** 2 + frame.distance(y) ** 2, np.linalg.norm(y, axis=1) ** 2
    )


def test_normal_rms_of_noised_points_is_sqrt_t(manifold):
    frame = LinearFrame.from_embedding(manifold.F)
    t = 0.04
    x = manifold.sample(4000, seed=3) + np.sqrt(t) * np.random.default_rng(4).standard_normal((4000, 20))
    assert frame.normal_rms(x) == pytest.approx(np.sqrt(t), rel=0.02)
    stacked = np.stack([x, 2 * x])  # leading axes: one value per trajectory slice
    np.testing.assert_allclose(frame.normal_rms(stacked), [np.sqrt(t), 2 * np.sqrt(t)], rtol=0.02)


def test_frame_accepts_tensors_and_leading_axes(manifold):
    frame = LinearFrame.from_embedding(torch.as_tensor(manifold.F))
    x = torch.randn(3, 5, 20, dtype=torch.float64)
    assert frame.tangent(x).shape == (3, 5, 7)
    assert frame.normal(x).shape == (3, 5, 13)
    assert frame.distance(x).shape == (3, 5)


def test_frame_bad_input(manifold):
    frame = LinearFrame.from_embedding(manifold.F)
    with pytest.raises(ValueError, match="x must have shape"):
        frame.tangent(np.zeros((3, 19)))
    with pytest.raises(ValueError, match="F"):
        LinearFrame.from_embedding(np.zeros(5))
    with pytest.raises(ValueError, match="zero"):
        LinearFrame.from_embedding(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="rtol"):
        LinearFrame.from_embedding(manifold.F, rtol=2.0)
    with pytest.raises(ValueError, match="NaN"):
        LinearFrame.from_embedding(np.full((5, 2), np.nan))


def test_rank_deficient_embedding():
    F = np.zeros((6, 3))
    F[0, 0], F[1, 1], F[0, 2] = 1.0, 2.0, 1.0  # third column repeats the first direction
    frame = LinearFrame.from_embedding(F)
    assert frame.m == 2


def test_ks_distances_against_scipy():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 3))
    y = rng.standard_normal((500, 3)) * [1.0, 1.5, 1.0] + [0.0, 0.0, 0.4]
    ours = ks_distances(x, y)
    ref = [ks_2samp(x[:, j], y[:, j]).statistic for j in range(3)]
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert ours[0] < ours[1] and ours[0] < ours[2]
    np.testing.assert_array_equal(ks_distances(x, x), 0.0)


def test_wasserstein_1d_known_values():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20000, 2))
    y = x * [1.0, 2.0] + [3.0, 0.0]
    # a shift by c has W_p = c; scaling a sample by 2 moves it by its root mean square in W_2
    np.testing.assert_allclose(wasserstein_1d(x, y, p=1)[0], 3.0, rtol=1e-12)
    np.testing.assert_allclose(wasserstein_1d(x, y)[1], np.sqrt(np.mean(x[:, 1] ** 2)), rtol=1e-12)
    # unequal sizes: through the quantile functions
    z = rng.standard_normal((5000, 2)) + [3.0, 0.0]
    np.testing.assert_allclose(wasserstein_1d(x, z)[0], 3.0, atol=0.05)


def test_sliced_wasserstein_scales_and_separates():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4000, 10))
    y = rng.standard_normal((4000, 10))
    same = sliced_wasserstein(x, y)
    shifted = sliced_wasserstein(x, y + 1.0)  # shift by the all-ones vector, |c| = sqrt(10)
    assert same < 0.05
    # E_theta (theta . c)^2 = |c|^2 / k = 1
    assert shifted == pytest.approx(1.0, rel=0.15)
    assert sliced_wasserstein(x, 3 * y) == pytest.approx(3 * sliced_wasserstein(x / 3, y), rel=1e-9)
    assert sliced_wasserstein(x, y, seed=5) == sliced_wasserstein(x, y, seed=5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ks_distances(np.zeros((3, 2)), np.zeros((3, 3))), "columns"),
        (lambda: ks_distances(np.zeros(3), np.zeros(3)), "shape"),
        (lambda: ks_distances(np.full((3, 2), np.inf), np.zeros((3, 2))), "NaN"),
        (lambda: wasserstein_1d(np.zeros((3, 2)), np.zeros((3, 2)), p=0.5), "p must"),
        (lambda: sliced_wasserstein(np.zeros((3, 2)), np.zeros((3, 2)), n_projections=0), "n_projections"),
        (lambda: sliced_wasserstein(np.zeros((3, 2)), np.zeros((4, 3))), "columns"),
        (lambda: sliced_wasserstein("abc", np.zeros((4, 3))), "x"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_frame_rejects_non_finite_points(manifold):
    frame = LinearFrame.from_embedding(manifold.F)
    x = manifold.sample(4, seed=1)
    x[1, 0] = np.nan
    for method in (frame.tangent, frame.normal, frame.distance, frame.normal_rms):
        with pytest.raises(ValueError, match="x holds"):
            method(x)
