"""diffnb._linalg.gram_eigvalsh: every route gives the squared singular values."""

import pytest
import torch

from diffnb._linalg import gram_eigvalsh
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
