"""Tests of diffnb.spectra.mean_jacobian_spectra and resolution_above (the phases of trained networks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffnb.data.linear import LinearManifold
from diffnb.jacobian import score_jacobian
from diffnb.scores import make_linear_score
from diffnb.spectra import classify_phases, mean_jacobian_spectra, resolution_above

TIMES = np.geomspace(1e-3, 1e2, 31)


@pytest.fixture(scope="module")
def manifold():
    return LinearManifold(d=12, block_dims=(5,), scales=(1.0,), seed=0)


def test_exact_linear_score_gives_t_over_lambda_plus_t(manifold):
    score = make_linear_score(torch.as_tensor(manifold.F))
    points = torch.as_tensor(manifold.sample(4, seed=1))
    noise = np.random.default_rng(2).standard_normal(points.shape)
    lam = np.clip(np.linalg.eigvalsh(manifold.covariance), 0.0, None)
    expected = np.sort(TIMES[:, None] / (lam + TIMES[:, None]), axis=-1)
    for kwargs in ({}, {"noise": noise}):  # the Jacobian is the same everywhere
        sv = mean_jacobian_spectra(score, points, TIMES, **kwargs)
        assert sv.shape == (TIMES.size, manifold.d)
        np.testing.assert_allclose(sv, expected, atol=1e-10)
    # classified as singular values of t J, the boundaries are those of the eigenvalues of t J
    res = classify_phases(TIMES, sv, 0.1, convention="singular_tj", n_tangent=manifold.m)
    ref = classify_phases(TIMES, -expected, 0.1, n_tangent=manifold.m)
    assert res.t_trivial == pytest.approx(ref.t_trivial, rel=1e-8)
    assert res.t_consolidation == pytest.approx(ref.t_consolidation, rel=1e-8)
    np.testing.assert_array_equal(res.labels, ref.labels)


def _varying_score(x, t):
    """A score whose Jacobian changes from point to point (and is not symmetric)."""
    A = torch.tensor([[1.0, 0.3, 0.0], [0.0, 2.0, 0.0], [0.1, 0.0, 0.5]], dtype=x.dtype)
    return -(x @ A.T) / t[:, None] - 0.2 * torch.sin(x).roll(1, dims=1) / t[:, None]


def test_average_is_taken_over_jacobians_before_the_singular_values():
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    times = np.array([0.5, 2.0])
    sv = mean_jacobian_spectra(_varying_score, points, times, noise=noise, scale=None)
    for k, t in enumerate(times):
        J = score_jacobian(_varying_score, points + np.sqrt(t) * noise, t).mean(0)
        np.testing.assert_allclose(sv[k], np.sort(torch.linalg.svdvals(J).numpy()), rtol=1e-10)
        per_point = torch.linalg.svdvals(score_jacobian(_varying_score, points + np.sqrt(t) * noise, t))
        assert not np.allclose(sv[k], np.sort(per_point.mean(0).numpy()))  # not the mean of the spectra
    scaled = mean_jacobian_spectra(_varying_score, points, times, noise=noise)  # scale="t"
    np.testing.assert_allclose(scaled, sv * times[:, None], rtol=1e-12)
    by_max = mean_jacobian_spectra(_varying_score, points, times, noise=noise, scale="max")
    np.testing.assert_allclose(by_max[:, -1], 1.0)
    np.testing.assert_allclose(by_max, sv / sv[:, -1:], rtol=1e-12)


def test_numpy_points_are_float32_unless_asked():
    seen = []

    def score(x, t):
        seen.append(x.dtype)
        return -x / t[:, None]

    sv = mean_jacobian_spectra(score, np.zeros((2, 3)), [1.0, 2.0])
    np.testing.assert_allclose(sv, 1.0, rtol=1e-6)
    assert seen[0] == torch.float32 and sv.dtype == np.float64
    mean_jacobian_spectra(score, np.zeros((2, 3)), [1.0], dtype=torch.float64)
    assert seen[-1] == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "largest"}, "scale"),
        ({"points": np.zeros(3)}, "points"),
        ({"points": np.zeros((0, 3))}, "points"),
        ({"times": [1.0, -1.0]}, "times"),
        ({"times": [[1.0]]}, "times"),
        ({"noise": np.zeros((2, 4))}, "noise"),
        ({"times": [np.nan]}, "times"),
    ],
)
def test_mean_jacobian_spectra_bad_input(kwargs, match):
    args = {"points": np.zeros((2, 3)), "times": [1.0]}
    args.update(kwargs)
    points, times = args.pop("points"), args.pop("times")
    with pytest.raises(ValueError, match=match):
        mean_jacobian_spectra(lambda x, t: -x / t[:, None], points, times, **args)


def test_zero_jacobian_cannot_be_divided_by_its_largest_value():
    with pytest.raises(ValueError, match="zero"):
        mean_jacobian_spectra(lambda x, t: 0.0 * x, np.zeros((2, 3)), [1.0], scale="max")


def test_resolution_above():
    assert resolution_above(0.155) == 0.2
    assert resolution_above(0.176) == 0.25
    assert resolution_above(0.0) == 0.05
    assert resolution_above(0.0, minimum=0.1) == 0.1
    assert resolution_above(0.2, margin=0.0) == 0.25  # never equal to the width
    assert resolution_above(0.31, step=0.1) == 0.4
    for width in np.linspace(0.0, 0.9, 37):
        delta = resolution_above(width)
        assert width + 0.025 <= delta + 1e-12 and delta < 1


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1.0,), "width"),
        ((-0.1,), "width"),
        ((np.nan,), "width"),
        ((0.96,), "no resolution"),
        (("0.1",), "width"),
    ],
)
def test_resolution_above_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        resolution_above(*args)
    with pytest.raises(ValueError, match="step"):
        resolution_above(0.1, step=0.0)
    with pytest.raises(ValueError, match="margin"):
        resolution_above(0.1, margin=-0.1)
