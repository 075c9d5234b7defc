"""Tests of diffnb.posterior against the closed forms of diffnb.scores and direct formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffnb.data.linear import AxisAlignedManifold, LinearManifold
from diffnb.posterior import (
    block_order_parameter,
    empirical_spectrum,
    gaussian_posterior_variance,
    mean_posterior_covariance,
    noised_points,
    official_probe_spectrum,
    sphere_posterior_variance,
    sweep,
)
from diffnb.scores import (
    empirical_jacobian_eigvals,
    empirical_score,
    participation_ratio,
    posterior_covariance,
    prepare_data,
)

SPHERE = AxisAlignedManifold(30, (2, 5), (1.0, 0.3), 0.01, normalized=True)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    data = SPHERE.sample(300, seed=1)
    base = SPHERE.sample(6, seed=2)
    noise = rng.standard_normal((6, 30))
    return data, base, noise


def test_gaussian_posterior_variance():
    out = gaussian_posterior_variance(np.array([0.1, 1.0]), np.array([1.0, 0.01]))
    np.testing.assert_allclose(out, [[0.1 / 1.1, 0.001 / 0.11], [0.5, 0.01 / 1.01]])
    with pytest.raises(ValueError, match="t must"):
        gaussian_posterior_variance(0.0, [1.0])
    with pytest.raises(ValueError, match="variances"):
        gaussian_posterior_variance(0.1, [1.0, -1.0])


def test_noised_points():
    base = np.ones((2, 3))
    noise = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(noised_points(base, noise, 0.04), base + 0.2 * noise)
    np.testing.assert_allclose(noised_points(np.zeros(3), noise, 1.0), noise)
    with pytest.raises(ValueError, match="t must"):
        noised_points(base, noise, -1.0)


@pytest.mark.parametrize("t", [1e-3, 0.02, 0.5])
def test_empirical_spectrum_matches_closed_form_eigenvalues(small, t):
    data, base, noise = small
    x = noised_points(base, noise, t)
    ev = empirical_jacobian_eigvals(x, data, t, normalized=True, weight_tol=0.0)
    expected = np.sort(np.clip(-ev, 0.0, 1.0), axis=1)
    np.testing.assert_allclose(empirical_spectrum(x, data, t), expected, atol=1e-10)
    res = sweep(data, base, noise, [t], order=False)
    np.testing.assert_allclose(res["eigenvalues"][0], ev, atol=1e-10)


def test_empirical_spectrum_of_a_bimodal_posterior():
    # x half-way between two distant training points: the posterior covariance along the line joining them is
    # much larger than t (a positive eigenvalue of J); that direction is clipped to 0, the normal ones stay at 1
    data = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    values = empirical_spectrum(np.zeros(3), data, 0.01)
    np.testing.assert_allclose(values, [[0.0, 1.0, 1.0]])


def test_block_order_parameter_matches_posterior_covariance(small):
    data, base, noise = small
    t = 0.02
    x = noised_points(base, noise, t)
    variances = np.linspace(0.05, 0.5, 30)
    blocks = [slice(0, 2), [2, 3, 4, 5, 6]]
    r = block_order_parameter(x, data, t, variances, blocks)
    diag = np.diagonal(posterior_covariance(x, data, t), axis1=1, axis2=2) / gaussian_posterior_variance(t, variances)
    np.testing.assert_allclose(r, np.stack([diag[:, :2].mean(1), diag[:, 2:7].mean(1)], axis=1), rtol=1e-9)


def test_block_order_parameter_in_a_rotated_basis():
    manifold = LinearManifold(d=20, block_dims=(4, 4), scales=(1.0, 0.3), seed=0)
    data = manifold.sample(500, seed=1)
    lam, U = np.linalg.eigh(manifold.covariance)
    x = manifold.sample(3, seed=2)
    t = 0.1
    variances = np.clip(lam, 1e-6, None)
    r = block_order_parameter(x, data, t, variances, [slice(16, 20)], basis=U)
    C = posterior_covariance(x, data, t)
    direct = np.einsum("ia,nij,ja->na", U, C, U)[:, 16:] / gaussian_posterior_variance(t, variances)[16:]
    np.testing.assert_allclose(r[:, 0], direct.mean(1), rtol=1e-9)


def test_order_parameter_generalises_for_gaussian_data_with_many_points():
    rng = np.random.default_rng(5)
    scales = np.array([1.0, 0.3])
    data = rng.standard_normal((100_000, 2)) * scales
    t = 0.3  # far above any memorization at this P
    x = rng.standard_normal((40, 2)) * np.sqrt(scales**2 + t)
    r = block_order_parameter(x, data, t, scales**2, [[0], [1]])
    np.testing.assert_allclose(np.median(r, axis=0), 1.0, atol=0.05)
    # and it freezes at small noise
    r_small = block_order_parameter(x, data, 1e-6, scales**2, [[0], [1]])
    assert np.all(np.median(r_small, axis=0) < 0.5)


def test_sweep_shapes_and_consistency(small):
    data, base, noise = small
    times = np.array([0.5, 0.01])
    res = sweep(data, base, noise, times, variances=np.full(30, 0.1), blocks=[slice(0, 2), slice(2, 7)])
    assert res["participation"].shape == (2, 6)
    assert res["order"].shape == (2, 6, 2)
    assert res["spectra"].shape == (2, 6, 30)
    for k, t in enumerate(times):
        x = noised_points(base, noise, t)
        np.testing.assert_allclose(res["participation"][k], participation_ratio(x, data, t), rtol=1e-10)
        np.testing.assert_allclose(res["spectra"][k], empirical_spectrum(x, data, t), atol=1e-12)
    # origin as base (broadcast) and no optional outputs
    res0 = sweep(data, np.zeros(30), noise, times, spectra=False, order=False)
    assert set(res0) == {"times", "participation"}
    assert set(res) == {"times", "participation", "order", "spectra", "eigenvalues"}


def test_sweep_accepts_tensors_and_large_data_in_chunks():
    rng = np.random.default_rng(1)
    data = torch.as_tensor(SPHERE.sample(3000, seed=3))
    noise = rng.standard_normal((40, 30))
    res = sweep(data, np.zeros(30), noise, [0.05], spectra=True, order=False)
    x = noised_points(np.zeros(30), noise, 0.05)
    np.testing.assert_allclose(res["participation"][0], participation_ratio(x, data.numpy(), 0.05), rtol=1e-9)


def test_sweep_bad_input(small):
    data, base, noise = small
    with pytest.raises(ValueError, match="variances and blocks"):
        sweep(data, base, noise, [0.1])
    with pytest.raises(ValueError, match="times"):
        sweep(data, base, noise, [0.1, 0.0], order=False)
    with pytest.raises(ValueError, match="noise"):
        sweep(data, base, noise[:, :5], [0.1], order=False)
    with pytest.raises(ValueError, match="data"):
        sweep(data[0], base, noise, [0.1], order=False)
    with pytest.raises(ValueError, match="blocks"):
        sweep(data, base, noise, [0.1], variances=np.ones(30), blocks=[slice(40, 50)])
    with pytest.raises(ValueError, match="blocks"):
        sweep(data, base, noise, [0.1], variances=np.ones(30), blocks=slice(0, 2))
    with pytest.raises(ValueError, match="variances"):
        sweep(data, base, noise, [0.1], variances=np.ones(29), blocks=[slice(0, 2)])
    with pytest.raises(ValueError, match="basis"):
        sweep(data, base, noise, [0.1], variances=np.ones(30), blocks=[slice(0, 2)], basis=np.ones((30, 30)))


def _official_by_hand(x0, data, t):
    """The digest's description of the official code (§2.2), written out directly."""
    d = data.shape[1]
    dx = np.sqrt(t) * np.eye(d)
    a = empirical_score(x0 + dx / 2, data, t)
    b = empirical_score(x0 - dx / 2, data, t)
    J = (a - b) / (np.sqrt(t) * np.sign(a - b))
    return np.linalg.svd(J, compute_uv=False)


