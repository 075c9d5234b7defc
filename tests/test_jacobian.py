import numpy as np
import pytest
import torch

from diffnb import scores
from diffnb.data import LinearManifold
from diffnb.jacobian import (
    lanczos_singular_values,
    probe_singular_values,
    random_orthogonal,
    score_jacobian,
    singular_values,
)


@pytest.fixture(scope="module")
def problem():
    man = LinearManifold(d=10, block_dims=(3, 2), scales=(1.0, 0.3), seed=0)
    data = man.sample(200, seed=1)
    x = torch.from_numpy(man.sample(4, seed=2)) + 0.1
    return man, data, x


def test_methods_agree_on_empirical_score(problem):
    _, data, x = problem
    fn = scores.make_empirical_score(data)
    t = 0.2
    exact = torch.from_numpy(scores.empirical_score_jacobian(x.numpy(), data, t))
    auto = score_jacobian(fn, x, t)
    fwd = score_jacobian(fn, x, t, mode="fwd", batch_size=3)
    central = score_jacobian(fn, x, t, method="central")
    central_random = score_jacobian(fn, x, t, method="central", directions="random", seed=1)
    torch.testing.assert_close(auto, exact, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fwd, exact, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(central, exact, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(central_random, exact, rtol=1e-6, atol=1e-6)


def test_autograd_default_batch_scales_with_dimension(monkeypatch):
    # points per batch default to _AUTOGRAD_ROWS // d (at least 1): a fixed number of score rows per pullback
    from diffnb import jacobian

    monkeypatch.setattr(jacobian, "_AUTOGRAD_ROWS", 12)
    seen = []

    def score_fn(z, t):
        seen.append(z.shape[0])
        return -z / t[:, None]

    x = torch.randn(7, 5, dtype=torch.float64)
    J = score_jacobian(score_fn, x, 0.5)
    torch.testing.assert_close(J, -2.0 * torch.eye(5, dtype=torch.float64).expand(7, 5, 5))
    assert seen == [2, 2, 2, 1]  # 12 // 5 = 2 points per batch
    seen.clear()
    score_jacobian(score_fn, torch.randn(3, 20, dtype=torch.float64), 0.5)
    assert seen == [1, 1, 1]  # 12 // 20 = 0, raised to 1


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_chunked_autograd_matches(problem, mode):
    _, data, x = problem
    fn = scores.make_empirical_score(data)
    whole = score_jacobian(fn, x, 0.3, mode=mode)
    torch.testing.assert_close(score_jacobian(fn, x, 0.3, mode=mode, chunk_size=3, batch_size=3), whole)


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_autograd_handles_rows_independently(mode):
    """Points in one batch do not leak into each other's Jacobians, even with Python control flow."""
    A = torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)

    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = -x / t[:, None]
        if bool((x[:, 0] > 0).any()):  # data-dependent branch on the whole batch: not vmap-able point by point
            out = out + torch.where(x[:, :1] > 0, x @ A.T, torch.zeros_like(x))
        return out

    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.5, -0.5]], dtype=torch.float64)
    t = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    J = score_jacobian(score_fn, x, t, mode=mode, batch_size=2)  # the last batch holds one point
    eye = torch.eye(2, dtype=torch.float64)
    expected = torch.stack([-eye / 0.5 + A, -eye / 1.0, -eye / 2.0 + A])
    torch.testing.assert_close(J, expected)


