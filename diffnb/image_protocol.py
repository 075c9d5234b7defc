r"""The memorization paper's image protocol, for chapters 6 and 7 and for long runs on a GPU.

The protocol (memorization paper, digest §2.3 and §3.2): a DDPM noise predictor (linear :math:`\beta` from
1e-4 to 0.02, ``T = 1000``) is trained on a seeded subset of ``P`` training images; at **DDPM step 15**
(:math:`\sigma_{VP} \approx 0.063`, VE variance :math:`t = (1-\bar\alpha)/\bar\alpha \approx 4.0\times10^{-3}`)
the singular values of the score Jacobian are computed at images, and the latent dimension is read from
them. Repeating over ``P`` gives the dimension against the training-set size.

The pieces:

* :func:`step_time` — the VE variance of a DDPM step, so image spectra and theory share one time axis;
* :func:`image_spectra` — singular values at images by exact autograd (``d`` up to a few thousand), by the
  papers' probe with ``K = k_mult * d`` perturbations, or matrix-free (Lanczos, top values only);
* :func:`image_dimensions` — the dimension per image: the book's threshold rule (values below 1/2 of the
  largest, i.e. directions whose data variance exceeds the noise variance ``t``) or the paper's cliff rule;
* :func:`training_distances` — distance of generated samples to their nearest training image, and the
  training set's own nearest-neighbour distance; :func:`copy_ratio` — their ratio (near 0: a copy), and
  :func:`copy_fraction` — the fraction of samples whose ratio is below :data:`COPY_THRESHOLD` (1/3), the
  book's definition of a copy;
* :func:`paper_job`, :func:`job_network` and :func:`run_image_job` — one ``(data set, P, seed)`` point of
  the sweep, the network it trains, and the run: train (cached, resumable), spectra, dimensions, samples;
  registered as the experiment ``images-memorization`` of ``diffnb.experiments``;
* the command line ``python -m diffnb.image_protocol`` (see :func:`main`), which runs a list of sizes for one
  data set at ``paper`` scale on a GPU and can be interrupted and restarted at any point.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from diffnb._validation import as_float_array, check_choice, check_finite_array
from diffnb.schedules import VPSchedule

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

PAPER_STEP = 15
SPECTRUM_METHODS = ("autograd", "probe", "lanczos")
DIMENSION_RULES = ("threshold", "cliff")
#: The cliff estimator's settings per data set in the memorization paper's plotting code (digest §2.3):
#: ``(c, d_bar)``. The digits have no published setting; ``d_bar = 0`` and ``c = 10`` are the book's choice.
CLIFF_SETTINGS: dict[str, tuple[float, int]] = {
    "digits": (10.0, 0),
    "mnist": (20.0, 100),
    "fashion_mnist": (15.0, 200),
    "cifar10": (10.0, 1000),
}


def step_time(step: int | Sequence[int] | np.ndarray = PAPER_STEP, schedule: str = "linear", T: int = 1000):
    """VE noise variance of (0-based) DDPM step(s) on the ``"linear"`` (papers) or ``"cosine"`` schedule.

    Examples
    --------
    >>> round(float(step_time(15)), 5)
    0.004
    """
    sched = VPSchedule.named(schedule, T)
    steps = np.asarray(step)
    if not np.issubdtype(steps.dtype, np.integer) or np.any(steps < 0) or np.any(steps >= T):
        raise ValueError(f"step must be integer DDPM steps in [0, {T - 1}], got {step!r}")
    times = sched.ve_time(steps)
    return float(times) if np.ndim(times) == 0 else times


def image_spectra(
    score_fn: ScoreFn,
    images: torch.Tensor,
    t: float,
    *,
    method: str = "autograd",
    k_mult: int = 4,
    symmetric: bool = True,
    noise: str = "orthogonal",
    image_shape: tuple[int, int, int] | None = None,
    k: int = 32,
    n_iter: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> np.ndarray:
    """Normalised singular values of the score Jacobian at images, descending (largest = 1).

    Parameters
    ----------
    score_fn
        ``score_fn(x, t)`` on flat images ``(n, d)`` at VE variance ``t`` (e.g. ``trained.model.score``).
    images
        Flat images ``(n, d)`` (``diffnb.data.images.flatten`` turns ``(n, C, H, W)`` into that).
    t
        VE noise variance (e.g. :func:`step_time` of the papers' step 15).
    method
        ``"autograd"`` — the exact Jacobian (:func:`diffnb.jacobian.jacobian_singular_values`);
        ``"probe"`` — the papers' ``K = k_mult * d`` perturbed copies
        (:func:`diffnb.jacobian.probe_spectrum`, options ``k_mult``, ``symmetric``, ``noise``,
        ``image_shape``); ``"lanczos"`` — the ``k`` largest values without forming the Jacobian
        (:func:`diffnb.jacobian.lanczos_singular_values`, options ``k``, ``n_iter``).
    batch_size
        Images per Jacobian computation (``"autograd"``), or score evaluations per call (``"probe"``, times
        256).
    seed
        Seed of the probe directions or of the Lanczos start vectors.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, d)`` (``(n, k)`` for ``"lanczos"``), float64.
    """
    from diffnb.jacobian import jacobian_singular_values, lanczos_singular_values, probe_spectrum

    check_choice(method, SPECTRUM_METHODS, "method")
    if not isinstance(images, torch.Tensor) or images.ndim != 2:
        raise ValueError(
            f"images must be a flat tensor of shape (n, d); got {getattr(images, 'shape', type(images).__name__)} "
            f"(use diffnb.data.images.flatten for (n, C, H, W))"
        )
    if not (isinstance(t, (int, float, np.floating)) and np.isfinite(t) and t > 0):
        raise ValueError(f"t must be a positive finite noise variance, got {t!r}")
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size]
        if method == "autograd":
            sv = jacobian_singular_values(score_fn, x, float(t), batch_size=batch_size)
        elif method == "probe":
            sv = probe_spectrum(
                score_fn,
                x,
                float(t),
                k_mult=k_mult,
                symmetric=symmetric,
                noise=noise,
                image_shape=image_shape,
                seed=seed + start,
                batch_size=256 * batch_size,
            )
        else:
            res = lanczos_singular_values(score_fn, x, float(t), k=k, n_iter=n_iter, seed=seed + start)
            sv = res.values / res.values[:, :1]
        out.append(sv.detach().cpu().double())
    return torch.cat(out).numpy()


def image_dimensions(spectra: np.ndarray, rule: str = "threshold", **options: Any) -> np.ndarray:
    """Latent dimension of every spectrum (one per image).

    Parameters
    ----------
    spectra
        Normalised singular values, shape ``(n, d)``, any order.
    rule
        ``"threshold"`` — the number of values below ``1 - delta`` of the largest (``delta=0.5`` by default:
        for an exact score, tangent values are ``t / (lambda + t)``, below 1/2 exactly when the data
        variance ``lambda`` along the direction exceeds the noise variance ``t``); ``"cliff"`` — the
        memorization paper's second-difference estimator (options ``c``, ``d_bar``; see
        :func:`diffnb.spectra.estimate_dimension`).

    Returns
    -------
    numpy.ndarray
        Integers, shape ``(n,)``.
    """
    from diffnb.spectra import dimension_over_time

    check_choice(rule, DIMENSION_RULES, "rule")
    values = np.asarray(spectra, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"spectra must have shape (n, d), got {values.shape}")
    if rule == "threshold":
        return dimension_over_time(values, "threshold", delta=options.get("delta", 0.5))
    return dimension_over_time(values, "cliff", **options)


def training_distances(samples: torch.Tensor, train: torch.Tensor) -> tuple[np.ndarray, float]:
    """Distance of each sample to its nearest training image, and the training set's own spacing: the
    median distance of a training image to its nearest other one (leave-one-out).

    Parameters
    ----------
    samples
        Shape ``(n, d)`` or ``(n, C, H, W)``.
    train
        The training set, the same trailing shape, at least two images.

    Returns
    -------
    distances, spacing
        Shape ``(n,)``, and a number.
    """
    from diffnb.data.images import nearest_neighbors

    if train.shape[0] < 2:
        raise ValueError("train must hold at least two images to define its nearest-neighbour distance")
    to_train, _ = nearest_neighbors(samples, train)
    within, _ = nearest_neighbors(train, train, exclude_self=True)
    return to_train.cpu().numpy(), within.median().item()


def copy_ratio(samples: torch.Tensor, train: torch.Tensor) -> np.ndarray:
    """Distance of each sample to its nearest training image over the training set's spacing (the median
    nearest-neighbour distance within it, leave-one-out; both from :func:`training_distances`).

    A ratio well below 1 means a sample sits much closer to one training image than training images sit to
    each other: a copy. The book calls a sample a copy when the ratio is below :data:`COPY_THRESHOLD`
    (:func:`copy_fraction` counts them).

    Parameters
    ----------
    samples
        Shape ``(n, d)`` or ``(n, C, H, W)``.
    train
        The training set, the same trailing shape, at least two images.
    """
    distances, spacing = training_distances(samples, train)
    return distances / spacing


#: The copy threshold, the book's definition of a copy.
#: A generated sample whose :func:`copy_ratio` is below it sits at most a third as far from its nearest
#: training image as training images sit from their own nearest neighbours (median). Chapter 7 and the
#: command line's ``copy_fraction`` use it through :func:`copy_fraction`.
COPY_THRESHOLD = 1 / 3


def copy_fraction(ratios: Any, threshold: float = COPY_THRESHOLD) -> float:
    """Fraction of generated samples that are copies: copy ratios strictly below ``threshold``.

    Parameters
    ----------
    ratios
        Copy ratios of the samples (:func:`copy_ratio`), any shape, at least one value, finite and
        non-negative.
    threshold
        A sample is a copy when its ratio is below this; default :data:`COPY_THRESHOLD` (1/3).

    Returns
    -------
    float
        In ``[0, 1]``.

    Examples
    --------
    >>> copy_fraction([0.1, 0.5, 2.0])
    0.3333333333333333
    """
    values = as_float_array(ratios, "ratios")
    if values.size == 0:
        raise ValueError("ratios must hold at least one copy ratio, got an empty array")
    check_finite_array(values, "ratios")
    if np.any(values < 0):
        raise ValueError(f"ratios must be non-negative distance ratios, got minimum {values.min()!r}")
    if not (isinstance(threshold, (int, float, np.floating)) and np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive finite ratio, got {threshold!r}")
    return float(np.mean(values < threshold))


# ------------------------------------------------------------------------------------------------------------
# One point of the sweep, and the command line
# ------------------------------------------------------------------------------------------------------------


def paper_job(dataset: str, n_train: int, seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """The memorization paper's settings for one ``(data set, P, seed)`` (digest §3.2), as a job dict.

    U-Net of the paper (base channels 128 for CIFAR-10, 64 for the grey data sets), DDPM linear schedule
    with uniform steps, Adam at lr 1e-4, batch 128, 400k iterations, gradient clipping 1.0, EMA 0.9999;
    spectra at step 15 from ``K = 4d`` symmetrised probes with the paper's per-channel orthogonal noise at
    64 training images; dimension by the cliff rule with the paper's ``(c, d_bar)``.
    ``overrides`` replace any top-level key (e.g. ``steps=2000`` for a trial run).

    One departure: the EMA warms up (``ema_warmup``, decay ``min(0.9999, (1 + k)/(10 + k))`` at step ``k``).
    After the paper's 400k steps the average is the same to within ``0.9999**400000 ~ 4e-18`` of the
    initial weights' share; without the warm-up a 2000-step trial run would analyse weights that are still
    82% (``0.9999**2000``) those of the untrained network.
    """
    from diffnb.data.images import dataset_info

    info = dataset_info(dataset)
    job: dict[str, Any] = {
        "dataset": dataset,
        "size": None,
        "n_train": int(n_train),
        "seed": int(seed),
        "model": "unet",
        "channels": 128 if info.shape[0] == 3 else 64,
        "steps": 400_000,
        "batch_size": 128,
        "lr": 1e-4,
        "ema_decay": 0.9999,
        "ema_warmup": True,
        "grad_clip": 1.0,
        "schedule": "linear",
        "step_sampling": "uniform",
        "step": PAPER_STEP,
        "n_eval": 64,
        "eval_split": "train",
        "spectrum": "probe",
        "k_mult": 4,
        "noise": "channel_orthogonal",
        "n_samples": 64,
        "sample_steps": 1000,
        "checkpoint_every": 10_000,
    }
    unknown = set(overrides) - set(job)
    if unknown:
        raise ValueError(f"unknown job keys {sorted(unknown)}; known: {sorted(job)}")
    job.update(overrides)
    return job


def job_network(job: dict[str, Any]) -> tuple[Any, tuple[int, int, int]]:
    """The network configuration a job trains (:class:`~diffnb.nets.UNetConfig` or
    :class:`~diffnb.nets.NetConfig`) and the job's image shape ``(C, H, W)``."""
    from diffnb.data.images import dataset_info
    from diffnb.nets import NetConfig, UNetConfig

    info = dataset_info(job["dataset"])
    side = info.shape[1] if job.get("size") is None else int(job["size"])
    image_shape = (info.shape[0], side, side)
    if job["model"] == "unet":
        return UNetConfig.ddpm(image_shape, channels=job["channels"], schedule=job["schedule"]), image_shape
    if job["model"] == "mlp":
        d = int(np.prod(image_shape))
        return NetConfig(d=d, width=job.get("width", 256), depth=job.get("depth", 3), sigma_data=1.0), image_shape
    raise ValueError(f"job['model'] must be 'unet' or 'mlp', got {job['model']!r}")


