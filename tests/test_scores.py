import numpy as np
import pytest
import torch

from diffnb import scores
from diffnb.data import LinearManifold
from diffnb.jacobian import score_jacobian


@pytest.fixture(scope="module")
def setup():
    man = LinearManifold(d=12, block_dims=(3, 2), scales=(1.0, 0.3), seed=0)
    data = man.sample(300, seed=1)
    x = man.sample(6, seed=2) + 0.2 * np.random.default_rng(3).standard_normal((6, 12))
    return man, data, x


def _reference_weights(x, data, t):
    d2 = ((x[:, None, :] - data[None]) ** 2).sum(-1)
    logits = -d2 / (2 * t)
    logits -= logits.max(axis=1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("t", [3.0, 0.05, 1e-4])
def test_weights_and_score_match_reference(setup, t):
    _, data, x = setup
    w = scores.posterior_weights(x, data, t)
    np.testing.assert_allclose(w, _reference_weights(x, data, t), atol=1e-12)
    s = scores.empirical_score(x, data, t)
    np.testing.assert_allclose(s, (w @ data - x) / t, rtol=1e-10, atol=1e-10)


def test_no_nan_at_extreme_noise(setup):
    _, data, x = setup
    for t in (1e-12, 1e12):
        assert np.all(np.isfinite(scores.empirical_score(x, data, t)))
        assert np.all(np.isfinite(scores.empirical_jacobian_eigvals(x, data, t)))
        assert np.all(np.isfinite(scores.participation_ratio(x, data, t)))
    np.testing.assert_allclose(scores.participation_ratio(x, data, 1e12), len(data), rtol=1e-6)
    np.testing.assert_allclose(scores.participation_ratio(x, data, 1e-12), 1.0)


def test_score_matches_autograd_of_log_density(setup):
    _, data, x = setup
    t = 0.3
    X = torch.from_numpy(x).requires_grad_(True)
    Y = torch.from_numpy(data)
    log_p = torch.logsumexp(-((X[:, None] - Y[None]) ** 2).sum(-1) / (2 * t), dim=1).sum()
    (grad,) = torch.autograd.grad(log_p, X)
    np.testing.assert_allclose(scores.empirical_score(x, data, t), grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("t", [5.0, 0.1, 2e-3])
def test_closed_form_jacobian_equals_autograd(setup, t):
    _, data, x = setup
    closed = scores.empirical_score_jacobian(x, data, t)
    auto = score_jacobian(scores.make_empirical_score(data), torch.from_numpy(x), t).numpy()
    rel = np.linalg.norm(closed - auto, axis=(1, 2)) / np.linalg.norm(auto, axis=(1, 2))
    assert rel.max() < 1e-10
    np.testing.assert_allclose(closed, np.swapaxes(closed, 1, 2))


@pytest.mark.parametrize("t", [10.0, 0.1, 1e-3])
def test_fast_eigenvalues_equal_dense(setup, t):
    _, data, x = setup
    fast = scores.empirical_jacobian_eigvals(x, data, t)
    dense = np.linalg.eigvalsh(scores.empirical_score_jacobian(x, data, t))
    np.testing.assert_allclose(fast, dense, rtol=1e-9, atol=1e-9 * np.abs(dense).max())
    assert np.all(np.diff(fast, axis=1) >= -1e-12)
    normalized = scores.empirical_jacobian_eigvals(x, data, t, normalized=True)
    np.testing.assert_allclose(normalized, fast * t, rtol=1e-12, atol=1e-12)


def test_gram_path_used_when_few_points(setup):
    man, _, x = setup
    few = man.sample(5, seed=9)  # P < d: Gram matrix path
    fast = scores.empirical_jacobian_eigvals(x, few, 0.5, weight_tol=0)
    dense = np.linalg.eigvalsh(scores.empirical_score_jacobian(x, few, 0.5))
    np.testing.assert_allclose(fast, dense, atol=1e-10)


def test_weighted_covariance_definition(setup):
    _, data, x = setup
    t = 0.2
    w = scores.posterior_weights(x[0], data, t)
    mean = w @ data
    expected = (w[:, None] * (data - mean)).T @ (data - mean)
    np.testing.assert_allclose(scores.posterior_covariance(x[0], data, t), expected, atol=1e-12)


def test_tensor_in_tensor_out(setup):
    _, data, x = setup
    out = scores.empirical_score(torch.from_numpy(x), torch.from_numpy(data), 0.1)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    single = scores.empirical_score(x[0], data, 0.1)
    assert single.shape == (12,)
    per_point = scores.empirical_score(x, data, np.full(6, 0.1))
    np.testing.assert_allclose(per_point, scores.empirical_score(x, data, 0.1))


def test_linear_score_and_jacobian(setup):
    man, _, x = setup
    C = man.covariance
    for t in (2.0, 1e-3):
        np.testing.assert_allclose(scores.linear_score(x, man.F, t), -np.linalg.solve(C + t * np.eye(12), x.T).T)
        J = scores.linear_score_jacobian(man.F, t)
        lam = np.linalg.eigvalsh(C)
        np.testing.assert_allclose(np.linalg.eigvalsh(J), np.sort(-1 / (lam + t)), rtol=1e-10)
        auto = score_jacobian(scores.make_linear_score(man.F), torch.from_numpy(x), t).numpy()
        np.testing.assert_allclose(auto, np.broadcast_to(J, auto.shape), rtol=1e-10, atol=1e-12)


def test_linear_score_is_empirical_limit():
    # Many samples of a Gaussian: the empirical score at large t approaches the Gaussian score.
    man = LinearManifold(d=3, block_dims=(2,), scales=(1.0,), seed=0)
    data = man.sample(200_000, seed=1)
    x = np.array([[0.3, -0.2, 0.1]])
    np.testing.assert_allclose(scores.empirical_score(x, data, 4.0), scores.linear_score(x, man.F, 4.0), atol=5e-3)


@pytest.mark.parametrize("t", [0.0, -1.0, np.nan, np.inf])
def test_bad_time(setup, t):
    _, data, x = setup
    with pytest.raises(ValueError, match="t must"):
        scores.empirical_score(x, data, t)
    with pytest.raises(ValueError, match="t must"):
        scores.linear_score_jacobian(setup[0].F, t)


def test_bad_time_shape(setup):
    _, data, x = setup
    with pytest.raises(ValueError, match="one per point"):
        scores.empirical_score(x, data, np.ones(4))


def test_bad_shapes_and_values(setup):
    _, data, x = setup
    with pytest.raises(ValueError, match="features"):
        scores.empirical_score(x[:, :5], data, 1.0)
    with pytest.raises(ValueError, match="data must have shape"):
        scores.empirical_score(x, data[0], 1.0)
    with pytest.raises(ValueError, match="data is empty"):
        scores.empirical_score(x, data[:0], 1.0)
    bad = data.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="data holds NaN"):
        scores.empirical_score(x, bad, 1.0)
    with pytest.raises(ValueError, match="x holds NaN"):
        scores.empirical_score(np.full_like(x, np.inf), data, 1.0)
    with pytest.raises(ValueError, match="x must have shape"):
        scores.empirical_score(x[None], data, 1.0)
    with pytest.raises(TypeError, match="numbers"):
        scores.empirical_score(np.array(["a"] * 12), data, 1.0)
    with pytest.raises(ValueError, match="weight_tol"):
        scores.empirical_jacobian_eigvals(x, data, 1.0, weight_tol=-1)


def test_mixed_dtypes_and_devices(setup):
    _, data, x = setup
    with pytest.raises(TypeError, match="dtype"):
        scores.empirical_score(torch.from_numpy(x).float(), torch.from_numpy(data), 1.0)
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        with pytest.raises(ValueError, match="device"):
            scores.empirical_score(torch.from_numpy(x).cuda(), torch.from_numpy(data), 1.0)


def test_prepared_data_gives_the_same_results(setup):
    _, data, x = setup
    prepared = scores.prepare_data(data)
    assert prepared.shape == data.shape
    assert scores.prepare_data(prepared) is prepared
    for t in (2.0, 1e-3):
        np.testing.assert_array_equal(scores.posterior_weights(x, prepared, t), scores.posterior_weights(x, data, t))
        np.testing.assert_array_equal(scores.empirical_score(x, prepared, t), scores.empirical_score(x, data, t))
        np.testing.assert_array_equal(
            scores.empirical_jacobian_eigvals(x, prepared, t), scores.empirical_jacobian_eigvals(x, data, t)
        )
        np.testing.assert_array_equal(
            scores.empirical_score_jacobian(x, prepared, t), scores.empirical_score_jacobian(x, data, t)
        )
    # tensors in, tensors out, on the prepared data's dtype
    X = torch.from_numpy(x)
    out = scores.empirical_score(X, prepared, 0.5)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    fn = scores.make_empirical_score(prepared)
    torch.testing.assert_close(fn(X, torch.full((len(x),), 0.5, dtype=torch.float64)), out)


def test_prepare_data_checks_once_and_clearly():
    with pytest.raises(ValueError, match="data must have shape"):
        scores.prepare_data(np.ones(5))
    with pytest.raises(ValueError, match="data holds NaN"):
        scores.prepare_data(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="data is empty"):
        scores.prepare_data(np.ones((0, 3)))
    with pytest.raises(TypeError, match="make it with prepare_data"):
        scores.PreparedData(np.ones((4, 3)), np.ones(4))
    with pytest.raises(ValueError, match="squared_norms of shape"):
        scores.PreparedData(torch.ones(4, 3), torch.ones(3))
    prepared = scores.prepare_data(np.ones((4, 3)))
    assert prepared != scores.prepare_data(np.ones((4, 3)))  # identity, not an ambiguous tensor comparison
    with pytest.raises(ValueError, match="x"):
        scores.empirical_score(np.ones((2, 5)), prepared, 0.1)  # wrong dimension
    with pytest.raises(TypeError, match="x has dtype torch.float32 but data has dtype torch.float64"):
        scores.empirical_score(torch.ones(2, 3, dtype=torch.float32), prepared, 0.1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_weights_below_the_normal_range_are_zero_and_the_rest_exact(dtype):
    # one point at the origin, data along a line: log-weights -y^2 / (2t) span thousands below the largest
    P = 4
    tiny = torch.finfo(dtype).tiny
    cut = np.log(tiny) + 1.0 + np.log(P)  # log of the smallest weight kept, before normalisation
    offsets = np.array([0.0, -10.0, cut + 1.0, cut - 0.5])  # wanted log-weights relative to the largest
    t = 1e-3
    Y = torch.tensor(np.sqrt(-2 * t * offsets)[:, None], dtype=dtype)
    X = torch.zeros(1, 1, dtype=dtype)
    w = scores._posterior_weights(X, Y, (Y * Y).sum(1), torch.full((1,), t, dtype=dtype))[0]
    log_w = torch.tensor(offsets, dtype=torch.float64)
    expected = (log_w - torch.logsumexp(log_w[:3], 0)).exp()
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(w[:2].double(), expected[:2], rtol=rtol, atol=0)
    assert 0 < w[2] and w[3] == 0 and bool(torch.isfinite(w).all())
    assert torch.finfo(dtype).tiny <= float(w[2]) < 1e3 * float(expected[2])  # kept, and never subnormal
    wide = scores._posterior_weights(X, Y * 100, (Y * Y).sum(1) * 1e4, torch.full((1,), t, dtype=dtype))[0]
    assert float(wide[0]) == 1.0 and bool((wide[1:] == 0).all())  # far below the floor: exactly zero


@pytest.mark.parametrize("track", [False, True])
def test_weights_stay_finite_where_the_logits_overflow(track):
    # (x.y - |y|^2/2) / t exceeds the float64 range here: the nearest training point takes all the weight
    data = 100 * np.random.default_rng(0).standard_normal((50, 5))
    X = torch.tensor(data[:3] + 1e-3, requires_grad=track)
    for t in (1e-305, 1e-307):
        w = scores.posterior_weights(X, torch.from_numpy(data), t).detach()
        torch.testing.assert_close(w, torch.eye(50, dtype=torch.float64)[:3])
        assert np.isfinite(scores.empirical_jacobian_eigvals(data[:3] + 1e-3, data, t)).all()
        score_fn = scores.make_empirical_score(data)
        score = score_fn(torch.from_numpy(data[:3]), torch.tensor(t, dtype=torch.float64))
        torch.testing.assert_close(score, torch.zeros(3, 5, dtype=torch.float64))  # at a training point


def test_half_precision_weights_are_a_plain_softmax():
    # float16's smallest normal number (6e-5) leaves no room for the cut of float32 and float64
    Y = torch.zeros(7000, 1, dtype=torch.float16)
    Y[1] = 1.0
    w = scores.posterior_weights(torch.zeros(1, 1, dtype=torch.float16), Y, 0.35)[0]
    expected = torch.softmax(-0.5 * (Y[:, 0].float() ** 2) / 0.35, dim=0)
    torch.testing.assert_close(w.float(), expected, rtol=2e-2, atol=1e-6)


def test_covariances_of_many_points_share_one_buffer_correctly(setup):
    _, data, x = setup
    for t, tol in ((0.2, 0.0), (2e-3, 1e-16)):  # every point kept; a few kept, a different number per point
        covs = scores.posterior_covariance(x, data, t, weight_tol=tol)
        for cov, point in zip(covs, x, strict=True):
            w = scores.posterior_weights(point, data, t)
            mean = w @ data
            np.testing.assert_allclose(cov, (w[:, None] * (data - mean)).T @ (data - mean), atol=1e-12)


def test_weights_and_score_carry_gradients_for_tracked_tensors(setup):
    _, data, x = setup
    X = torch.from_numpy(x).requires_grad_(True)
    Y = torch.from_numpy(data)
    (scores.posterior_weights(X, Y, 0.3)[:, :5].sum() + scores.empirical_score(X, Y, 0.3).sum()).backward()
    Xr = X.detach().clone().requires_grad_(True)
    w = torch.softmax(-((Xr[:, None] - Y[None]) ** 2).sum(-1) / 0.6, dim=1)
    (w[:, :5].sum() + ((w @ Y - Xr) / 0.3).sum()).backward()
    torch.testing.assert_close(X.grad, Xr.grad, rtol=1e-10, atol=1e-12)


def test_linear_score_float32_keeps_normal_directions_at_small_noise():
    # FF^T has d - m zero eigenvalues; an eigendecomposition in float32 puts them near 1e-7, which swamps
    # t = 1e-6 (relative error about 0.07 in the Jacobian and the score). The singular vectors of F give the
    # normal directions exactly 1/t; applying the tangent and normal parts apart keeps the tangent part
    # accurate too (written as I/t minus a correction, it cancels two terms of size 1/t: error 0.19 there).
    man = LinearManifold(d=100, block_dims=(20, 20), scales=(1.0, 0.3), seed=0)
    F64 = torch.as_tensor(man.F)
    U = torch.linalg.svd(F64, full_matrices=False)[0]
    x0 = torch.as_tensor(man.sample(8, seed=1))
    gen = torch.Generator().manual_seed(0)
    for t in (1e-2, 1e-6):
        J64 = scores.linear_score_jacobian(F64, t)
        J32 = scores.linear_score_jacobian(F64.float(), t)
        assert ((J32.double() - J64).norm() / J64.norm()).item() < 1e-5
        x64 = x0 + t**0.5 * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        s64 = scores.linear_score(x64, F64, t)
        err = scores.linear_score(x64.float(), F64.float(), t).double() - s64
        assert (err.norm() / s64.norm()).item() < 1e-3
        assert ((err @ U).norm() / (s64 @ U).norm()).item() < 1e-3  # the tangent part alone
    assert torch.isfinite(scores.linear_score_jacobian(F64.float(), 1e6)).all()
    # rank-deficient and wide embeddings: the same as a dense inverse
    for F in (torch.cat([F64[:, :5], F64[:, :5]], dim=1), torch.randn(6, 9, dtype=torch.float64)):
        dense = -torch.linalg.inv(F @ F.T + 0.1 * torch.eye(F.shape[0], dtype=torch.float64))
        torch.testing.assert_close(scores.linear_score_jacobian(F, 0.1), dense)


@pytest.mark.parametrize("make", ["empirical", "linear"])
def test_score_functions_check_their_calls(setup, make):
    man, data, x = setup
    fn = scores.make_empirical_score(data) if make == "empirical" else scores.make_linear_score(man.F)
    X = torch.from_numpy(x)
    with pytest.raises(ValueError, match="t must be a positive"):
        fn(X, -0.5)
    with pytest.raises(ValueError, match="t must be a positive"):
        fn(X, 0.0)
    with pytest.raises(TypeError, match="x has dtype torch.float32 but (the data|F) has dtype"):
        fn(X.float(), 0.1)
    with pytest.raises(ValueError, match="x must have shape"):
        fn(X[:, :5], 0.1)
    with pytest.raises(ValueError, match="x must have shape"):
        fn(X[0], 0.1)  # one point without its batch axis
    for bad in (True, np.array([0.1, -1.0])):
        with pytest.raises(ValueError, match="t must be a positive"):
            fn(X[:2], bad)
    torch.testing.assert_close(fn(X, 0.1), fn(X, torch.tensor(0.1, dtype=torch.float64)))