def test_singular_values_through_float64_gram():
    gen = torch.Generator().manual_seed(0)
    M64 = torch.randn(5, 30, 30, generator=gen, dtype=torch.float64) @ torch.diag(
        torch.logspace(-4, 0, 30, dtype=torch.float64)
    )
    reference = torch.linalg.svdvals(M64)
    # float64: an SVD itself, to rounding of the largest value (NumPy's and torch's LAPACK differ in the last bits)
    assert float(((singular_values(M64) - reference).abs() / reference[:, :1]).max()) < 1e-13
    M32 = M64.float()
    from_gram = singular_values(M32)
    assert from_gram.dtype == torch.float64
    assert bool((from_gram[:, :-1] >= from_gram[:, 1:]).all())
    exact32 = torch.linalg.svdvals(M32.double())  # exact singular values of the float32 matrix
    assert float(((from_gram - exact32).abs() / exact32[:, :1]).max()) < 1e-9
    # and more accurate than a float32 SVD
    svd32 = torch.linalg.svdvals(M32).double()
    assert float((from_gram - exact32).abs().max()) < float((svd32 - exact32).abs().max())
    # rank-deficient: the zero singular values come out at float64's square root of the largest, no worse
    low_rank = (torch.randn(4, 60, 3, generator=gen) @ torch.randn(4, 3, 60, generator=gen)).float()
    exact_low = torch.linalg.svdvals(low_rank.double())
    err_gram = float(((singular_values(low_rank) - exact_low).abs() / exact_low[:, :1]).max())
    err_svd32 = float(((torch.linalg.svdvals(low_rank).double() - exact_low).abs() / exact_low[:, :1]).max())
    assert err_gram < 3e-8 and err_gram < err_svd32
    for shape in [(12, 5), (5, 12)]:
        R = torch.randn(*shape, generator=gen)
        torch.testing.assert_close(singular_values(R), torch.linalg.svdvals(R.double()), rtol=1e-6, atol=1e-6)
    # a tensor that requires grad takes the torch route (the one a GPU takes); it agrees with NumPy's
    tracked = M32.clone().requires_grad_(True)
    scale = float(from_gram.max())  # both are accurate to about 1e-9 of the largest value here (see above)
    torch.testing.assert_close(singular_values(tracked).detach(), from_gram, rtol=0, atol=2e-9 * scale)
    with pytest.raises(ValueError, match="M must have at least 2"):
        singular_values(torch.ones(3))
    with pytest.raises(ValueError, match="M holds NaN"):
        singular_values(torch.full((2, 3, 3), float("nan")))


def test_probe_is_exact_for_linear_score(problem):
    man, _, x = problem
    fn = scores.make_linear_score(man.F)
    t = 0.05
    J = scores.linear_score_jacobian(man.F, t)
    probe = score_jacobian(fn, x, t, method="probe", seed=3).numpy()
    np.testing.assert_allclose(probe, np.broadcast_to(J, probe.shape), atol=1e-10)
    sv = probe_singular_values(fn, x, t)
    exact = np.sort(t / (np.linalg.eigvalsh(man.covariance) + t))[::-1]
    np.testing.assert_allclose(sv.numpy(), np.broadcast_to(exact / exact[0], sv.shape), atol=1e-10)


def test_one_sided_probe_drops_the_score_direction(problem):
    man, _, x = problem
    sv = probe_singular_values(scores.make_linear_score(man.F), x, 0.05, symmetric=False)
    assert sv.shape == (4, 9)
    assert torch.all(sv <= 1 + 1e-12) and torch.allclose(sv[:, 0], torch.ones(4, dtype=sv.dtype))


