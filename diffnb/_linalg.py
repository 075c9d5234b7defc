"""Dense kernels behind the closed-form spectra: products and Gram-matrix eigenvalues, on the faster BLAS.

On a CPU these go through NumPy's and SciPy's BLAS and LAPACK (OpenBLAS) rather than the MKL inside torch's
CPU wheel: on the AMD EPYC the book is measured on, with one thread each, NumPy's float64 products are
1.1-2.3x faster for the shapes of the empirical score and a 784-size symmetric eigensolve 1.5x faster
(``benchmarks/blas.py``). Tensors that need a gradient or live on another device stay in torch.
"""

from __future__ import annotations

import numpy as np
import torch


def _numpy_ready(*tensors: torch.Tensor) -> bool:
    """Whether the tensors can be handed to NumPy without a copy: CPU, float32 or float64 alike, no grad."""
    first = tensors[0]
    return all(
        T.device.type == "cpu" and not T.requires_grad and T.dtype == first.dtype for T in tensors
    ) and first.dtype in (torch.float64, torch.float32)


def matmul(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``A @ B`` for 2-D tensors, through NumPy's BLAS on the CPU (transposed views are read in place).

    The result has the dtype and device of ``A``; it is a new tensor, never a view of ``A`` or ``B``.
    """
    if _numpy_ready(A, B):
        return torch.from_numpy(np.matmul(A.numpy(), B.numpy()))
    return A @ B


def gram_eigvalsh(A: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the Gram matrix of ``A`` on its smaller side, ascending and clipped at 0.

    For ``A`` of shape ``(..., m, n)`` these are the ``min(m, n)`` eigenvalues of ``A^T A`` (``m >= n``) or of
    ``A A^T`` (``m < n``): the squared singular values of ``A``, and the non-zero eigenvalues of both Gram
    matrices. On the CPU a single matrix takes a symmetric rank-k update (half the flops of a matrix
    product) and a batch takes NumPy's batched products, both in BLAS, and the eigenvalues come from NumPy's
    LAPACK; a tensor that requires grad or lives on another device stays in torch. The result has the dtype
    and device of ``A``.
    """
    m, n = A.shape[-2], A.shape[-1]
    on_cpu = _numpy_ready(A)
    if on_cpu and A.ndim == 2:
        from scipy.linalg import blas

        syrk = blas.dsyrk if A.dtype == torch.float64 else blas.ssyrk
        a = A.numpy()
        # A^T (Fortran-ordered for a C-ordered A) is read in place: trans=0 gives A^T A, trans=1 gives A A^T
        upper = syrk(1.0, a.T, trans=0 if m >= n else 1, lower=0)
        lam = torch.from_numpy(np.linalg.eigvalsh(upper, UPLO="U"))
    elif on_cpu:
        a = A.numpy()
        lam = torch.from_numpy(np.linalg.eigvalsh(a.swapaxes(-1, -2) @ a if m >= n else a @ a.swapaxes(-1, -2)))
    else:
        lam = torch.linalg.eigvalsh(A.mT @ A if m >= n else A @ A.mT)
    return lam.clamp_min(0.0)
