"""diffnb._linalg: every route of the products and Gram eigenvalues gives the same numbers as torch."""

import numpy as np
import pytest
import torch

from diffnb import _linalg
from diffnb._linalg import gram_eigvalsh, matmul
from diffnb.jacobian import random_orthogonal


@pytest.mark.parametrize("shape", [(40, 7), (7, 40), (3, 40, 7), (3, 7, 40)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("tracked", [False, True])
def test_routes_agree_with_the_svd(shape, dtype, tracked):
    A = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.linalg.svdvals(A).flip(-1) ** 2  # ascending
    A = A.to(dtype).requires_grad_(tracked)  # a tracked tensor takes the torch route
    lam = gram_eigvalsh(A)
    assert lam.dtype == dtype and lam.shape == expected.shape and bool((lam >= 0).all())
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(lam.detach().double(), expected, rtol=tol, atol=tol * float(expected.max()))


def test_zero_eigenvalues_are_clipped_not_negative():
    A = torch.ones(50, 6, dtype=torch.float64)  # rank one: five zero eigenvalues
    lam = gram_eigvalsh(A)
    assert bool((lam >= 0).all()) and lam[-1] == pytest.approx(300.0)


def test_random_orthogonal_batches():
    Q = random_orthogonal(5, 4, generator=torch.Generator().manual_seed(1))
    assert Q.shape == (4, 5, 5)
    torch.testing.assert_close(Q @ Q.mT, torch.eye(5, dtype=torch.float64).expand(4, 5, 5))
    assert random_orthogonal(5).shape == (5, 5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matmul_reads_transposed_views_and_matches_torch(dtype):
    gen = torch.Generator().manual_seed(2)
    A = torch.randn(9, 5, generator=gen, dtype=dtype)
    Y = torch.randn(13, 5, generator=gen, dtype=dtype)
    out = matmul(A[2:], Y.T)  # a row slice and a transposed view, as the empirical score passes them
    assert out.dtype == dtype and out.shape == (7, 13)
    torch.testing.assert_close(out, A[2:] @ Y.T)
    out[0, 0] = 1e9  # a new tensor: writing to it leaves the inputs alone
    assert float(A.abs().max()) < 1e9 and float(Y.abs().max()) < 1e9


def test_matmul_keeps_gradients_and_mixed_dtypes_in_torch():
    A = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    B = torch.randn(3, 2, dtype=torch.float64)
    matmul(A, B).sum().backward()  # the NumPy route would have cut the graph
    torch.testing.assert_close(A.grad, B.sum(1).expand(4, 3))
    with pytest.raises(RuntimeError):  # torch's own message for mismatched dtypes, not a silent cast
        matmul(torch.ones(2, 2, dtype=torch.float64), torch.ones(2, 2, dtype=torch.float32))


@pytest.fixture
def two_threads(monkeypatch):
    """torch on two threads, and every batch large enough to be split."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(_linalg, "_PARALLEL_WORK", 0)
    yield
    torch.set_num_threads(before)


def test_a_batch_is_split_in_order_across_the_threads(two_threads):
    seen = []

    def record(part):
        seen.append(part[:, 0, 0].tolist())
        return part[:, 0, :1] * 2

    stack = np.arange(5 * 3 * 3, dtype=float).reshape(5, 3, 3)
    out = _linalg._map_batch(record, stack, 3)
    assert sorted(len(rows) for rows in seen) == [2, 3]  # two slices, every matrix once
    np.testing.assert_array_equal(out[:, 0], 2 * stack[:, 0, 0])  # results in the order of the batch


@pytest.mark.parametrize("shape", [(9, 12, 12), (2, 3, 12, 12)])
def test_batched_eigvalsh_matches_torch_serial_and_split(shape, two_threads):
    A = torch.randn(*shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    S = A + A.mT
    expected = torch.linalg.eigvalsh(S)
    torch.testing.assert_close(_linalg.eigvalsh(S), expected, rtol=1e-12, atol=1e-12)
    torch.set_num_threads(1)
    torch.testing.assert_close(_linalg.eigvalsh(S), expected, rtol=1e-12, atol=1e-12)


def test_split_gram_eigenvalues_match_the_svd(two_threads):
    A = torch.randn(7, 20, 9, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(gram_eigvalsh(A), torch.linalg.svdvals(A).flip(-1) ** 2, rtol=1e-11, atol=1e-11)


def test_eigvalsh_keeps_gradients_in_torch():
    S = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1).requires_grad_(True)
    _linalg.eigvalsh(S).sum().backward()  # the trace's gradient: the identity
    torch.testing.assert_close(S.grad, torch.eye(3, dtype=torch.float64).expand(2, 3, 3))


@pytest.mark.parametrize("shape", [(6, 9, 5), (2, 3, 5, 9), (9, 5)])
def test_svdvals_match_torch_serial_and_split(shape, two_threads):
    M = torch.randn(*shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    expected = torch.linalg.svdvals(M)
    torch.testing.assert_close(_linalg.svdvals(M), expected, rtol=1e-12, atol=1e-12)
    torch.set_num_threads(1)
    torch.testing.assert_close(_linalg.svdvals(M), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 0, 4), (3, 4, 0), (0, 4, 4), (2, 0, 3, 3)])
def test_empty_matrices_and_batches_give_empty_results_like_torch(shape):
    A = torch.zeros(shape, dtype=torch.float64)
    k = min(shape[-2:])
    assert gram_eigvalsh(A).shape == (*shape[:-2], k)
    assert _linalg.svdvals(A).shape == torch.linalg.svdvals(A).shape
    if shape[-1] == shape[-2]:
        assert _linalg.eigvalsh(A).shape == torch.linalg.eigvalsh(A).shape
