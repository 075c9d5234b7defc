"""Spectra of score callables over points and noise levels (diffnb.spectra, network helpers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffnb.data import LinearManifold
from diffnb.nets import NetConfig, build_model
from diffnb.scores import make_linear_score
from diffnb.spectra import band_dimension, dimension_over_time, plateau_length, score_spectra_over_time

MAN = LinearManifold(12, (3, 2), (1.0, 0.2), seed=0)


exact_score = make_linear_score(MAN.F)


def test_exact_linear_score_spectra_are_t_over_lambda_plus_t():
    times = np.array([1e-3, 0.1, 3.0])
    X = MAN.sample(4, seed=1)
    sv = score_spectra_over_time(exact_score, X, times, dtype=torch.float64)
    assert sv.shape == (4, 3, 12)
    lam = np.linalg.eigvalsh(MAN.covariance).clip(0)
    for k, t in enumerate(times):
        expected = np.sort(t / (lam + t))
        np.testing.assert_allclose(sv[:, k], np.broadcast_to(expected, (4, 12)), atol=1e-9)
    assert np.all(np.diff(sv, axis=-1) >= 0) and np.allclose(sv[..., -1], 1.0)
    # dimensions: 5 at small noise, the 3-dimensional high-variance block in between
    dims = dimension_over_time(sv, min_gap=0.2)
    assert dims[:, 0].tolist() == [5] * 4


def test_noise_option_evaluates_at_noised_points():
    net = build_model(NetConfig(d=12, width=16, depth=1), seed=0).double()
    X = MAN.sample(3, seed=2)
    xi = np.random.default_rng(0).standard_normal((3, 12))
    times = np.array([0.01, 0.5])
    sv = score_spectra_over_time(net.score, X, times, noise=xi, normalize=False, dtype=torch.float64)
    for k, t in enumerate(times):
        moved = score_spectra_over_time(net.score, X + np.sqrt(t) * xi, [t], normalize=False, dtype=torch.float64)
        np.testing.assert_allclose(sv[:, k], moved[:, 0], rtol=1e-10)
    with pytest.raises(ValueError, match="noise must have the shape"):
        score_spectra_over_time(net.score, X, times, noise=xi[:2])


def test_probe_method_agrees_on_a_linear_score():
    X = MAN.sample(2, seed=3)
    times = np.array([0.05, 1.0])
    exact = score_spectra_over_time(exact_score, X, times, dtype=torch.float64)
    probe = score_spectra_over_time(exact_score, X, times, method="probe", seed=0, dtype=torch.float64)
    np.testing.assert_allclose(probe, exact, atol=1e-8)  # central probes are exact for a linear score


def test_bad_arguments():
    with pytest.raises(ValueError, match="points must have shape"):
        score_spectra_over_time(exact_score, np.zeros(12), [0.1])
    with pytest.raises(ValueError, match="positive noise levels"):
        score_spectra_over_time(exact_score, np.zeros((1, 12)), [0.0])
    with pytest.raises(ValueError, match="noise holds NaN"):  # checked as mean_jacobian_spectra checks it
        score_spectra_over_time(exact_score, np.zeros((1, 12)), [0.1], noise=np.full((1, 12), np.nan))


def test_plateau_length():
    times = np.logspace(-3, 1, 9)  # half a decade per step
    dims = np.array([5, 5, 3, 3, 3, 0, 0, 2, 0])
    assert plateau_length(times, dims, lo=0, hi=5) == (1.0, 3)
    assert plateau_length(times, dims[::-1], lo=0, hi=5) == (1.0, 3)  # order of t does not matter
    assert plateau_length(times, np.array([5] * 9), lo=0, hi=5) == (0.0, -1)
    assert plateau_length(times, dims, lo=2, hi=5) == (1.0, 3)
    assert plateau_length(times, dims, lo=3, hi=5) == (0.0, -1)
    with pytest.raises(ValueError, match="same length"):
        plateau_length(times, dims[:3])


def test_band_dimension_follows_the_band():
    exact = np.array([0.01, 0.05, 0.5, 0.85, 1.0, 1.0, 1.0, 1.0])
    assert band_dimension(exact, 0.2) == 3  # values below 0.8
    assert band_dimension(exact * 0.9, 0.2) == 3  # scale does not matter
    network = np.array([0.01, 0.05, 0.5, 0.78, 0.86, 0.9, 0.95, 1.0])  # a band below the top value
    assert band_dimension(network, 0.2) == 3
    stacked = np.stack([exact, network])
    assert band_dimension(stacked, 0.2).tolist() == [3, 3]
    with pytest.raises(ValueError, match="delta must lie"):
        band_dimension(exact, 1.5)
    with pytest.raises(ValueError, match="non-negative"):
        band_dimension(-exact)
