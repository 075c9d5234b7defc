import numpy as np
import pytest
import torch

from diffnb import scores
from diffnb.data import LinearManifold
from diffnb.sampling import noise_grid, sample


@pytest.fixture(scope="module")
def gaussian():
    # Target N(0, C) with a full-rank covariance: the exact linear score with m = d.
    man = LinearManifold(d=4, block_dims=(4,), scales=(1.5,), seed=0)
    return man, scores.make_linear_score(man.F)


def _start(man, n, t_max, seed=0):
    """Exact samples of the noised target N(0, C + t_max I), and a generator for the sampler."""
    rng = np.random.default_rng(seed)
    x = man.sample(n, seed=rng) + np.sqrt(t_max) * rng.standard_normal((n, man.d))
    return torch.from_numpy(x), torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("method", ["sde", "ode"])
def test_gaussian_target_moments(gaussian, method):
    man, score_fn = gaussian
    C = man.covariance
    n, t_max = 20_000, 100.0
    x0, gen = _start(man, n, t_max)
    grid = noise_grid(t_max, 1e-4, 200)
    out = sample(score_fn, x0, grid, method=method, generator=gen, progress=False).samples.numpy()
    cov = np.cov(out.T)
    # statistical tolerance: about 5 standard errors of the sample covariance with n = 20000
    tol = 5 * np.sqrt(2 / n) * np.abs(C).max() + 0.03 * np.abs(C).max()
    assert np.abs(out.mean(0)).max() < 5 * np.sqrt(C.diagonal().max() / n) + 0.02
    assert np.abs(cov - C).max() < tol


def test_vp_parametrization_matches_ve(gaussian):
    _, score_fn = gaussian

    def vp_score(x_vp, alpha_bar):
        root = alpha_bar.sqrt()[:, None]
        return score_fn(x_vp / root, (1 - alpha_bar) / alpha_bar) / root

    grid = noise_grid(50.0, 1e-3, 50)
    x_ve = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 7
    ve = sample(score_fn, x_ve, grid, method="ode", progress=False).samples
    x_vp = x_ve / (1 + grid[0]) ** 0.5
    vp = sample(vp_score, x_vp, grid, method="ode", parametrization="vp", progress=False).samples
    torch.testing.assert_close(vp * (1 + grid[-1]) ** 0.5, ve)


def test_recording(gaussian):
    _, score_fn = gaussian
    grid = noise_grid(10.0, 0.01, 30)
    res = sample(score_fn, torch.zeros(3, 4, dtype=torch.float64), grid, record=[10.0, 1.0, 0.01], progress=False)
    assert res.trajectory.shape == (3, 3, 4)
    np.testing.assert_allclose(res.recorded_times[[0, -1]], [10.0, 0.01])
    torch.testing.assert_close(res.trajectory[-1], res.samples)


def test_bad_input(gaussian):
    _, score_fn = gaussian
    x = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="decrease"):
        sample(score_fn, x, [0.1, 1.0], progress=False)
    with pytest.raises(ValueError, match="method"):
        sample(score_fn, x, [1.0, 0.1], method="leapfrog", progress=False)
    with pytest.raises(ValueError, match="parametrization"):
        sample(score_fn, x, [1.0, 0.1], parametrization="edm", progress=False)
    with pytest.raises(ValueError, match="x_init"):
        sample(score_fn, x[0], [1.0, 0.1], progress=False)
    with pytest.raises(ValueError, match="t_min"):
        noise_grid(0.1, 1.0, 10)
    with pytest.raises(ValueError, match="positive"):
        sample(score_fn, x, [1.0, -0.1], progress=False)


@pytest.mark.parametrize("record", [[-1.0, 0.5], [0.0], [np.nan], [[1.0, 0.5]], []])
def test_record_levels_must_be_positive(gaussian, record):
    _, score_fn = gaussian
    x = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="record must be"):
        sample(score_fn, x, [1.0, 0.1], record=record, progress=False)