def test_random_orthogonal_is_orthogonal():
    Q = random_orthogonal(7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(Q @ Q.T, torch.eye(7, dtype=Q.dtype))


def test_single_point_and_per_point_times(problem):
    _, data, x = problem
    fn = scores.make_empirical_score(data)
    one = score_jacobian(fn, x[0], 0.3)
    assert one.shape == (10, 10)
    times = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    per_point = score_jacobian(fn, x, times)
    torch.testing.assert_close(per_point[2], score_jacobian(fn, x[2], 0.3))


def test_bad_input(problem):
    _, data, x = problem
    fn = scores.make_empirical_score(data)
    with pytest.raises(ValueError, match="method"):
        score_jacobian(fn, x, 0.1, method="magic")
    with pytest.raises(TypeError, match="torch.Tensor"):
        score_jacobian(fn, x.numpy(), 0.1)
    with pytest.raises(ValueError, match="t must"):
        score_jacobian(fn, x, -0.1)
    with pytest.raises(ValueError, match="x holds NaN"):
        score_jacobian(fn, x * np.nan, 0.1)
    with pytest.raises(TypeError, match="unknown options"):
        score_jacobian(fn, x, 0.1, method="central", symmetric=False)
    with pytest.raises(ValueError, match="directions"):
        score_jacobian(fn, x, 0.1, method="probe", directions=torch.eye(3))
    with pytest.raises(ValueError, match="mode"):
        score_jacobian(fn, x, 0.1, mode="sideways")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            score_jacobian(fn, x, 0.1, batch_size=bad)
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            score_jacobian(fn, x, 0.1, chunk_size=bad)


@pytest.mark.parametrize(
    ("method", "option", "value"),
    [
        ("probe", "scale", 0.0),
        ("probe", "scale", -1.0),
        ("probe", "scale", float("nan")),
        ("probe", "scale", float("inf")),
        ("central", "rel_step", 0.0),
        ("central", "rel_step", "1e-4"),
    ],
)
def test_steps_must_be_positive_numbers(problem, method, option, value):
    _, data, x = problem
    fn = scores.make_empirical_score(data)
    with pytest.raises(ValueError, match=f"{option} must be a positive number"):
        score_jacobian(fn, x, 0.1, method=method, **{option: value})


def test_directions_must_be_orthogonal(problem):
    # J = M Q^T holds only for orthogonal Q: with ones + identity the central differences would be off by 8
    _, data, x = problem
    fn = scores.make_empirical_score(data)
    d = x.shape[1]
    bad = torch.ones(d, d, dtype=torch.float64) + torch.eye(d, dtype=torch.float64)
    with pytest.raises(ValueError, match="orthogonal"):
        score_jacobian(fn, x, 0.1, method="central", directions=bad)
    Q = torch.linalg.qr(bad)[0]
    exact = score_jacobian(fn, x, 0.1)
    torch.testing.assert_close(score_jacobian(fn, x, 0.1, method="central", directions=Q), exact, atol=1e-6, rtol=1e-6)


def _flag_recording_score(seen: list):
    """A linear score that records cuDNN's TF32 flag at every call."""

    def score(x, t):
        seen.append(torch.backends.cudnn.allow_tf32)
        return -x / (1 + t[:, None])

    return score


@pytest.mark.parametrize("matmul_tf32", [False, True])
def test_convolutions_use_tf32_only_where_matrix_products_do(matmul_tf32):
    # torch's default allows TF32 in cuDNN's convolutions alone; the spectra follow the matmul setting
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, matmul_tf32
    seen = []
    score = _flag_recording_score(seen)
    try:
        x = torch.randn(3, 4, dtype=torch.float64)
        score_jacobian(score, x, 0.5, method="central")
        lanczos_singular_values(score, x, 0.5, k=2, n_iter=3)
        assert seen and all(flag == matmul_tf32 for flag in seen)
        assert torch.backends.cudnn.allow_tf32  # restored
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def test_tf32_set_through_the_newer_precision_api():
    # torch refuses to read the older matmul flag once fp32_precision is set; the spectra must still run
    matmul = torch.backends.cuda.matmul
    previous = matmul.fp32_precision, torch.backends.cudnn.allow_tf32
    seen = []
    score = _flag_recording_score(seen)
    x = torch.randn(3, 4, dtype=torch.float64)
    try:
        for precision, expected in (("tf32", True), ("ieee", False)):
            matmul.fp32_precision = precision
            torch.backends.cudnn.allow_tf32 = True
            seen.clear()
            score_jacobian(score, x, 0.5, method="central")
            assert seen and all(flag == expected for flag in seen)
    finally:
        matmul.fp32_precision, torch.backends.cudnn.allow_tf32 = previous