def run_image_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one network of the sweep (cached and resumable), then measure it.

    Returns a dict of arrays: ``spectra`` ``(n_eval, d)`` at the job's step, ``dims_threshold`` and
    ``dims_cliff`` ``(n_eval,)``, ``copy_ratio`` ``(n_samples,)`` of DDPM samples, ``samples``, ``losses``,
    and the scalars ``t`` and ``train_seconds``.
    """
    from diffnb.data.images import load_subset
    from diffnb.training import TrainConfig, train_score_model

    train = load_subset(job["dataset"], job["n_train"], seed=job["seed"], size=job.get("size"), flat=True)
    net, image_shape = job_network(job)
    d = train.shape[1]
    cfg = TrainConfig(
        steps=job["steps"],
        batch_size=job["batch_size"],
        lr=job["lr"],
        ema_decay=job["ema_decay"],
        grad_clip=job["grad_clip"],
        schedule=job["schedule"],
        step_sampling=job["step_sampling"],
        lr_schedule="constant",
        warmup_steps=0,
        ema_warmup=job["ema_warmup"],
        seed=job["seed"],
    )
    started = time.perf_counter()
    trained = train_score_model(train, net, cfg, checkpoint_every=job.get("checkpoint_every"))
    train_seconds = time.perf_counter() - started
    model = trained.model
    device = next(model.parameters()).device
    t = step_time(job["step"], job["schedule"])
    evaluation = (
        train
        if job["eval_split"] == "train"
        else load_subset(job["dataset"], job["n_eval"], seed=job["seed"], split="test", size=job.get("size"), flat=True)
    )
    evaluation = evaluation[: job["n_eval"]].to(device)
    spectra = image_spectra(
        model.score,
        evaluation,
        t,
        method=job["spectrum"],
        k_mult=job["k_mult"],
        noise=job["noise"],
        image_shape=image_shape,
        batch_size=4,
        seed=job["seed"],
    )
    c, d_bar = CLIFF_SETTINGS[job["dataset"]]
    result: dict[str, Any] = {
        "t": t,
        "spectra": spectra,
        "dims_threshold": image_dimensions(spectra, "threshold"),
        "dims_cliff": image_dimensions(spectra, "cliff", c=c, d_bar=min(d_bar, d - 3)),
        "losses": np.asarray(trained.losses, dtype=np.float32),
        "train_seconds": float(train_seconds if not trained.from_cache else trained.extra.get("trained_seconds", 0)),
    }
    if job.get("n_samples"):
        samples = generate(
            model.score, job["n_samples"], d, n_steps=job["sample_steps"], seed=job["seed"], device=device
        )
        result["samples"] = samples.cpu().numpy()
        result["copy_ratio"] = copy_ratio(samples.cpu(), train)
    return result


def generate(
    score_fn: ScoreFn,
    n: int,
    d: int,
    *,
    n_steps: int = 200,
    t_max: float | None = None,
    t_min: float | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    denoise: bool = True,
) -> torch.Tensor:
    """Samples from a score model: the reverse SDE on a geometric grid of VE variances, then a Tweedie step.

    The grid runs from ``t_max`` (default: the last step of the papers' DDPM schedule, :math:`t \\approx
    2.5\\times10^4`) down to ``t_min`` (default: step 0, :math:`t = 10^{-4}`) in ``n_steps`` steps
    (:func:`diffnb.sampling.noise_grid`), starting from pure noise :math:`\\mathcal N(0, t_{max} I)`.

    Parameters
    ----------
    score_fn
        ``score_fn(x, t)`` on flat samples ``(n, d)`` at VE variances ``t`` of shape ``(n,)``.
    n, d
        Number of samples and their dimension.
    n_steps
        Euler–Maruyama steps of the reverse SDE (:func:`diffnb.sampling.sample`).
    t_max, t_min
        First and last VE variance of the grid.
    seed
        Seeds the start and the SDE noise (one CPU generator; a CUDA generator of the same seed for the noise
        on a GPU).
    device, dtype
        Where and in which precision the samples are computed.
    denoise
        Apply the final denoising step (default). The reverse SDE stops at ``t_min`` with samples that still
        carry the noise of variance ``t_min`` that the last level leaves; the final step replaces each by the
        posterior mean :math:`x + t_{min}\\,s(x, t_{min})` (Tweedie's formula), the model's estimate of the
        clean data point behind it. ``False`` skips it and returns the reverse SDE's states at ``t_min``:
        samples of the model's law noised to ``t_min``. Chapter 8 does that: it samples a network over its
        trained range only (``t`` from :math:`\\sigma_{max}^2 = 25` at ``quick`` scale down to
        :math:`\\sigma_{min}^2 = 4\\times10^{-4}`) and measures the samples' distance to the
        manifold against :math:`\\sqrt{t_{min}}`, the noise that the last level leaves.

    Returns
    -------
    torch.Tensor
        ``(n, d)`` on ``device``.
    """
    from diffnb.sampling import noise_grid, sample

    if not isinstance(denoise, (bool, np.bool_)):
        raise ValueError(f"denoise must be True or False, got {denoise!r}")
    t_max = float(step_time(999)) if t_max is None else t_max
    t_min = float(step_time(0)) if t_min is None else t_min
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    x0 = (torch.randn(n, d, generator=gen, dtype=dtype) * t_max**0.5).to(device)
    grid = noise_grid(t_max, t_min, n_steps)
    cuda_gen = torch.Generator(device=device).manual_seed(int(seed)) if torch.device(device).type == "cuda" else gen
    result = sample(score_fn, x0, grid, generator=cuda_gen, progress=False)
    x = result.samples
    if not denoise:
        return x
    with torch.no_grad():
        return x + t_min * score_fn(x, torch.full((n,), t_min, dtype=x.dtype, device=x.device))


def _int_list(text: str, minimum: int, what: str) -> list[int]:
    try:
        values = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{what} must be comma-separated integers, got {text!r}") from exc
    if not values or any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"{what} needs integers >= {minimum}, got {text!r}")
    return values


def _sizes(text: str) -> list[int]:
    return _int_list(text, 2, "--sizes")


def _seeds(text: str) -> list[int]:
    return _int_list(text, 0, "--seeds")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m diffnb.image_protocol --dataset mnist --sizes 1000,2000,5000,10000,60000 [options]``.

    Runs the memorization paper's image protocol (:func:`paper_job`) for every size and seed, one after
    another, through the cache: a finished point is read back, an interrupted training resumes from its last
    checkpoint (every ``--checkpoint-every`` steps). Prints one line per point and a JSON summary of the
    dimension against the training-set size. Set ``DIFFNB_SCALE=paper`` (the default here) and
    ``DIFFNB_CACHE`` to a disk that survives the job; ``--steps`` shortens training for a trial run.
    """
    import os

    os.environ.setdefault("DIFFNB_SCALE", "paper")
    from diffnb.data.images import DATASETS
    from diffnb.experiments import run_job

    parser = argparse.ArgumentParser(
        prog="python -m diffnb.image_protocol",
        description=(
            "Run the memorization paper's image protocol (DDPM U-Net, spectra at DDPM step 15, latent dimension, "
            "copies) for one data set and a list of training-set sizes. Every point and every training "
            "checkpoint goes to the cache (DIFFNB_CACHE), so an interrupted run resumes where it stopped."
        ),
    )
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--sizes", required=True, type=_sizes, help="training-set sizes, e.g. 1000,2000,5000")
    parser.add_argument("--seeds", default=[0], type=_seeds, help="seeds, e.g. 0,1,2 (default 0)")
    parser.add_argument("--steps", type=int, help="training steps (paper: 400000)")
    parser.add_argument("--channels", type=int, help="U-Net base channels (paper: 128 colour, 64 grey)")
    parser.add_argument("--model", choices=("unet", "mlp"), default="unet")
    parser.add_argument("--size", type=int, help="image side length (default: native)")
    parser.add_argument("--n-eval", type=int, help="images at which spectra are computed (paper default 64)")
    parser.add_argument("--spectrum", choices=SPECTRUM_METHODS[:2], help="probe (paper) or autograd (exact)")
    parser.add_argument("--n-samples", type=int, help="DDPM samples for the copy ratio (0: none)")
    parser.add_argument("--checkpoint-every", type=int, help="steps between resumable checkpoints")
    args = parser.parse_args(argv)
    seeds = args.seeds
    overrides = {
        key: value
        for key, value in {
            "steps": args.steps,
            "channels": args.channels,
            "model": args.model,
            "size": args.size,
            "n_eval": args.n_eval,
            "spectrum": args.spectrum,
            "n_samples": args.n_samples,
            "checkpoint_every": args.checkpoint_every,
        }.items()
        if value is not None
    }
    summary = []
    for n_train in args.sizes:
        for seed in seeds:
            job = paper_job(args.dataset, n_train, seed, **overrides)
            record = run_job("images-memorization", job)
            result = record["result"]
            dims = np.asarray(result["dims_cliff"]), np.asarray(result["dims_threshold"])
            line = {
                "dataset": args.dataset,
                "n_train": n_train,
                "seed": seed,
                "dim_cliff_mean": float(dims[0].mean()),
                "dim_cliff_std": float(dims[0].std()),
                "dim_threshold_mean": float(dims[1].mean()),
                "dim_threshold_std": float(dims[1].std()),
                "seconds": float(record["seconds"]),
            }
            if "copy_ratio" in result:
                line["copy_fraction"] = copy_fraction(result["copy_ratio"])
            print(json.dumps(line), flush=True)
            summary.append(line)
    print(json.dumps({"summary": summary}, indent=1))
    return 0


def image_jobs(scale: str) -> list[dict[str, Any]]:
    """The jobs of the experiment ``images-memorization`` at ``scale``.

    ``paper``: MNIST at the paper's sizes with the paper's U-Net and 400k steps (a GPU's work). ``quick`` and
    ``full``: CPU trials on the digits, the README's ``--model mlp`` at 2 000 (``quick``) or 8 000 (``full``)
    steps, with the paper's probes and dimension rule — minutes on a CPU, not the paper's networks.
    """
    from diffnb.config import get_scale, pick

    scale = get_scale(scale)
    sizes = pick(
        quick=[16, 40, 100, 250, 600, 1497],
        full=[16, 40, 100, 250, 600, 1497],
        paper=[1000, 2000, 3000, 5000, 10000, 20000, 60000],
        scale=scale,
    )
    if scale == "paper":
        return [paper_job("mnist", n) for n in sizes]
    steps = pick(quick=2_000, full=8_000, scale=scale)
    return [paper_job("digits", n, model="mlp", steps=steps) for n in sizes]


if __name__ == "__main__":
    sys.exit(main())
