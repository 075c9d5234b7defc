"""The paper-scale path on an accelerator, checked in one short run (and on a CPU, at toy size, as a dry run).

Five checks, each printed as a table; a verdict on the training check at the end; the exit status is 1 when
a check failed to run or the trainings disagree:

1. **Same training on CPU and GPU.** A small U-Net and a small MLP ensemble (VP/DDPM path, the image
   protocol's settings) trained for a few hundred steps from the same seeds on the CPU and on the device: the
   loss curves must agree to float32 rounding amplified by training (relative 1e-2 on the mean of the last
   50 steps), and so must the dimension read at DDPM step 15.
2. **Mixed precision and the spectra.** Image spectra (exact autograd Jacobians at step 15) of the device
   model in float64; under torch's default flags (TF32 in cuDNN's convolutions only, which ``diffnb.jacobian``
   turns off while it computes spectra); in float32 (TF32 off everywhere); in TF32 (on everywhere); and in
   bfloat16 autocast. The book may use a reduced precision only where it leaves the normalised spectra
   within 1e-3 and the dimension unchanged; the table says which do.
3. **Throughput at paper size.** Steps per second of the memorization paper's U-Net
   (``UNetConfig.ddpm``) at 1x28x28 (MNIST) and 3x32x32 (CIFAR-10), batch 128, in float32 and in bfloat16
   autocast, on synthetic images (nothing is downloaded), and the extrapolated hours for 400k steps.
4. **Probe spectra at paper size.** Seconds for the papers' ``K = 4d`` probe at one 28x28 image against an
   exact Jacobian and 32 Lanczos steps.
5. **Synthetic trainings at paper size.** Steps per second of chapter 5's sweep ensemble (ten of the official
   ``DDPMTabular``, ``TrainConfig.official``) and of the 256x4 network of chapters 5 and 8 (batch 512), and
   the extrapolated hours for their paper budgets (2M and 100k steps).

A check that raises is reported with its traceback and the next one still runs (one lease, one run).

Run:  python benchmarks/device_check.py            (CUDA when present; ``--quick`` for a CPU dry run;
      ``--sections 25``: only checks 2 and 5)
Everything here is timed in one process; on a CPU the sizes shrink so that the dry run takes about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import traceback
from dataclasses import replace

import numpy as np
import torch
from _bench import device_name, synchronize

from diffnb.config import get_device
from diffnb.data import images as imdata
from diffnb.empirical_sweeps import SPHERE
from diffnb.image_protocol import image_dimensions, image_spectra, step_time
from diffnb.jacobian import lanczos_singular_values, probe_spectrum
from diffnb.nets import NetConfig, UNetConfig, build_model
from diffnb.phase_networks import configs, network_jobs, training_set
from diffnb.training import TrainConfig, train_ensemble, train_score_model


def same_training(device: torch.device, steps: int) -> list[tuple[str, float, float, bool]]:
    """Train on the CPU and on ``device`` from the same seeds; compare final losses and step-15 dimensions."""
    digits = imdata.load_images("digits", flat=True)[:256]
    cfg = TrainConfig(
        steps=steps, batch_size=64, lr=2e-3, schedule="linear", step_sampling="log_sigma", grad_clip=1.0, seed=0
    )
    nets = {
        "U-Net 8x8": UNetConfig((1, 8, 8), channels=16, channel_mults=(1, 2), emb_dim=32, groups=8),
        "MLP ensemble of 3": NetConfig(d=64, width=64, depth=2, sigma_data=1.0),
    }
    rows = []
    x = digits[:8]
    for name, net in nets.items():
        runs = {}
        for where in ("cpu", device.type):
            sets = [digits[:64], digits[:128], digits] if isinstance(net, NetConfig) else [digits]
            members = train_ensemble(sets, net, cfg, use_cache=False, progress=False, device=where)
            trained = members[-1]
            dims = image_dimensions(image_spectra(trained.model.score, x.to(where), step_time(15)))
            runs[where] = (trained.final_loss(50), float(dims.mean()))
        (loss_cpu, dim_cpu), (loss_dev, dim_dev) = runs["cpu"], runs[device.type]
        ok = abs(loss_dev / loss_cpu - 1) < 1e-2 and abs(dim_dev - dim_cpu) <= 1
        rows.append((name, loss_cpu, loss_dev, dim_cpu, dim_dev, ok))
    return rows


@contextlib.contextmanager
def _precision(mode: str, device: torch.device):
    # "torch defaults": TF32 off for matrix products and on for cuDNN's convolutions, which diffnb.jacobian
    # then keeps in float32 while it computes spectra; "float32" turns both off, "tf32" both on;
    # "bf16 autocast" keeps the defaults and adds autocast
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = mode in ("tf32", "torch defaults", "bf16 autocast")
    try:
        if mode == "bf16 autocast":
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


def precision_of_spectra(device: torch.device, steps: int) -> list[tuple[str, float, float, bool]]:
    """Spectra at step 15 of one trained U-Net in float64, float32, TF32 and bfloat16 autocast."""
    digits = imdata.load_images("digits", flat=True)
    net = UNetConfig((1, 8, 8), channels=16, channel_mults=(1, 2), emb_dim=32, groups=8)
    cfg = TrainConfig(steps=steps, batch_size=64, lr=2e-3, schedule="linear", step_sampling="log_sigma", seed=0)
    model = train_score_model(digits, net, cfg, use_cache=False, progress=False, device=device).model
    x = digits[:16].to(device)
    t = step_time(15)
    reference = image_spectra(model.double().score, x.double(), t)
    ref_dims = image_dimensions(reference)
    model.float()
    rows = [("float64", 0.0, 0.0, True)]

    def score(z: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        return model.score(z, level).float()  # autocast may hand back bfloat16; the SVD needs float32

    for mode in ("torch defaults", "float32", "tf32", "bf16 autocast"):
        try:
            with _precision(mode, device):
                spectra = image_spectra(score, x, t)
        except RuntimeError as error:  # e.g. a normalisation's backward that refuses mixed dtypes
            print(f"   {mode}: the Jacobian failed ({str(error).splitlines()[0]})")
            rows.append((mode, float("nan"), float("nan"), False))
            continue
        err = float(np.abs(spectra - reference).max())
        dims = image_dimensions(spectra)
        dim_change = float(np.abs(dims - ref_dims).max())
        rows.append((mode, err, dim_change, err < 1e-3 and dim_change == 0))
    return rows


def throughput(device: torch.device, shapes, channels: int, seconds: float) -> list[tuple[str, str, int, float]]:
    """Training steps per second of the paper's U-Net on synthetic images under torch's default flags (TF32 in
    cuDNN's convolutions only, as training runs), without and with bfloat16 autocast of the forward pass."""
    rows = []
    for shape in shapes:
        config = UNetConfig.ddpm(shape, channels=channels)
        model = build_model(config, seed=0).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        x0 = torch.rand(128, config.d, device=device) * 2 - 1
        for mode in ("torch defaults", "bf16 autocast"):
            steps, started = 0, None
            while True:
                sigma = torch.exp(torch.empty(128, device=device).uniform_(-4.6, 5.0))
                eps = torch.randn_like(x0)
                with _precision("torch defaults", device):  # the flags hold for the whole step
                    with _precision(mode, device):  # autocast for the forward pass only
                        loss = ((model(x0 + sigma[:, None] * eps, sigma) - eps) ** 2).mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                synchronize(device)
                if started is None:  # the first step compiles kernels and allocates
                    started = time.perf_counter()
                    continue
                steps += 1
                if time.perf_counter() - started > seconds:
                    break
            rate = steps / (time.perf_counter() - started)
            rows.append((f"{shape}", mode, config_parameters(model), rate))
    return rows


def synthetic_throughput(device: torch.device, quick: bool) -> list[tuple[str, int, int, float]]:
    """Steps per second of the synthetic paper-scale trainings (chapter 5's two kinds, chapter 8's network).

    Each ensemble trains twice, for a short and a longer run; the rate is the difference of steps over the
    difference of times, so that set-up and the first kernels' compilation drop out.
    """
    sweep_sets = [
        SPHERE.sample(p, seed=k) for k, p in enumerate([10, 20, 50, 100, 250, 500, 1_000, 2_500, 5_000, 20_000])
    ]
    # chapter 8's linear-manifold network at paper scale (chapter 5's paper network has the same architecture)
    linear = next(job for job in network_jobs("paper") if job["network"] == "linear")
    wide, wide_cfg = configs(linear)
    wide_sets = [training_set(linear)] * 2
    runs = (
        (
            "ch. 5 sweep: 10 x DDPMTabular",
            NetConfig.official_tabular(30),
            TrainConfig.official(),
            sweep_sets,
            2_000_000,
        ),
        ("ch. 5/8: 2 x 256x4, batch 512", wide, wide_cfg, wide_sets, wide_cfg.steps),
    )
    short, long = (20, 60) if quick else (200, 1_200)
    rows = []
    for name, net, cfg, sets, budget in runs:
        seconds = []
        for steps in (short, long):
            synchronize(device)
            started = time.perf_counter()
            train_ensemble(sets, net, replace(cfg, steps=steps), use_cache=False, progress=False, device=device)
            synchronize(device)
            seconds.append(time.perf_counter() - started)
        rate = (long - short) / max(seconds[1] - seconds[0], 1e-9)
        rows.append((name, len(sets), budget, rate))
    return rows


def config_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def probe_cost(device: torch.device, side: int, channels: int) -> list[tuple[str, float]]:
    """Seconds for one image's spectrum at step 15 by the papers' probe, exact autograd and Lanczos."""
    config = UNetConfig.ddpm((1, side, side), channels=channels)
    model = build_model(config, seed=0).to(device).eval().requires_grad_(False)
    x = torch.rand(1, config.d, device=device) * 2 - 1
    t = step_time(15)
    timings = []
    for name, fn in (
        ("probe, K = 4d, symmetric", lambda: probe_spectrum(model.score, x, t, k_mult=4, batch_size=512)),
        ("exact (autograd)", lambda: image_spectra(model.score, x, t, batch_size=1)),
        ("Lanczos, 32 steps", lambda: lanczos_singular_values(model.score, x, t, k=8, n_iter=32)),
    ):
        synchronize(device)
        started = time.perf_counter()
        fn()
        synchronize(device)
        timings.append((name, time.perf_counter() - started))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes (a CPU dry run of the script)")
    parser.add_argument("--sections", default="12345", help="the checks to run, e.g. 2 or 125 (default: all)")
    args = parser.parse_args()
    device = get_device()
    quick = args.quick or device.type == "cpu"
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, device {device} ({device_name(device)}); "
        f"{'quick dry run' if quick else 'full check'}\n"
    )
    verdicts: list[bool] = []  # the training check's rows
    failed: list[str] = []  # checks that raised

    def section(title: str, body) -> None:
        """Print one check; a failure is reported with its traceback and the next check still runs."""
        if title.split(".")[0] not in args.sections:
            return
        print(f"\n{title}", flush=True)
        started = time.perf_counter()
        try:
            body()
        except Exception:  # noqa: BLE001 - one lease, one run: report every failure and go on
            failed.append(title.split(".")[0])
            print("   FAILED:")
            print("   " + traceback.format_exc().replace("\n", "\n   "))
        print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)

    def check_training() -> None:
        for row in same_training(device, 60 if quick else 400):
            print(
                f"   {row[0]:<20} loss cpu {row[1]:.4f} device {row[2]:.4f} | dim cpu {row[3]:.1f} "
                f"device {row[4]:.1f} | {'ok' if row[5] else 'DIFFERS'}"
            )
            verdicts.append(row[5])

    def check_precision() -> None:
        for mode, err, dim_change, ok in precision_of_spectra(device, 60 if quick else 1000):
            print(f"   {mode:<14} {err:9.2e}  {dim_change:4.0f}  {'usable' if ok else 'not usable for spectra'}")

    def check_throughput() -> None:
        shapes = [(1, 8, 8)] if quick else [(1, 28, 28), (3, 32, 32)]
        for shape, mode, params, rate in throughput(device, shapes, 32 if quick else 128, 3.0 if quick else 8.0):
            hours = 400_000 / rate / 3600
            print(
                f"   {shape:<12} {mode:<14} {params / 1e6:6.1f} M params {rate:8.2f} steps/s  "
                f"400k steps: {hours:6.1f} h"
            )

    def check_probe() -> None:
        side = 8 if quick else 28
        for method, seconds in probe_cost(device, side, 32 if quick else 64):
            print(f"   {method:<26} {seconds:8.2f} s  ({side}x{side})")

    def check_synthetic() -> None:
        for name, members, budget, rate in synthetic_throughput(device, quick):
            print(
                f"   {name:<32} {members:3d} members {rate:8.1f} steps/s  "
                f"{budget:,} steps: {budget / rate / 3600:6.2f} h"
            )

    section(
        "1. same training on CPU and device (final loss over the last 50 steps; dimension at step 15)", check_training
    )
    section("2. precision of the spectra at step 15 (max |difference| from float64; dimension change)", check_precision)
    section("3. training throughput of the paper's U-Net (batch 128, synthetic images)", check_throughput)
    section("4. one image's spectrum at step 15", check_probe)
    section("5. training throughput of the synthetic paper-scale ensembles (stacked members)", check_synthetic)
    if "1" in args.sections and "1" not in failed:
        print(f"\nverdict: CPU and device training {'agree' if all(verdicts) else 'DISAGREE'}")
    if failed:
        print(f"checks that failed to run: {', '.join(failed)}")
    sys.exit(1 if failed or not all(verdicts) else 0)


if __name__ == "__main__":
    main()