@pytest.mark.parametrize("t", [0.5, 0.05])
def test_official_probe_reproduces_the_official_code(small, t):
    data, _, _ = small
    out = official_probe_spectrum(np.zeros(30), data, t)
    assert out.shape == (1, 30)
    np.testing.assert_allclose(out[0], _official_by_hand(np.zeros(30), data, t), rtol=1e-9)
    assert np.all(np.diff(out[0]) <= 1e-12)  # descending


def test_official_probe_without_quirk_is_a_secant_close_to_the_jacobian_at_large_noise(small):
    data, base, _ = small
    t = 0.3
    a = official_probe_spectrum(base[:2], data, t, absolute=False)
    b = official_probe_spectrum(base[:2], data, t, absolute=False, directions="random", seed=3)
    exact = np.sort(np.abs(empirical_jacobian_eigvals(base[:2], data, t, weight_tol=0.0)), axis=1)[:, ::-1]
    # the score is nearly linear over a step sqrt(t)/2 at this noise: both probes are close to the exact values
    for probe in (a, b):
        np.testing.assert_allclose(probe / exact[:, :1], exact / exact[:, :1], atol=0.05)
    with pytest.raises(ValueError, match="single noise"):
        official_probe_spectrum(base, data, [0.1, 0.2])


def test_sweep_goes_point_by_point_when_the_products_do_not_fit(small, monkeypatch):
    import diffnb.posterior as post
    import diffnb.scores as sc

    data, base, noise = small
    times = [0.3, 1e-3]
    full = sweep(data, base, noise, times, order=False)
    monkeypatch.setattr(sc, "_MAX_PRODUCTS", 10)
    monkeypatch.setattr(post, "_CHUNK", 2000)
    chunked = sweep(data, base, noise, times, order=False)
    np.testing.assert_allclose(chunked["spectra"], full["spectra"], atol=1e-12)
    np.testing.assert_allclose(chunked["eigenvalues"], full["eigenvalues"], atol=1e-10)


