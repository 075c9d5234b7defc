"""Dense kernels behind the spectra: products and symmetric and Gram-matrix eigenvalues, on the faster BLAS.

On a CPU these go through NumPy's BLAS and LAPACK (OpenBLAS) rather than the MKL inside torch's CPU
wheel: on the AMD EPYC the book is measured on, with one thread each, NumPy's float64 products are up to
2.2x faster (the same speed with 16 rows) and a 784-size symmetric eigensolve 1.3-1.5x faster
(``benchmarks/blas.py``). Batches of small eigenproblems are split across threads, since LAPACK runs each
on one core. Empty tensors, tensors that need a gradient and tensors on another device stay in torch.

A product whose result goes on to torch's element-wise work stays in torch all the same (the posterior
weights, the posterior means and the second moments of the product-table route in :mod:`diffnb.scores`):
handing results from one library's thread pool to the other's makes each wait for the other's idle,
spinning threads, which on two cores costs more than the faster product saves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from threadpoolctl import threadpool_limits

#: a batch is split across threads only above this much work (batch size times n^3; 50 matrices of size 100,
#: about 18 ms of eigensolves, are 5e7): below it the thread start-up and the BLAS limit (about 1 ms) do not pay
_PARALLEL_WORK = 5e7
#: one split at a time: the BLAS thread limit is process-wide, and interleaved limits could be restored out of order
_SPLIT_LOCK = threading.Lock()


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
    matrices. On the CPU the Gram matrices come from NumPy's products (a symmetric rank-k update for a
    single matrix: half the flops of a general product) and the eigenvalues from NumPy's LAPACK, a large
    batch split across threads (:func:`_map_batch`); a tensor that requires grad or lives on another device
    stays in torch. The result has the dtype and device of ``A``.
    """
    m, n = A.shape[-2], A.shape[-1]
    if _numpy_ready(A) and A.numel() > 0:
        lam = _through_numpy(_numpy_gram_eigvalsh, A)
    else:
        lam = torch.linalg.eigvalsh(A.mT @ A if m >= n else A @ A.mT)
    return lam.clamp_min(0.0)


def eigvalsh(A: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of symmetric matrices ``(..., n, n)``, ascending, from their lower triangles.

    On the CPU through NumPy's LAPACK, a batch split across threads (:func:`_map_batch`).
    """
    if _numpy_ready(A) and A.numel() > 0:
        return _through_numpy(np.linalg.eigvalsh, A)
    return torch.linalg.eigvalsh(A)


def svdvals(M: torch.Tensor) -> torch.Tensor:
    """Singular values of matrices ``(..., m, n)``, descending, like :func:`torch.linalg.svdvals`.

    On the CPU through NumPy's LAPACK, a batch split across threads (:func:`_map_batch`).
    """
    if _numpy_ready(M) and M.numel() > 0:
        return _through_numpy(_numpy_svdvals, M)
    return torch.linalg.svdvals(M)


def _through_numpy(fn: Callable[[np.ndarray], np.ndarray], A: torch.Tensor) -> torch.Tensor:
    """``fn`` (values of each matrix, shape ``(..., k)``) of a non-empty CPU tensor ``(..., m, n)``, in NumPy."""
    a = A.numpy()
    if a.ndim == 2:
        return torch.from_numpy(fn(a))
    m, n = a.shape[-2:]
    values = _map_batch(fn, a.reshape(-1, m, n), min(m, n))
    return torch.from_numpy(values).reshape(*a.shape[:-2], values.shape[-1])


def _numpy_svdvals(a: np.ndarray) -> np.ndarray:
    return np.linalg.svd(a, compute_uv=False)


def _numpy_gram_eigvalsh(a: np.ndarray) -> np.ndarray:
    """Eigenvalues of the Gram matrices of ``a`` (``(m, n)`` or a stack ``(b, m, n)``) on their smaller side.

    Everything stays in NumPy's own OpenBLAS (for a single matrix its product with its own transpose is a
    symmetric rank-k update). SciPy ships a second OpenBLAS with its own thread pool: handing the Gram matrix
    from one to the other left each library's idle threads spinning against the other's, which on two cores
    made a rank-k update followed by an eigensolve 2-20x slower than on one thread.
    """
    return np.linalg.eigvalsh(a.swapaxes(-1, -2) @ a if a.shape[-2] >= a.shape[-1] else a @ a.swapaxes(-1, -2))


def _map_batch(fn: Callable[[np.ndarray], np.ndarray], stack: np.ndarray, n: int) -> np.ndarray:
    """``fn`` of a stack of small matrices ``(b, ...)``, its slices run in parallel threads.

    LAPACK diagonalises one small matrix at a time on one core whatever the BLAS thread setting, so a
    batch of them uses one core. NumPy releases the GIL inside ``fn``'s products and eigensolvers, so
    slices of the batch run on as many Python threads as :func:`torch.get_num_threads` allows (the
    package's thread setting, :func:`diffnb.config.set_threads`), each with a one-thread BLAS so that the
    threads do not oversubscribe the cores: 800 eigensolves of size 100 take 0.16 s on two threads
    against 0.29 s on one. Inside :func:`diffnb.config.torch_threads` ``(1)`` a batch is therefore not split.
    """
    workers = min(torch.get_num_threads(), stack.shape[0])
    if workers < 2 or stack.shape[0] * n**3 < _PARALLEL_WORK:
        return fn(stack)
    with _SPLIT_LOCK, threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(fn, np.array_split(stack, workers))))
