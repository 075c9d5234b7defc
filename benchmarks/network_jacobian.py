"""Spectra of a trained score network over points and noise levels: exact batched autograd vs the probes.

The network is chapter 5's linear-manifold network at the spectral-gaps paper's size, ``d = 100``, trained
briefly on its two-variance manifold (through ``diffnb.cache``; the first run trains it). For 16 data points
and 50 noise levels from 1e-3 to 10 the normalised singular-value spectrum of the score Jacobian is
computed three ways:

(a) exact     ``diffnb.spectra.score_spectra_over_time``: the Jacobians of all 800 (point, level) pairs by
              reverse mode, one ``torch.func.vjp`` per batch of pairs with the ``d`` basis cotangents pulled
              back together under ``vmap`` (``score_jacobian(method="autograd")``), then the singular values
              of all of them at once (``diffnb.jacobian.singular_values``: float64 Gram matrix, symmetric
              eigensolver);
(b) probe     the papers' estimator as their code runs it (spectral-gaps Algorithm 1, the memorization
              paper's ``analyze_spectrum.py``): for every point and level, a fresh random orthogonal matrix
              ``U`` (``scipy.stats.ortho_group``, as there), the scores at the ``d`` points ``x0 + sqrt(t) U_k``
              in one batch, the singular values of the score matrix divided by ``sqrt(t)`` (a float32
              ``svdvals``, as there), the largest dropped (it carries the score itself);
(c) probe, batched  the same estimator through ``diffnb.jacobian`` (``method="probe"``, one-sided, one random
              frame), all pairs in large batches, singular values as in (a) — how fast the probe can be
              when written for throughput;
(d) central, batched  Algorithm 2: central differences across the same step, ``2d`` scores per pair.

Errors are against (a), after the same post-processing (largest value dropped for (a)-(c), divided by the
largest kept): the mean and largest absolute difference of the normalised values, and the fraction of
spectra whose dimension (largest gap wider than 0.2, as in chapter 5) differs. Target: (a) at least 3x faster
than (b).

Every method runs on one thread and on every core, one setting after the other, best of 3 each; a line after
the table compares each of (a) and (b) at its fastest setting. On two cores (a) gains from both (its products
are large, and ``diffnb._linalg`` splits its 800 eigensolves across threads) while (b) slows down: its 800
small SVDs and orthogonal draws lose more to thread hand-offs than they gain.
On a GPU (``--device cuda``; the default is :func:`diffnb.config.get_device`) the network, the points and the
Jacobians stay on the device and only the final spectra come back, except that (b), as the papers' code
does, draws each frame with SciPy on the host and waits for each pair's SVD; the thread settings are the
host's.
Run:  python benchmarks/network_jacobian.py   (BENCH_THREADS=k: only k threads) [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from _bench import best_time, keep_fastest, thread_counts_from_env
from scipy.stats import ortho_group

from diffnb.config import get_device, set_threads
from diffnb.data import LinearManifold
from diffnb.jacobian import score_jacobian, singular_values
from diffnb.nets import NetConfig
from diffnb.spectra import dimension_over_time, score_spectra_over_time
from diffnb.training import TrainConfig, train_score_model

D = 100
N_POINTS, N_TIMES = 16, 50
#: chapter 5's linear-manifold network (book/05_trained_linear.ipynb), at d = 100
NET = NetConfig(d=D, width=128, depth=3, conditioning="film", parametrization="edm", sigma_data=0.3)
TRAIN = TrainConfig(steps=1500, batch_size=256, sigma_min=0.02, sigma_max=5.0, seed=0)


def probe_loop(score_fn, X: torch.Tensor, times: np.ndarray, seed: int = 0) -> np.ndarray:
    """The papers' loop: one random orthogonal frame and one batch of d scores per (point, level)."""
    rng = np.random.default_rng(seed)
    out = np.empty((X.shape[0], times.size, X.shape[1] - 1))
    with torch.no_grad():
        for i, x0 in enumerate(X):
            for k, t in enumerate(times):
                frame = ortho_group.rvs(X.shape[1], random_state=rng)
                U = torch.as_tensor(frame, dtype=X.dtype, device=X.device)
                h = float(np.sqrt(t))
                level = torch.full((X.shape[1],), float(t), dtype=X.dtype, device=X.device)
                S = score_fn(x0[None] + h * U, level) / h
                sv = torch.linalg.svdvals(S)[1:]  # descending; the largest carries the score itself
                out[i, k] = (sv / sv[0]).cpu().numpy()[::-1]
    return out


