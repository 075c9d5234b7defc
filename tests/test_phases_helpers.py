"""Tests of the helpers chapter 8 adds outside diffnb.spectra: the phase strip and the mean posterior covariance."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffnb import plotting  # noqa: E402
from diffnb.data.linear import LinearManifold  # noqa: E402
from diffnb.posterior import mean_posterior_covariance  # noqa: E402
from diffnb.scores import posterior_covariance  # noqa: E402


def test_phase_strip_draws_one_cell_per_level():
    fig, ax = plt.subplots()
    times = np.geomspace(1e-3, 1e2, 6)
    labels = ["consolidation", "coverage", "coverage", "trivial", "trivial", "collapsed"]
    plotting.phase_strip(ax, times[::-1], labels[::-1], y=1.0)
    assert len(ax.collections) == 6 and ax.get_xscale() == "log"
    colors = {tuple(c.get_facecolor()[0][:3]) for c in ax.collections}
    assert len(colors) == 4
    with pytest.raises(ValueError, match="labels must be among"):
        plotting.phase_strip(ax, times, ["x"] * 6)
    with pytest.raises(ValueError, match="one entry per noise level"):
        plotting.phase_strip(ax, times, labels[:3])
    with pytest.raises(ValueError, match="positive"):
        plotting.phase_strip(ax, -times, labels)
    plt.close(fig)


def test_mean_posterior_covariance_is_the_mean_of_the_pointwise_ones():
    manifold = LinearManifold(d=8, block_dims=(3,), scales=(1.0,), seed=0)
    data = manifold.sample(60, seed=1)
    x = data[:10] + 0.3 * np.random.default_rng(2).standard_normal((10, 8))
    for t in (0.05, 1.0, 30.0):
        ref = np.mean(posterior_covariance(x, data, t), axis=0)
        np.testing.assert_allclose(mean_posterior_covariance(x, data, t), ref, atol=1e-12)


def test_mean_posterior_covariance_limits_and_bad_input():
    manifold = LinearManifold(d=5, block_dims=(2,), scales=(1.0,), seed=0)
    data = manifold.sample(40, seed=1)
    # huge noise: the weights are uniform and the covariance is the (biased) sample covariance of the data
    cov = mean_posterior_covariance(np.zeros((3, 5)), data, 1e8)
    np.testing.assert_allclose(cov, np.cov(data.T, bias=True), atol=1e-6)
    # tiny noise at the training points: every posterior sits on its own point
    np.testing.assert_allclose(mean_posterior_covariance(data, data, 1e-8), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="single noise variance"):
        mean_posterior_covariance(data, data, [0.1, 0.2])
    with pytest.raises(ValueError, match="shape"):
        mean_posterior_covariance(np.zeros((2, 4)), data, 0.1)
