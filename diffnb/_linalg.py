"""Eigenvalues of Gram matrices: the one dense kernel behind the closed-form spectra and singular values."""

from __future__ import annotations

import numpy as np
import torch


def gram_eigvalsh(A: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the Gram matrix of ``A`` on its smaller side, ascending and clipped at 0.

    For ``A`` of shape ``(..., m, n)`` these are the ``min(m, n)`` eigenvalues of ``A^T A`` (``m >= n``) or of
    ``A A^T`` (``m < n``): the squared singular values of ``A``, and the non-zero eigenvalues of both Gram
    matrices. On the CPU a single matrix takes a symmetric rank-k update (half the flops of a matrix
    product) and a batch takes NumPy's batched products, both in BLAS; a tensor that requires grad or lives
    on another device stays in torch. The result has the dtype and device of ``A``.
    """
    m, n = A.shape[-2], A.shape[-1]
    on_cpu = A.device.type == "cpu" and not A.requires_grad and A.dtype in (torch.float64, torch.float32)
    if on_cpu and A.ndim == 2:
        from scipy.linalg import blas

        syrk = blas.dsyrk if A.dtype == torch.float64 else blas.ssyrk
        a = A.numpy()
        # A^T (Fortran-ordered for a C-ordered A) is read in place: trans=0 gives A^T A, trans=1 gives A A^T
        upper = syrk(1.0, a.T, trans=0 if m >= n else 1, lower=0)
        lam = torch.linalg.eigvalsh(torch.from_numpy(upper), UPLO="U")
    elif on_cpu:
        a = A.numpy()
        lam = torch.from_numpy(np.linalg.eigvalsh(a.swapaxes(-1, -2) @ a if m >= n else a @ a.swapaxes(-1, -2)))
    else:
        lam = torch.linalg.eigvalsh(A.mT @ A if m >= n else A @ A.mT)
    return lam.clamp_min(0.0)
