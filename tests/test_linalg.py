"""diffnb._linalg: every route of the products and Gram eigenvalues gives the same numbers as torch."""

import pytest
import torch

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
