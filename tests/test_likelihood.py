"""Tests of diffnb.likelihood: the floor likelihood and the maximum-likelihood coupling flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from diffnb.data.linear import LinearManifold
from diffnb.likelihood import CouplingFlow, floor_log_likelihood, train_flow
from diffnb.metrics import LinearFrame


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks train fastest on one thread (and do not fight other processes for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup():
    manifold = LinearManifold(d=6, block_dims=(2,), scales=(1.0,), seed=0)
    return manifold, LinearFrame.from_embedding(manifold.F)


def test_floor_likelihood_is_a_gaussian_density(setup):
    manifold, frame = setup
    x = np.random.default_rng(0).standard_normal((5, 6))
    cov_t = np.array([[2.0, 0.3], [0.3, 0.5]])
    floor = 0.1
    full = frame.tangent_basis @ cov_t @ frame.tangent_basis.T + floor * frame.normal_basis @ frame.normal_basis.T
    ref = multivariate_normal(np.zeros(6), full).logpdf(x)
    np.testing.assert_allclose(floor_log_likelihood(x, frame, cov_t, floor), ref, rtol=1e-10)
    # diagonal form
    np.testing.assert_allclose(
        floor_log_likelihood(x, frame, [2.0, 0.5], floor),
        floor_log_likelihood(x, frame, np.diag([2.0, 0.5]), floor),
    )


def test_floor_likelihood_diverges_on_the_manifold_for_any_tangent_density(setup):
    manifold, frame = setup
    x = manifold.sample(500, seed=1)
    right, wrong = frame.variances, 4.0 * frame.variances
    ll = {
        f: (floor_log_likelihood(x, frame, right, f).mean(), floor_log_likelihood(x, frame, wrong, f).mean())
        for f in (1e-4, 1e-6)
    }
    n_normal = frame.d - frame.m
    assert ll[1e-4][0] > ll[1e-4][1]  # at equal floor the right tangent density wins ...
    assert ll[1e-6][1] > ll[1e-4][0]  # ... but a smaller floor beats it with the wrong one
    gain = ll[1e-6][0] - ll[1e-4][0]
    assert gain == pytest.approx(n_normal / 2 * math.log(100), rel=1e-9)


def test_floor_likelihood_bad_input(setup):
    manifold, frame = setup
    x = manifold.sample(3, seed=1)
    with pytest.raises(ValueError, match="floor"):
        floor_log_likelihood(x, frame, frame.variances, 0.0)
    with pytest.raises(ValueError, match="tangent_covariance"):
        floor_log_likelihood(x, frame, np.ones(3), 0.1)
    with pytest.raises(ValueError, match="positive definite"):
        floor_log_likelihood(x, frame, -np.eye(2), 0.1)
    with pytest.raises(ValueError, match="frame"):
        floor_log_likelihood(x, "frame", np.ones(2), 0.1)


def test_flow_is_invertible_with_exact_log_det():
    torch.manual_seed(0)
    flow = CouplingFlow(d=5, n_layers=3, hidden=16, seed=1)
    for layer in flow.layers:  # move away from the identity initialisation
        torch.nn.init.normal_(layer.net[-1].weight, std=0.1)
    x = torch.randn(4, 5, dtype=torch.float32)
    z, log_det = flow(x)
    torch.testing.assert_close(flow.inverse(z), x, atol=1e-5, rtol=1e-5)
    jac = torch.func.jacrev(lambda v: flow(v[None])[0][0])(x[0])
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(jac)[1], atol=1e-4, rtol=1e-4)
    ref = -0.5 * (z**2).sum(-1) - 2.5 * math.log(2 * math.pi) + log_det
    torch.testing.assert_close(flow.log_prob(x), ref)


def test_fresh_flow_is_a_standard_normal():
    flow = CouplingFlow(d=3, n_layers=2, hidden=8)
    x = torch.randn(10, 3)
    torch.testing.assert_close(flow.log_prob(x), -0.5 * (x**2).sum(-1) - 1.5 * math.log(2 * math.pi))
    assert flow.sample(7, torch.Generator().manual_seed(0)).shape == (7, 3)


def test_train_flow_fits_a_gaussian():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((2000, 2)) * [2.0, 0.5] + [1.0, -1.0]
    res = train_flow(data, n_layers=2, hidden=16, steps=600, lr=5e-3, record_every=200, seed=0)
    assert res.steps.tolist() == [200, 400, 600]
    true_ll = -np.log(2 * np.pi * 2.0 * 0.5) - 1.0  # entropy of the Gaussian, per point
    assert res.log_likelihood[-1] == pytest.approx(true_ll, abs=0.1)
    samples = res.flow.sample(4000, torch.Generator().manual_seed(1)).numpy()
    np.testing.assert_allclose(samples.mean(0), [1.0, -1.0], atol=0.15)
    np.testing.assert_allclose(samples.std(0), [2.0, 0.5], rtol=0.15)
    assert res.skipped == 0 and res.losses.shape == (600,)


def test_train_flow_on_a_manifold_keeps_raising_the_likelihood_callback_and_noise():
    manifold = LinearManifold(d=4, block_dims=(1,), scales=(1.0,), seed=0)
    data = manifold.sample(500, seed=1)
    seen = []
    res = train_flow(
        data,
        n_layers=2,
        hidden=16,
        steps=400,
        lr=5e-3,
        record_every=100,
        callback=lambda flow, step: seen.append(step) or step,
        seed=0,
    )
    assert seen == [100, 200, 300, 400] and res.records == seen
    assert res.log_likelihood[-1] > res.log_likelihood[0] + 1.0
    noisy = train_flow(data, n_layers=2, hidden=16, steps=400, lr=5e-3, record_every=400, noise_std=0.3, seed=0)
    # thickened data: the likelihood of the clean data is bounded by the noise, below the clean flow's
    assert noisy.log_likelihood[-1] < res.log_likelihood[-1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"max_grad_norm": float("inf")}, "max_grad_norm"),
        ({"n_layers": 1}, "n_layers"),
    ],
)
def test_train_flow_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_flow(np.zeros((10, 3)), **kwargs)
    with pytest.raises(ValueError, match="data"):
        train_flow(np.zeros(10))
    with pytest.raises(ValueError, match="data"):
        train_flow(np.full((10, 3), np.nan))


def test_flow_bad_input():
    with pytest.raises(ValueError, match="d must"):
        CouplingFlow(d=1)
    with pytest.raises(ValueError, match="seed"):
        CouplingFlow(d=3, seed=-1)
    with pytest.raises(ValueError, match="n must"):
        CouplingFlow(d=3).sample(0)
