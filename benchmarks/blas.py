"""Matrix products and symmetric eigensolves: torch's CPU BLAS/LAPACK against NumPy's, on the same threads.

``diffnb._linalg`` sends the Gram matrices and eigensolves of the closed-form spectra through NumPy on the
CPU. This prints why, for the shapes the book uses: the time of ``torch`` (the MKL inside the CPU wheel) and
of NumPy (OpenBLAS) for each product and eigensolve, best of 10, and their ratio. Which library is faster
depends on the CPU (MKL is tuned for Intel processors). On the AMD EPYC the book is measured on, NumPy's
products are up to 2.2x faster (the same speed with 16 rows), its eigensolves 1.3-1.4x faster from size 300
up and the same below.

The last rows show why the posterior weights stay in torch all the same: their product is followed by
element-wise work over every (point, training point) pair in torch, and a product in NumPy's BLAS handed
to torch's element-wise work leaves each library's idle threads spinning against the other's on more than
one thread. Both columns there run the same in-place softmax (``diffnb.scores._softmax_rows_``) after the
product; only the library of the product differs. Measured: on one thread torch is 13% faster for 16 points
and NumPy 30-50% faster for 4096 points at d = 30 (its product is twice as fast there); on two threads torch
is 2-5x faster for 16 points and NumPy still 16% faster for 4096 points at d = 30. One library for the whole
step avoids the large losses, at the price of the smaller one.

Run:  python benchmarks/blas.py        (BENCH_THREADS=2: both libraries on both cores)
"""

from __future__ import annotations

import platform

import numpy as np
import torch
from _bench import best_time, threads_from_env

from diffnb import scores

PRODUCTS = [  # (what, rows, inner, columns)
    ("distances, d = 784", 16, 784, 10_000),
    ("distances, d = 30", 4096, 30, 10_000),
    ("distances, d = 100", 1024, 100, 20_000),
    ("weighted means, d = 784", 16, 10_000, 784),
    ("weighted means, d = 30", 4096, 10_000, 30),
    ("covariance, d = 784", 784, 10_000, 784),
]
EIGENSOLVES = [30, 100, 300, 784]
WEIGHTS = [(16, 784, 1_000), (16, 784, 10_000), (4096, 30, 10_000)]  # (points, d, P)


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


def weights_after_numpy_product(x: np.ndarray, y: np.ndarray, y_sq: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``diffnb.scores._posterior_weights`` with its product taken in NumPy instead of torch."""
    return scores._softmax_rows_(torch.from_numpy(np.matmul(x, y.T)).sub_(0.5 * y_sq), t[:, None])


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
    for n, d, P in WEIGHTS:
        x, y = rng.standard_normal((n, d)), rng.standard_normal((P, d)) / np.sqrt(d)
        X, Y = torch.from_numpy(x), torch.from_numpy(y)
        y_sq, t = (Y * Y).sum(1), torch.full((n,), 0.1, dtype=torch.float64)

        t_torch = best_ms(scores._posterior_weights, X, Y, y_sq, t)
        t_numpy = best_ms(weights_after_numpy_product, x, y, y_sq, t)
        what = f"weights, d = {d}"
        print(f"{what:>26} {f'{n} points, P = {P}':>22} | {t_torch:9.2f} {t_numpy:9.2f} | {t_torch / t_numpy:10.2f}x")


if __name__ == "__main__":
    main()
