"""Matrix products and symmetric eigensolves: torch's CPU BLAS/LAPACK against NumPy's, on the same threads.

``diffnb._linalg`` sends the dense float64 work of the closed-form spectra (the distance products of the
posterior weights, weighted means, covariance and Gram eigenvalues) through NumPy on the CPU. This prints
why, for the shapes the book uses: the time of ``torch`` (the MKL inside the CPU wheel) and of NumPy
(OpenBLAS) for each product and eigensolve, best of 10, and their ratio. Which library is faster depends on
the CPU (MKL is tuned for Intel processors). On the AMD EPYC the book is measured on, NumPy's products are
1.1-2.3x faster, its eigensolves 1.4-1.5x faster from size 300 up and 15% slower (by microseconds) below.

Run:  python benchmarks/blas.py        (BENCH_THREADS=2: both libraries on both cores)
"""

from __future__ import annotations

import platform

import numpy as np
import torch
from _bench import best_time, threads_from_env

PRODUCTS = [  # (what, rows, inner, columns)
    ("distances, d = 784", 16, 784, 10_000),
    ("distances, d = 30", 4096, 30, 10_000),
    ("distances, d = 100", 1024, 100, 20_000),
    ("weighted means, d = 784", 16, 10_000, 784),
    ("weighted means, d = 30", 4096, 10_000, 30),
    ("covariance, d = 784", 784, 10_000, 784),
]
EIGENSOLVES = [30, 100, 300, 784]


def best_ms(fn, *args, **kwargs) -> float:
    """Best of 10 wall-clock times of ``fn(*args, **kwargs)``, in milliseconds."""
    return best_time(fn, *args, repeats=10, **kwargs)[0] * 1e3


def cpu_name() -> str:
    """The CPU's model name where Linux reports it, else the machine type."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def main() -> None:
    threads = threads_from_env()
    print(f"torch {torch.__version__}, NumPy {np.__version__}, {threads}, float64; {cpu_name()}\n")
    header = f"{'kernel':>26} {'shape':>22} | {'torch ms':>9} {'NumPy ms':>9} | {'torch/NumPy':>11}"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for what, m, k, n in PRODUCTS:
        a, b = rng.standard_normal((m, k)), rng.standard_normal((n, k)).T  # b a transposed view, as in use
        A, B = torch.from_numpy(a), torch.from_numpy(b)
        t_torch, t_numpy = best_ms(torch.matmul, A, B), best_ms(np.matmul, a, b)
        print(f"{what:>26} {f'{m}x{k} @ {k}x{n}':>22} | {t_torch:9.2f} {t_numpy:9.2f} | {t_torch / t_numpy:10.2f}x")
    for n in EIGENSOLVES:
        a = rng.standard_normal((n + 10, n))
        g = np.triu(a.T @ a)
        G = torch.from_numpy(g)
        t_torch = best_ms(torch.linalg.eigvalsh, G, UPLO="U")
        t_numpy = best_ms(np.linalg.eigvalsh, g, UPLO="U")
        print(f"{'eigvalsh':>26} {f'{n}x{n}':>22} | {t_torch:9.2f} {t_numpy:9.2f} | {t_torch / t_numpy:10.2f}x")


if __name__ == "__main__":
    main()
