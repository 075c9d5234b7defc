"""All eigenvalues of the empirical-score Jacobian: closed form against the two baselines.

(a) closed form   ``diffnb.scores.empirical_jacobian_eigvals``: second-order Tweedie, Gram matrix when few
                  points carry weight, negligible weights skipped, a symmetric rank-k update otherwise;
(b) probe         the papers' estimator with central differences (``score_jacobian(method="probe")``:
                  2d score evaluations in one batched call, then ``eigvalsh`` of the symmetric part);
(c) jacrev        ``torch.func.jacrev`` of the empirical score at each point (256 basis vectors pulled back per
                  call), then ``eigvalsh``.

Data: ``P`` points of a standard Gaussian in ``d`` dimensions scaled to unit expected norm; test points are
noised training points. ``broad``: t = 1 (hundreds to thousands of active points); ``concentrated``:
t = 1e-4 (one or two). All in float64; errors are the maximum relative error of the eigenvalues against
a dense float64 ``eigvalsh`` of the closed-form matrix. The data are checked once and their squared norms
kept (``scores.prepare_data``) for all three methods alike. Every method is timed on one thread and on every
core; a last table takes each at its fastest setting. The closed form is the best of 5 calls (milliseconds to
seconds each, where one page fault or cache miss more shows), the baselines one call each (up to 40 s).
A last table counts the dense floating-point work of each method (matrix products and eigensolves, per
point): the closed form's distances ``2Pd``, then a symmetric rank-k update ``k d^2`` over the ``k`` points
it keeps (``k^2 d`` for the Gram matrix when ``k < d``); ``jacrev``'s forward ``4Pd`` and ``d`` pull-backs of
``4Pd`` each; the probe's ``2d`` scores of ``4Pd`` each; a tridiagonalisation ``(4/3) n^3`` for every
eigensolve. The ratios of these counts bound the speed-ups a method can reach when all run at the same
BLAS speed; the closed form's rate in GFlop/s shows how close to that speed it runs.
Run: ``python benchmarks/jacobian.py`` (``BENCH_THREADS=k``: only ``k`` threads).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from _bench import best_time, keep_fastest, thread_counts_from_env
from torch.func import jacrev

from diffnb import scores
from diffnb.config import set_threads
from diffnb.jacobian import score_jacobian

N_POINTS = 16
SETTINGS = [(64, 1_000), (64, 10_000), (784, 1_000), (784, 10_000)]
NOISE = {"broad": 1.0, "concentrated": 1e-4}
#: the closed form's default: training points of smaller weight are left out
WEIGHT_TOL = 1e-16


def symmetric_eigvals(J: torch.Tensor) -> np.ndarray:
    """Eigenvalues of the symmetric parts of a batch of Jacobians ``(n, d, d)``."""
    return torch.linalg.eigvalsh(0.5 * (J + J.transpose(1, 2))).numpy()


def jacobian_eigvals(fn, X: torch.Tensor, t: float, **options) -> np.ndarray:
    """Eigenvalues of the symmetric part of a Jacobian from ``score_jacobian``."""
    return symmetric_eigvals(score_jacobian(fn, X, t, **options))


def jacrev_eigvals(fn, X: torch.Tensor, t: float, chunk_size: int = 256) -> np.ndarray:
    """(c): ``torch.func.jacrev`` point by point, eigenvalues of the symmetric part."""
    level = torch.tensor([t], dtype=X.dtype)
    jac = jacrev(lambda z: fn(z[None], level)[0], chunk_size=chunk_size)
    return symmetric_eigvals(torch.stack([jac(x) for x in X]))


def dense_flops(d: int, P: int, kept: np.ndarray) -> dict[str, float]:
    """Floating-point operations of each method's dense kernels summed over the points (see the module notes).

    ``kept`` holds the number of training points the closed form keeps at each point.
    """
    kept = kept.astype(float)
    eig_d = 4.0 / 3.0 * d**3
    closed = 2.0 * P * d + np.where(kept >= d, kept * d**2 + eig_d, kept**2 * d + 4.0 / 3.0 * kept**3)
    return {
        "closed": float(closed.sum()),
        "jacrev": kept.size * (4.0 * P * d + d * 4.0 * P * d + eig_d),
        "probe": kept.size * (2 * d * 4.0 * P * d + eig_d),
    }


def main() -> None:
    # Each method is timed on one thread and on every core (BENCH_THREADS=k: k alone), the settings one after
    # the other at each size so that they see the same machine load. The thread limit covers the BLAS under
    # NumPy too: the closed form's Gram matrices and eigensolves run there.
    thread_counts = thread_counts_from_env()
    print(
        f"torch {torch.__version__}, float64, threads {thread_counts} (torch and BLAS), "
        f"{N_POINTS} points each; load average {os.getloadavg()[0]:.2f}\n"
    )
    header = (
        f"{'d':>4} {'P':>6} {'posterior':>12} {'active':>7} {'threads':>7} | "
        f"{'closed s':>9} {'probe s':>9} {'jacrev s':>9} | "
        f"{'probe/closed':>12} {'jacrev/closed':>13} | {'err closed':>10} {'err probe':>9} {'err jacrev':>10}"
    )
    print(header)
    print("-" * len(header))
    fastest = []
    flops: dict[tuple[int, int, str], dict[str, float]] = {}
    rng = np.random.default_rng(0)
    # the first call of each method pays one-time set-up (2.4 s for jacrev's): made here, outside the timings
    warm = np.random.default_rng(1).standard_normal((10, 8))  # its own stream: the data stay as before
    scores.empirical_jacobian_eigvals(warm[:2], warm, 1.0)
    jacobian_eigvals(scores.make_empirical_score(warm), torch.from_numpy(warm[:2]), 1.0, method="probe")
    jacrev_eigvals(scores.make_empirical_score(warm), torch.from_numpy(warm[:2]), 1.0)
    for d, P in SETTINGS:
        data = rng.standard_normal((P, d)) / np.sqrt(d)
        prepared = scores.prepare_data(data)  # checked once, squared norms kept: for all three methods
        fn = scores.make_empirical_score(prepared)
        for name, t in NOISE.items():
            x = data[:N_POINTS] + np.sqrt(t) * rng.standard_normal((N_POINTS, d))
            X = torch.from_numpy(x)
            active = float(np.median(scores.participation_ratio(x, data, t)))
            kept = (scores.posterior_weights(x, data, t) > WEIGHT_TOL).sum(axis=1)
            flops[(d, P, name)] = dense_flops(d, P, kept)
            reference = np.linalg.eigvalsh(scores.empirical_score_jacobian(x, data, t, weight_tol=0))
            scale = np.abs(reference).max(axis=1, keepdims=True)
            best = {}
            for threads in thread_counts:
                set_threads(threads)
                t_closed, ev_closed = best_time(scores.empirical_jacobian_eigvals, x, prepared, t, repeats=5)
                t_probe, ev_probe = best_time(jacobian_eigvals, fn, X, t, method="probe")
                t_jacrev, ev_jacrev = best_time(jacrev_eigvals, fn, X, t)
                errors = [np.max(np.abs(ev - reference) / scale) for ev in (ev_closed, ev_probe, ev_jacrev)]
                print(
                    f"{d:>4} {P:>6} {name:>12} {active:>7.1f} {threads:>7} | "
                    f"{t_closed:>9.3f} {t_probe:>9.3f} {t_jacrev:>9.3f} | "
                    f"{t_probe / t_closed:>11.1f}x {t_jacrev / t_closed:>12.1f}x | "
                    f"{errors[0]:>10.1e} {errors[1]:>9.1e} {errors[2]:>10.1e}"
                )
                for method, seconds in (("closed", t_closed), ("probe", t_probe), ("jacrev", t_jacrev)):
                    keep_fastest(best, method, seconds, threads)
            fastest.append((d, P, name, best))
    if len(thread_counts) > 1:
        print("\neach method at its fastest thread setting (seconds, threads):")
        for d, P, name, best in fastest:
            (closed, n_closed), (probe, n_probe), (jac, n_jac) = best["closed"], best["probe"], best["jacrev"]
            print(
                f"{d:>4} {P:>6} {name:>12} | closed {closed:.3f} ({n_closed}), probe {probe:.3f} ({n_probe}), "
                f"jacrev {jac:.3f} ({n_jac}) | probe/closed {probe / closed:.1f}x, jacrev/closed {jac / closed:.1f}x"
            )

    print("\ndense work (GFlop, all points), its ratios, and the closed form's rate at its fastest setting:")
    for d, P, name, best in fastest:
        f = flops[(d, P, name)]
        rate = f["closed"] / best["closed"][0] / 1e9
        print(
            f"{d:>4} {P:>6} {name:>12} | closed {f['closed'] / 1e9:8.3f}, probe {f['probe'] / 1e9:8.2f}, "
            f"jacrev {f['jacrev'] / 1e9:8.2f} | probe/closed {f['probe'] / f['closed']:7.1f}x, "
            f"jacrev/closed {f['jacrev'] / f['closed']:7.1f}x | closed {rate:5.1f} GFlop/s"
        )


if __name__ == "__main__":
    main()