def probe_batched(score_fn, X: torch.Tensor, times: np.ndarray, symmetric: bool = False) -> np.ndarray:
    n, d = X.shape
    X_rep = X.repeat_interleave(times.size, dim=0)
    t_rep = torch.as_tensor(np.tile(times, n), dtype=X.dtype, device=X.device)
    M = score_jacobian(score_fn, X_rep, t_rep, method="probe", symmetric=symmetric, seed=0, batch_size=8192)
    sv = singular_values(M)
    if not symmetric:
        sv = sv[:, 1:]
    sv = (sv / sv[:, :1]).cpu().numpy()[:, ::-1]
    return sv.reshape(n, times.size, sv.shape[-1])


def drop_largest(spectra: np.ndarray) -> np.ndarray:
    kept = spectra[..., :-1]
    return kept / kept[..., -1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    device = get_device(parser.parse_args().device)
    # The papers' code runs with torch's default, every core; their loop is fastest on one thread, and exact is
    # fastest on every core, so both settings are timed (BENCH_THREADS=k: that setting alone).
    thread_counts = thread_counts_from_env()
    set_threads(1)
    manifold = LinearManifold(D, (24, 16), (1.0, 0.2), seed=0)
    trained = train_score_model(manifold.sample(20_000, seed=1), NET, TRAIN, progress=False, device=device)
    print(
        f"torch {torch.__version__} on {device}, load average {os.getloadavg()[0]:.2f}; network {NET.width}x{NET.depth}"
        f" ({trained.model.num_parameters()} parameters, {'cached' if trained.from_cache else 'trained now'});"
        f" {N_POINTS} points x {N_TIMES} noise levels, d = {D}\n"
    )
    X = torch.tensor(manifold.sample(N_POINTS, seed=2), dtype=torch.float32, device=device)
    times = np.logspace(-3, 1, N_TIMES)
    score = trained.model.score

    header = (
        f"{'method':>16} {'threads':>7} {'seconds':>9} {'exact faster by':>16} {'mean |err|':>11} "
        f"{'max |err|':>10} {'dim differs':>12}"
    )
    print(header)
    print("-" * len(header))
    fastest: dict[str, tuple[float, int]] = {}
    for threads in thread_counts:
        set_threads(threads)
        t_exact, exact = best_time(lambda: score_spectra_over_time(score, X, times), repeats=3)
        t_loop, loop = best_time(lambda: probe_loop(score, X, times), repeats=3)
        t_batch, batched = best_time(lambda: probe_batched(score, X, times), repeats=3)
        t_central, central = best_time(lambda: probe_batched(score, X, times, symmetric=True), repeats=3)
        reference = drop_largest(exact)
        print(f"{'exact autograd':>16} {threads:>7} {t_exact:9.2f} {'':>16} {'':>11} {'':>10} {'':>12}")
        rows = (
            ("probe (papers)", t_loop, loop, reference),
            ("probe, batched", t_batch, batched, reference),
            ("central, batched", t_central, central, exact),
        )
        for name, seconds, spectra, ref in rows:
            err = np.abs(spectra - ref)
            differs = np.mean(dimension_over_time(spectra, min_gap=0.2) != dimension_over_time(ref, min_gap=0.2))
            print(
                f"{name:>16} {threads:>7} {seconds:9.2f} {seconds / t_exact:15.1f}x {err.mean():11.4f} "
                f"{err.max():10.4f} {differs:12.1%}"
            )
        for name, seconds in (("exact", t_exact), ("loop", t_loop)):
            keep_fastest(fastest, name, seconds, threads)
    if len(thread_counts) > 1:
        (t_exact, n_exact), (t_loop, n_loop) = fastest["exact"], fastest["loop"]
        print(
            f"\neach at its fastest setting: exact {t_exact:.2f} s on {n_exact} thread(s), the papers' loop "
            f"{t_loop:.2f} s on {n_loop} thread(s): exact faster by {t_loop / t_exact:.1f}x"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