def test_prepared_data_gives_the_same_results_as_raw_data(small):
    data, base, noise = small
    prepared = prepare_data(data)
    raw = sweep(data, base, noise, [0.01, 0.3], variances=np.ones(30), blocks=[slice(0, 2)])
    again = sweep(prepared, base, noise, [0.01, 0.3], variances=np.ones(30), blocks=[slice(0, 2)])
    for key in raw:
        np.testing.assert_array_equal(raw[key], again[key])
    np.testing.assert_array_equal(
        official_probe_spectrum(base, data, 0.1), official_probe_spectrum(base, prepared, 0.1)
    )
    np.testing.assert_array_equal(
        mean_posterior_covariance(base, data, 0.1), mean_posterior_covariance(base, prepared, 0.1)
    )
    # float32 prepared data are lifted to float64, as raw float32 data are
    low = prepare_data(torch.as_tensor(data, dtype=torch.float32))
    np.testing.assert_allclose(
        empirical_spectrum(base, low, 0.1), empirical_spectrum(base, data.astype(np.float32), 0.1)
    )


def _von_mises_fisher_variances(x, t):
    # uniform data on the sphere: the posterior exp(x.y/t) is von Mises-Fisher with kappa = |x|/t
    from scipy.special import ive

    d = x.shape[1]
    kappa = np.linalg.norm(x, axis=1) / t
    mu = x / np.linalg.norm(x, axis=1, keepdims=True)
    A = ive(d / 2, kappa) / ive(d / 2 - 1, kappa)
    along = 1 - (d - 1) * A / kappa - A**2
    return (A / kappa)[:, None] * (1 - mu**2) + along[:, None] * mu**2


@pytest.mark.parametrize("t", [0.02, 0.5])
def test_sphere_posterior_variance_matches_von_mises_fisher(t):
    rng = np.random.default_rng(0)
    y = rng.standard_normal((40, 5))
    x = y / np.linalg.norm(y, axis=1, keepdims=True) + np.sqrt(t) * rng.standard_normal((40, 5))
    var = sphere_posterior_variance(x, t, np.ones(5), n_steps=3000, seed=1)
    exact = _von_mises_fisher_variances(x, t)
    total = var.sum(1) / exact.sum(1)
    assert abs(total.mean() - 1) < 0.03  # Monte Carlo error of 40 chains (measured 0.5-1.5%)
    assert np.median(np.abs(var / exact - 1)) < 0.1


