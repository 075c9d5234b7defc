"""Training many small score networks: one vectorised ensemble against one model after another.

Chapter 5 trains the points of a data-set-size sweep (and the three linear-manifold models) as ensembles:
``diffnb.training.train_ensemble`` stacks the members' parameters and runs one batched forward pass of the
network per step, with per-member draws, so that the result equals training them one by one. This script
times 9 members both ways, on one thread and on every core (``BENCH_THREADS=k``: only ``k``), for

* the chapter's sweep network (``NET_SWEEP`` below, d = 30), and
* the official ``DDPMTabular`` of the memorization paper (``NetConfig.official_tabular``), whose time
  embedding (128 -> 512 -> 512 per sample) dominates its cost.

Modes: ``one by one`` (``vectorize=False``), ``vmap`` (``torch.func.vmap`` of ``functional_call`` over the
stacked parameters) and ``stacked`` (``diffnb.nets.stacked_forward``: batched matrix products with fused biases,
the default). Throughput is model-steps per second (9 members x steps / wall time); the CPU time of the
process is printed too, since the machine may be shared. Each time is the best of ``--repeats`` runs (2), the same
for every mode. Target: the ensemble at least 2x the one-by-one throughput. A last block compares each mode at
its fastest thread setting.
On a GPU (``--device cuda``; the default is :func:`diffnb.config.get_device`) the thread settings are those of
the host process, and each time ends with a device synchronisation.
Run:  python benchmarks/training.py  [--steps 300] [--repeats 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from _bench import device_name, keep_fastest, synchronize, thread_counts_from_env

from diffnb.config import get_device
from diffnb.data import AxisAlignedManifold
from diffnb.nets import NetConfig
from diffnb.training import TrainConfig, train_ensemble

#: the chapter's sweep network (book/05_trained_linear.ipynb)
NET_SWEEP = NetConfig(
    d=30, width=64, depth=2, emb_dim=32, emb_hidden=64, conditioning="film", parametrization="edm", sigma_data=0.2
)
MODES = ("one by one", "vmap", "stacked")
SIZES = [10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 20_000]


def run(net: NetConfig, datasets, steps: int, mode: str, threads: int, device: torch.device) -> tuple[float, float]:
    cfg = TrainConfig(steps=steps, sigma_min=0.01, sigma_max=5.0)
    wall, cpu = time.perf_counter(), time.process_time()
    train_ensemble(
        datasets,
        net,
        cfg,
        vectorize=mode != "one by one",
        engine="vmap" if mode == "vmap" else "stacked",
        use_cache=False,
        progress=False,
        threads=threads,
        device=device,
    )
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    args = parser.parse_args()
    device = get_device(args.device)
    manifold = AxisAlignedManifold(30, (2, 5), (1.0, 0.3), 0.01, normalized=True)
    datasets = [manifold.sample(P, seed=k) for k, P in enumerate(SIZES)]
    n = len(datasets)
    print(
        f"torch {torch.__version__} on {device_name(device)}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start; "
        f"{n} models x {args.steps} steps, batch 128\n"
    )
    header = (
        f"{'network':>14} {'threads':>7} {'mode':>10} {'wall s':>8} {'cpu s':>8} {'model-steps/s':>14} {'speed-up':>9}"
    )
    print(header)
    print("-" * len(header))
    # warm up (imports, first vmap trace)
    for mode in MODES:
        run(NET_SWEEP, datasets[:2], 20, mode, 1, device)
    networks = (("sweep net", NET_SWEEP), ("DDPMTabular", NetConfig.official_tabular(30)))
    fastest: dict[str, tuple[float, int]] = {}
    for name, net in networks:
        for threads in thread_counts_from_env():
            base = None
            for mode in MODES:
                wall, cpu = min(run(net, datasets, args.steps, mode, threads, device) for _ in range(args.repeats))
                rate = n * args.steps / wall
                base = rate if base is None else base
                print(f"{name:>14} {threads:>7} {mode:>10} {wall:8.2f} {cpu:8.2f} {rate:14.0f} {rate / base:8.2f}x")
                keep_fastest(fastest, f"{name}/{mode}", wall, threads)
    print("\neach at its fastest thread setting (model-steps/s):")
    for name, _ in networks:
        (t_one, n_one), (t_stack, n_stack) = fastest[f"{name}/one by one"], fastest[f"{name}/stacked"]
        print(
            f"{name:>14}: stacked {n * args.steps / t_stack:.0f} on {n_stack} thread(s), one by one "
            f"{n * args.steps / t_one:.0f} on {n_one} thread(s): {t_one / t_stack:.2f}x"
        )
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