def test_sphere_posterior_variance_matches_a_large_empirical_posterior():
    # the empirical posterior of P points converges to the population's: compare at a noise level where
    # 100 000 points still spread the weight over many of them
    manifold = AxisAlignedManifold(6, (2, 3), (1.0, 0.3), 0.01, normalized=True)
    rng = np.random.default_rng(3)
    data = manifold.sample(100_000, seed=rng)
    base, noise, t = manifold.sample(24, seed=rng), rng.standard_normal((24, 6)), 0.05
    var = sphere_posterior_variance(base + np.sqrt(t) * noise, t, manifold.coordinate_scales, seed=2)
    blocks = [slice(0, 2), slice(2, 5)]
    empirical = sweep(data, base, noise, [t], variances=np.ones(6), blocks=blocks, spectra=False)
    assert np.median(empirical["participation"]) > 500
    measured = empirical["order"][0] * (t / (t + 1))  # order parameter with unit variances -> variance
    population = np.stack([var[:, b].mean(1) for b in blocks], axis=1)
    # the same points: per point, the two agree within Monte Carlo error (median ratio measured 0.98, 0.99)
    np.testing.assert_allclose(np.median(population / measured, axis=0), 1.0, atol=0.05)


def test_sphere_posterior_variance_at_small_noise_is_the_tangent_projection():
    # t much smaller than every variance: the posterior is Gaussian on the sphere's tangent plane at y,
    # with variance t (1 - y_i^2) along coordinate i
    rng = np.random.default_rng(4)
    scales = np.array([1.0, 1.0, 0.3, 0.3, 0.3])
    y = AxisAlignedManifold(5, (2, 3), (1.0, 0.3), 0.3, normalized=True).sample(30, seed=rng)[:, :5]
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    t = 1e-5
    var = sphere_posterior_variance(y + np.sqrt(t) * rng.standard_normal(y.shape), t, scales, seed=5)
    np.testing.assert_allclose(np.median(var.sum(1) / (t * (5 - 1))), 1.0, rtol=0.03)
    ratio = var[:, :2].sum(1) / (t * (2 - (y[:, :2] ** 2).sum(1)))
    assert abs(np.median(ratio) - 1) < 0.05


def test_sphere_posterior_variance_chains_do_not_stick_at_small_noise():
    # set (a) of chapter 4 at t = 2e-3: with large moves alone some chains rejected nearly every move and
    # returned a pair variance near 0 (largest relative error against ten times longer chains 1.00); with the
    # small moves in between every chain is within 0.39 of the long run (local_beta=beta recovers the old
    # sampler, and this test then fails)
    from diffnb.empirical_sweeps import SPHERE

    rng = np.random.default_rng(0)
    t = 2e-3
    x = SPHERE.sample(400, seed=1) + np.sqrt(t) * rng.standard_normal((400, SPHERE.d))
    pair = slice(0, 2)
    short = sphere_posterior_variance(x, t, SPHERE.coordinate_scales, n_steps=3000, seed=2)[:, pair].sum(1)
    long = sphere_posterior_variance(x, t, SPHERE.coordinate_scales, n_steps=30_000, seed=5)[:, pair].sum(1)
    assert np.max(np.abs(short / long - 1)) < 0.7


def test_sphere_posterior_variance_bad_input():
    x = np.ones((3, 4)) / 2
    with pytest.raises(ValueError, match="one per point"):
        sphere_posterior_variance(x, [0.1, 0.2], np.ones(4))
    with pytest.raises(ValueError, match="n_steps"):
        sphere_posterior_variance(x, 0.1, np.ones(4), n_steps=10)
    with pytest.raises(ValueError, match="beta"):
        sphere_posterior_variance(x, 0.1, np.ones(4), beta=1.5)
    with pytest.raises(ValueError, match="local_beta"):
        sphere_posterior_variance(x, 0.1, np.ones(4), local_beta=0.0)
    for scales in ([1.0, 1.0, 0.0, 1.0], [1.0, -1.0, 1.0, 1.0], [1.0, np.nan, 1.0, 1.0]):
        with pytest.raises(ValueError, match="scales must be"):
            sphere_posterior_variance(x, 0.1, scales)
    with pytest.raises(ValueError, match="shape"):
        sphere_posterior_variance(x, 0.1, np.ones(5))
    with pytest.raises(ValueError, match="t must be positive"):
        sphere_posterior_variance(x, -0.1, np.ones(4))
