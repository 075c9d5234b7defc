r"""Denoising score matching for :class:`diffnb.nets.ScoreMLP` and :class:`diffnb.nets.UNet`, one model or
an ensemble at once.

The loss is the noise-matching loss of the memorization paper's code: a training point :math:`x_0`, a noise
scale :math:`\sigma`, and

.. math:: \mathcal L = \mathbb E\,\lVert \hat\varepsilon(x_0 + \sigma\varepsilon, \sigma) - \varepsilon\rVert^2 / d ,

**Noise levels.** ``schedule="ve"`` (chapter 5, the paper's synthetic runs) draws :math:`\sigma`
log-uniformly between ``sigma_min`` and ``sigma_max``. ``schedule="linear"`` or ``"cosine"`` is the DDPM path
of the image experiments: DDPM step :math:`k` has the VE noise variance
:math:`\sigma_k^2 = (1-\bar\alpha_k)/\bar\alpha_k` (notation appendix), and since
:math:`x/\sqrt{1+\sigma^2} = \sqrt{\bar\alpha}\,x_0 + \sqrt{1-\bar\alpha}\,\varepsilon`, the noise to predict
is the same in both parametrisations: the loss above *is* the DDPM loss. ``step_sampling="uniform"`` draws
:math:`k` uniformly (DDPM); ``"log_sigma"`` draws :math:`\log\sigma` uniformly over the schedule's range,
which gives short CPU runs their share of small noise levels.

The loss is minimised by Adam or RAdam (optionally weighted per noise level, ``loss_weighting``), with a
linear warm-up and a cosine or constant learning rate, and optionally per-member gradient clipping
(``grad_clip``). An exponential moving average (EMA) of the weights is kept, and the EMA weights are the model
handed back for analysis (as in the papers' code). All draws (mini-batches, noise scales,
noise) come from a generator seeded per member, so a seed fixes a run whatever the global random state.

**Ensembles.** :func:`train_ensemble` trains many small models — the points of a data-set-size sweep, or
several seeds — in one process as one vectorised model: their parameters are stacked
(:func:`torch.func.stack_module_state`) and one batched forward pass runs all of them per step, either
:func:`diffnb.nets.stacked_forward` (batched matrix products with fused biases, the default) or a
:func:`torch.func.vmap` of the module (``engine="vmap"``; U-Nets always take this path). Each member draws its
mini-batches, noise scales and noise from its own generator in the same order as when trained alone, Adam and
the EMA act element-wise, and the summed loss gives every member its own gradient, so the ensemble reproduces
training the members one by one up to floating-point rounding (``vectorize=False`` does exactly that, for
checks and benchmarks).

**Caching.** Every trained member is stored in :mod:`diffnb.cache` under a key made of the network and
training configurations, its seed and a digest of its training set; a later call (also from an ensemble of a
different composition) loads it instead of training. Long runs can write resumable checkpoints
(``checkpoint_every``).

**Threads.** Tiny networks train fastest on one CPU thread: thread hand-offs cost more than the arithmetic
(``benchmarks/training.py`` measures it). ``threads="auto"`` uses one thread on CPU for the duration of the
call and restores the previous setting afterwards.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import functools
import math
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from diffnb import cache
from diffnb._progress import tqdm
from diffnb._validation import check_choice, check_positive_int, dataclass_from_dict, env_flag
from diffnb.config import get_device, get_scale, torch_threads
from diffnb.nets import NetConfig, ScoreMLP, UNet, UNetConfig, build_model, config_from_dict, stacked_forward
from diffnb.schedules import VPSchedule

OPTIMIZERS = ("adam", "radam")
LOSS_WEIGHTINGS = ("uniform", "edm")
LR_SCHEDULES = ("constant", "cosine")
NOISE_SCHEDULES = ("ve", "linear", "cosine")
STEP_SAMPLINGS = ("uniform", "log_sigma")
#: Fields that enter :meth:`TrainConfig.to_dict` only when they differ from their defaults, so that the cache
#: keys of models trained before they existed stay valid.
_OPTIONAL_FIELDS = ("schedule", "T", "beta_start", "beta_end", "step_sampling", "grad_clip")
#: Steps whose random draws are made at once. Part of the algorithm (it fixes the order of the draws), so it
#: enters the cache key through :data:`ALGORITHM_VERSION`.
DRAW_CHUNK = 100
#: Version of the training algorithm; part of every cache key. Raise it when a change alters trained weights,
#: or what a network of an unchanged configuration computes from its weights (:mod:`diffnb.nets`: its noise
#: features, embeddings, preconditioning), so that a cached network is retrained instead of loaded stale.
ALGORITHM_VERSION = 2  # 2: EDM loss weights normalised over the noise levels drawn (DDPM schedules)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of denoising score matching.

    Parameters
    ----------
    steps
        Optimiser steps.
    batch_size
        Training points per step (drawn with replacement).
    lr
        Peak learning rate.
    optimizer
        ``"adam"`` or ``"radam"`` (the official code).
    weight_decay
        L2 weight decay of the optimiser.
    sigma_min, sigma_max
        Range of the noise scale (standard deviation) of ``schedule="ve"``; ``sigma`` is log-uniform on it.
    ema_decay
        Decay of the exponential moving average of the weights.
    ema_warmup
        Use the decay ``min(ema_decay, (1 + k) / (10 + k))`` at step ``k`` so that the average forgets the
        random initialisation early in short runs.
    lr_schedule
        ``"constant"`` or ``"cosine"`` (decay to zero at the last step).
    warmup_steps
        Linear learning-rate warm-up.
    loss_weighting
        ``"uniform"``: the plain noise-matching loss (the official code). ``"edm"``: each sample weighted by
        :math:`1 + \\sigma^2/\\sigma_{data}^2` (``sigma_data`` of the network; scaled to average 1 over the
        noise levels that training draws), which makes the loss uniform in the units of the denoiser (Karras
        et al. 2022) and gives the large noise levels, where the noise is easy to predict but its
        data-dependent part is small, their share of the fit.
    seed
        Seed of the initialisation and of the draws (mini-batches, noise scales, noise).
    schedule
        ``"ve"``: noise scales log-uniform on ``[sigma_min, sigma_max]``. ``"linear"`` or ``"cosine"``: the
        noise levels of a DDPM schedule with ``T`` steps (linear: :math:`\\beta` from ``beta_start`` to
        ``beta_end``), in VE variables (see the module documentation).
    T, beta_start, beta_end
        The DDPM schedule (the papers': 1000 steps, :math:`\\beta` from 1e-4 to 0.02).
    step_sampling
        How a DDPM schedule's noise level is drawn: ``"uniform"`` over the steps (DDPM, the default) or
        ``"log_sigma"`` (log-uniform over the schedule's range of :math:`\\sigma`). ``None`` with
        ``schedule="ve"``.
    grad_clip
        Clip each member's gradient to this Euclidean norm (``None``: no clipping; the papers' image runs
        use 1.0).
    """

    steps: int = 4000
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    sigma_min: float = 0.01
    sigma_max: float = 10.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    lr_schedule: str = "cosine"
    warmup_steps: int = 100
    loss_weighting: str = "uniform"
    seed: int = 0
    schedule: str = "ve"
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    step_sampling: str | None = None
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            check_positive_int(getattr(self, name), name)
        if not isinstance(self.warmup_steps, (int, np.integer)) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("sigma_min", "sigma_max", "lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value!r}")
        if self.sigma_min >= self.sigma_max:
            raise ValueError(
                f"sigma_min must be smaller than sigma_max, got sigma_min={self.sigma_min} >= "
                f"sigma_max={self.sigma_max}"
            )
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay}")
        check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        check_choice(self.loss_weighting, LOSS_WEIGHTINGS, "loss_weighting")
        check_choice(self.lr_schedule, LR_SCHEDULES, "lr_schedule")
        check_choice(self.schedule, NOISE_SCHEDULES, "schedule")
        if self.step_sampling is not None and self.step_sampling not in STEP_SAMPLINGS:
            raise ValueError(f"step_sampling must be None or one of {STEP_SAMPLINGS}, got {self.step_sampling!r}")
        if self.schedule == "ve" and self.step_sampling is not None:
            raise ValueError(
                f"step_sampling={self.step_sampling!r} needs a DDPM schedule (schedule='linear' or 'cosine'); "
                f"schedule='ve' draws sigma log-uniformly on [sigma_min, sigma_max]"
            )
        if not isinstance(self.T, (int, np.integer)) or isinstance(self.T, bool) or self.T < 2:
            raise ValueError(f"T must be an integer number of DDPM steps >= 2, got {self.T!r}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(
                f"beta_start and beta_end must satisfy 0 < beta_start < beta_end < 1, got "
                f"beta_start={self.beta_start}, beta_end={self.beta_end}"
            )
        if self.grad_clip is not None and not (
            isinstance(self.grad_clip, (int, float)) and math.isfinite(self.grad_clip) and self.grad_clip > 0
        ):
            raise ValueError(f"grad_clip must be None or a positive finite norm, got {self.grad_clip!r}")

    @classmethod
    def official(cls, steps: int = 2_000_000, seed: int = 42) -> TrainConfig:
        """The memorization paper's synthetic training (digest §3.1): RAdam, lr 1e-4, batch 128, EMA 0.9999,
        VE noise scale from 0.01 to 50, constant learning rate, seed 42."""
        return cls(
            steps=steps,
            batch_size=128,
            lr=1e-4,
            optimizer="radam",
            sigma_min=0.01,
            sigma_max=50.0,
            ema_decay=0.9999,
            ema_warmup=False,
            lr_schedule="constant",
            warmup_steps=0,
            seed=seed,
        )

    def to_dict(self) -> dict:
        """Plain dictionary (for cache keys and checkpoints); the DDPM fields appear only when set."""
        values = asdict(self)
        defaults = {f.name: f.default for f in fields(self)}
        for name in _OPTIONAL_FIELDS:
            if values[name] == defaults[name]:
                del values[name]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        return dataclass_from_dict(cls, values)


@dataclass
class TrainedModel:
    """A trained network and its record.

    Parameters
    ----------
    model
        The network with the **EMA** weights, in evaluation mode, parameters frozen. Use ``model.score``.
    raw_state
        The final (non-averaged) weights, a state dict.
    losses
        Loss at every step, shape ``(steps,)``.
    net_config, train_config
        The configurations (``train_config.seed`` is this member's seed).
    n_train
        Number of training points.
    seconds
        Wall time of the training (of the whole ensemble it was trained in); 0 when loaded from the cache.
    from_cache
        Whether it was loaded from the cache.
    """

    model: ScoreMLP | UNet
    raw_state: dict
    losses: np.ndarray
    net_config: NetConfig | UNetConfig
    train_config: TrainConfig
    n_train: int
    seconds: float = 0.0
    from_cache: bool = False
    extra: dict = field(default_factory=dict)

    def score(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """The EMA network's score at VE variance ``t`` (see :meth:`diffnb.nets.ScoreNetwork.score`)."""
        return self.model.score(x, t)

    def final_loss(self, window: int = 200) -> float:
        """Mean loss over the last ``window`` steps."""
        return float(np.mean(self.losses[-window:]))

    def to_record(self) -> dict:
        """The plain record the training cache stores: both configurations as dicts, the EMA and raw weights
        on the CPU, the losses in float32, the number of training points and the training time."""
        return {
            "net_config": self.net_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "ema_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "raw_state": {k: v.detach().cpu() for k, v in self.raw_state.items()},
            "losses": np.asarray(self.losses, dtype=np.float32),
            "n_train": int(self.n_train),
            "seconds": float(self.seconds),
        }

    @classmethod
    def from_record(cls, record: dict, device: torch.device | str) -> TrainedModel:
        """Rebuild a network from a record of :meth:`to_record`'s form, with its EMA weights, on ``device``,
        frozen and in evaluation mode. ``seconds`` is 0 and ``extra["trained_seconds"]`` the recorded time."""
        net_config = config_from_dict(record["net_config"])
        model = build_model(net_config)
        model.load_state_dict(record["ema_state"])
        model.to(device).eval().requires_grad_(False)
        return cls(
            model=model,
            raw_state=record["raw_state"],
            losses=np.asarray(record["losses"]),
            net_config=net_config,
            train_config=TrainConfig.from_dict(record["train_config"]),
            n_train=int(record["n_train"]),
            seconds=0.0,
            from_cache=True,
            extra={"trained_seconds": float(record["seconds"])},
        )


# ----------------------------------------------------------------------------------------------- helpers
def _as_training_set(data, d: int, name: str = "data") -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        tensor = data.detach().to("cpu", torch.float32)
    else:
        array = np.asarray(data)
        if array.dtype == object or not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"{name} must be a numeric array of shape (P, d), got dtype {array.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if tensor.ndim != 2:
        raise ValueError(f"{name} must have shape (P, d) = (points, features), got shape {tuple(tensor.shape)}")
    if tensor.shape[0] < 1:
        raise ValueError(f"{name} is empty: it needs at least one training point")
    if tensor.shape[1] != d:
        raise ValueError(f"{name} has {tensor.shape[1]} features but the network expects d={d}")
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).any(dim=1).sum())
        raise ValueError(f"{name} holds NaN or infinite values (in {bad} of {tensor.shape[0]} points)")
    return tensor.contiguous()


def _sub_seeds(seed: int) -> tuple[int, int]:
    """Independent seeds for the initialisation and for the draws of one member."""
    init, draws = np.random.SeedSequence(int(seed)).generate_state(2)
    return int(init), int(draws)


def _lr_factor(cfg: TrainConfig, step: int) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        span = max(1, cfg.steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def _ema_decay(cfg: TrainConfig, step: int) -> float:
    if cfg.ema_warmup:
        return min(cfg.ema_decay, (1.0 + step) / (10.0 + step))
    return cfg.ema_decay


@functools.lru_cache(maxsize=8)
def _step_sigmas(schedule: str, T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """VE noise scales of the DDPM steps, built once per schedule rather than at every chunk of draws."""
    sched = VPSchedule.named(schedule, T, beta_start, beta_end)
    return torch.from_numpy(np.sqrt(sched.ve_time(np.arange(T)))).float()


def _sigma_sampler(cfg: TrainConfig) -> tuple[torch.Tensor | None, float, float]:
    """How training draws the noise scale: ``(table, lo, hi)`` with ``table`` the DDPM steps' noise scales when
    steps are drawn uniformly, else ``None`` and ``sigma`` log-uniform on ``[lo, hi]`` (``[sigma_min,
    sigma_max]`` for ``"ve"``, the schedule's first and last step otherwise)."""
    if cfg.schedule == "ve":
        return None, cfg.sigma_min, cfg.sigma_max
    table = _step_sigmas(cfg.schedule, cfg.T, cfg.beta_start, cfg.beta_end)
    uniform_steps = cfg.step_sampling in (None, "uniform")
    return (table if uniform_steps else None), float(table[0]), float(table[-1])


def _training_sigmas(cfg: TrainConfig) -> torch.Tensor:
    """Noise scales standing for the training distribution of ``sigma`` (float64): every step of a DDPM
    schedule drawn uniformly, or a log-uniform grid of 1001 levels (:func:`_sigma_sampler`)."""
    table, lo, hi = _sigma_sampler(cfg)
    if table is not None:
        return table.double()
    return lo * (hi / lo) ** torch.linspace(0, 1, 1001, dtype=torch.float64)


def _edm_weight_scale(cfg: TrainConfig, sigma_data: float) -> float:
    """Factor that makes the EDM weight :math:`1 + \\sigma^2/\\sigma_{data}^2` average to 1 over the training
    distribution of ``sigma``, so that losses stay comparable with the uniform weighting."""
    return float(1.0 / (1.0 + _training_sigmas(cfg) ** 2 / sigma_data**2).mean())


def _draw(generators, sizes, cfg: TrainConfig, d: int, steps: int):
    """Random draws of ``steps`` consecutive steps for every member, in a fixed order per member.

    Returns indices ``(steps, K, B)`` (into each member's own data), ``sigma (steps, K, B)`` and noise
    ``(steps, K, B, d)``.
    """
    idx, sig, noise = [], [], []
    table, sigma_min, sigma_max = _sigma_sampler(cfg)
    log_ratio = math.log(sigma_max / sigma_min)
    for gen, size in zip(generators, sizes, strict=True):
        idx.append(torch.randint(size, (steps, cfg.batch_size), generator=gen))
        if table is not None:
            sig.append(table[torch.randint(cfg.T, (steps, cfg.batch_size), generator=gen)])
        else:
            u = torch.rand((steps, cfg.batch_size), generator=gen)
            sig.append(sigma_min * torch.exp(u * log_ratio))
        noise.append(torch.randn((steps, cfg.batch_size, d), generator=gen))
    return torch.stack(idx, 1), torch.stack(sig, 1), torch.stack(noise, 1)


def _make_optimizer(tensors: list[torch.Tensor], cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam or RAdam; the fused (Adam) or multi-tensor (RAdam) kernels cut the per-step overhead of small
    models several-fold and act element-wise, like the plain loop."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(tensors, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    return torch.optim.RAdam(tensors, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def _clip_per_member(tensors: list[torch.Tensor], max_norm: float, stacked: bool) -> None:
    """Scale each member's gradient to Euclidean norm at most ``max_norm`` (members on the first axis when
    ``stacked``), as ``torch.nn.utils.clip_grad_norm_`` does for one model."""
    grads = [t.grad for t in tensors if t.grad is not None]
    if stacked:
        squares = torch.stack([g.reshape(g.shape[0], -1).square().sum(dim=1) for g in grads]).sum(dim=0)
    else:
        squares = torch.stack([g.square().sum() for g in grads]).sum()
    factor = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(factor.reshape(-1, *([1] * (g.ndim - 1))) if stacked else factor)


def _threads(threads: int | str | None, device: torch.device) -> contextlib.AbstractContextManager:
    if threads == "auto":
        threads = 1 if device.type == "cpu" else None
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer, 'auto' or None, got {threads!r}")
    return torch_threads(threads)


def _progress_enabled(progress: bool | None) -> bool:
    """``progress`` itself, or for ``None`` the default: ``DIFFNB_PROGRESS`` when it is set, else on except at
    ``quick`` scale, whose outputs go into CI logs and the published book."""
    if progress is not None:
        return bool(progress)
    flag = env_flag("DIFFNB_PROGRESS")
    return get_scale() != "quick" if flag is None else flag


def member_key(net_config: NetConfig | UNetConfig, train_config: TrainConfig, data: torch.Tensor) -> dict:
    """The configuration that identifies one trained member in the cache."""
    return {
        "net": net_config.to_dict(),
        "train": train_config.to_dict(),
        "data": cache.array_digest(data.numpy()),
        "algorithm": ALGORITHM_VERSION,
        "draw_chunk": DRAW_CHUNK,
    }


# ----------------------------------------------------------------------------------------------- core
def _train_stack(
    datasets: list[torch.Tensor],
    seeds: list[int],
    net_config: NetConfig | UNetConfig,
    cfg: TrainConfig,
    *,
    device: torch.device,
    progress: bool,
    desc: str,
    checkpoint_every: int | None,
    checkpoint_key: dict | None,
    engine: str = "stacked",
) -> list[TrainedModel]:
    """Train ``len(datasets)`` members as one stacked model (plain forward when there is one member)."""
    K, d = len(datasets), net_config.d
    sizes = [int(x.shape[0]) for x in datasets]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(sizes)[:-1]]), dtype=torch.long)
    data_all = torch.cat(datasets).to(device)
    models = [build_model(net_config, seed=_sub_seeds(s)[0]) for s in seeds]
    generators = [torch.Generator().manual_seed(_sub_seeds(s)[1]) for s in seeds]
    vectorized = K > 1

    if vectorized:
        params, buffers = stack_module_state(models)
        params = {k: v.detach().to(device).requires_grad_(True) for k, v in params.items()}
        buffers = {k: v.to(device) for k, v in buffers.items()}
        if engine == "vmap" or isinstance(net_config, UNetConfig):
            base = copy.deepcopy(models[0]).to("meta")

            def one(p, b, x, sigma):
                return functional_call(base, (p, b), (x, sigma))

            batched = vmap(one, in_dims=(0, 0, 0, 0), randomness="different")

            def forward(p, b, x, sigma):
                return batched(p, b, x, sigma)
        else:

            def forward(p, b, x, sigma):
                return stacked_forward(p, net_config, x, sigma, training=True)

        names = list(params)
        tensors = [params[n] for n in names]
    else:
        model = models[0].to(device).train()
        names = [n for n, _ in model.named_parameters()]
        tensors = [p for _, p in model.named_parameters()]
        forward = None

    optimizer = _make_optimizer(tensors, cfg, device)
    ema = [t.detach().clone() for t in tensors]
    losses = torch.zeros(cfg.steps, K)
    start_step = 0
    weights = None
    if cfg.loss_weighting == "edm":
        weights = _edm_weight_scale(cfg, net_config.sigma_data)

    if checkpoint_key is not None and checkpoint_every:
        state = cache.lookup("score_mlp_checkpoint", checkpoint_key)
        if state is not None and state["step"] < cfg.steps:
            with torch.no_grad():
                for t, v in zip(tensors, state["params"], strict=True):
                    t.copy_(v.to(device))
                for e, v in zip(ema, state["ema"], strict=True):
                    e.copy_(v.to(device))
            optimizer.load_state_dict(state["optimizer"])
            for g, s in zip(generators, state["generators"], strict=True):
                g.set_state(s)
            losses[: state["step"]] = state["losses"][: state["step"]]
            start_step = int(state["step"])

    started = time.perf_counter()
    bar = tqdm(
        total=cfg.steps, initial=start_step, desc=desc, disable=not progress, mininterval=0.5, unit="step", leave=True
    )
    step = start_step
    while step < cfg.steps:
        n_chunk = min(DRAW_CHUNK, cfg.steps - step)
        idx, sig, noise = _draw(generators, sizes, cfg, d, n_chunk)
        gidx = (idx + offsets[None, :, None]).to(device)
        sig, noise = sig.to(device), noise.to(device)
        for j in range(n_chunk):
            x0 = data_all[gidx[j]]  # (K, B, d)
            sigma, eps = sig[j], noise[j]
            noisy = x0 + sigma[..., None] * eps
            if vectorized:
                pred = forward(params, buffers, noisy, sigma)
            else:
                pred = model(noisy[0], sigma[0])[None]
            per_sample = ((pred - eps) ** 2).mean(dim=2)
            if weights is not None:
                per_sample = per_sample * (1.0 + sigma**2 / net_config.sigma_data**2) * weights
            per_member = per_sample.mean(dim=1)
            factor = _lr_factor(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * factor
            optimizer.zero_grad(set_to_none=True)
            per_member.sum().backward()
            if cfg.grad_clip is not None:
                _clip_per_member(tensors, cfg.grad_clip, vectorized)
            optimizer.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema, tensors, 1.0 - _ema_decay(cfg, step))
            losses[step] = per_member.detach().cpu()
            step += 1
        if not bool(torch.isfinite(losses[step - n_chunk : step]).all()):
            bar.close()
            raise FloatingPointError(
                f"training diverged (non-finite loss) before step {step}; lower lr={cfg.lr} or check the data scale"
            )
        bar.update(n_chunk)
        bar.set_postfix(loss=f"{float(losses[step - n_chunk : step].mean()):.4f}")
        if checkpoint_key is not None and checkpoint_every and step < cfg.steps and step % checkpoint_every < n_chunk:
            cache.store(
                "score_mlp_checkpoint",
                checkpoint_key,
                {
                    "step": step,
                    "params": [t.detach().cpu() for t in tensors],
                    "ema": [e.cpu() for e in ema],
                    "optimizer": optimizer.state_dict(),
                    "generators": [g.get_state() for g in generators],
                    "losses": losses[:step].clone(),
                },
            )
    bar.close()
    seconds = time.perf_counter() - started
    if checkpoint_key is not None and checkpoint_every:
        cache.remove("score_mlp_checkpoint", checkpoint_key)

    results = []
    for k in range(K):
        ema_model = build_model(net_config)
        raw_state = {}
        ema_state = {}
        for name, t, e in zip(names, tensors, ema, strict=True):
            raw_state[name] = (t[k] if vectorized else t).detach().cpu().clone()
            ema_state[name] = (e[k] if vectorized else e).detach().cpu().clone()
        ema_model.load_state_dict(ema_state)
        ema_model.to(device).eval().requires_grad_(False)
        results.append(
            TrainedModel(
                model=ema_model,
                raw_state=raw_state,
                losses=losses[:, k].numpy().copy(),
                net_config=net_config,
                train_config=replace(cfg, seed=int(seeds[k])),
                n_train=sizes[k],
                seconds=seconds,
            )
        )
    return results


# ----------------------------------------------------------------------------------------------- public
def train_ensemble(
    datasets: Sequence,
    net_config: NetConfig,
    train_config: TrainConfig | None = None,
    *,
    seeds: Sequence[int] | None = None,
    vectorize: bool = True,
    use_cache: bool = True,
    progress: bool | None = None,
    threads: int | str | None = "auto",
    device: str | torch.device | None = None,
    checkpoint_every: int | None = None,
    desc: str | None = None,
    engine: str = "stacked",
) -> list[TrainedModel]:
    """Train one network per data set (same architecture and hyper-parameters), all at once.

    Parameters
    ----------
    datasets
        A list of training sets, each of shape ``(P_k, d)`` (sizes may differ).
    net_config, train_config
        Architecture and training hyper-parameters shared by all members.
    seeds
        One seed per member; by default ``train_config.seed + k``.
    vectorize
        Train as one vectorised model (``True``) or one after another (``False``); the results agree up to
        floating-point rounding.
    use_cache
        Load members found in :mod:`diffnb.cache` and store the newly trained ones.
    progress
        Show a tqdm bar with the loss. ``None``: ``DIFFNB_PROGRESS`` when set (``1``/``0``), else on except
        at ``quick`` scale (the scale of CI and of the published book, whose outputs should hold no bars).
    threads
        CPU threads during training: ``"auto"`` (one thread on CPU), an integer, or ``None`` (unchanged).
    device
        Where to train; by default :func:`diffnb.config.get_device`.
    checkpoint_every
        Write a resumable checkpoint to the cache every so many steps (rounded up to whole chunks of
        :data:`DRAW_CHUNK` steps); an interrupted call resumes from it.
    desc
        Label of the progress bar.
    engine
        How a vectorised ensemble runs its members: ``"stacked"`` (:func:`diffnb.nets.stacked_forward`,
        batched matrix products with fused biases; the fastest on a CPU) or ``"vmap"``
        (:func:`torch.func.vmap` of :func:`torch.func.functional_call` over the module). Both give the same
        results up to rounding.

    Returns
    -------
    list[TrainedModel]
        One per data set, in order.
    """
    if train_config is None:
        train_config = TrainConfig()
    if not isinstance(net_config, (NetConfig, UNetConfig)):
        raise TypeError(f"net_config must be a NetConfig or a UNetConfig, got {type(net_config).__name__}")
    if train_config.loss_weighting == "edm" and not isinstance(net_config, NetConfig):
        raise ValueError("loss_weighting='edm' needs the sigma_data of a NetConfig; use 'uniform' with a U-Net")
    if not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig, got {type(train_config).__name__}")
    if engine not in ("stacked", "vmap"):
        raise ValueError(f"engine must be 'stacked' or 'vmap', got {engine!r}")
    if isinstance(datasets, (np.ndarray, torch.Tensor)):
        raise TypeError("datasets must be a list of (P, d) arrays; for one data set use train_score_model")
    tensors = [_as_training_set(x, net_config.d, name=f"datasets[{k}]") for k, x in enumerate(datasets)]
    if not tensors:
        raise ValueError("datasets is empty: give at least one training set")
    if seeds is None:
        seeds = [train_config.seed + k for k in range(len(tensors))]
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(tensors):
        raise ValueError(f"seeds has {len(seeds)} entries for {len(tensors)} data sets")
    device = get_device() if device is None else torch.device(device)
    progress = _progress_enabled(progress)
    keys = [member_key(net_config, replace(train_config, seed=s), x) for s, x in zip(seeds, tensors, strict=True)]

    results: list[TrainedModel | None] = [None] * len(tensors)
    if use_cache:
        for k, key in enumerate(keys):
            record = cache.lookup("score_mlp", key)
            if record is not None:
                results[k] = TrainedModel.from_record(record, device)
    todo = [k for k, r in enumerate(results) if r is None]
    if todo:
        groups = [todo] if vectorize else [[k] for k in todo]
        with _threads(threads, device):
            for group in groups:
                label = desc or ("ensemble" if len(group) > 1 else "training")
                label = f"{label} ({len(group)} model{'s' if len(group) > 1 else ''})"
                ckpt = {"members": [keys[k] for k in group]} if (use_cache and checkpoint_every) else None
                trained = _train_stack(
                    [tensors[k] for k in group],
                    [seeds[k] for k in group],
                    net_config,
                    train_config,
                    device=device,
                    progress=progress,
                    desc=label,
                    checkpoint_every=checkpoint_every,
                    checkpoint_key=ckpt,
                    engine=engine,
                )
                for k, member in zip(group, trained, strict=True):
                    results[k] = member
                    if use_cache:
                        cache.store("score_mlp", keys[k], member.to_record())
    return results  # type: ignore[return-value]


def _exit_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Worker initializer: a daemon thread ends this process once its parent is gone.

    When the parent dies the worker is re-parented, so its parent id changes. Polling that (once a second)
    works on every platform and whichever thread of the parent started the worker, which a Linux
    parent-death signal would not (it fires when the starting *thread* ends).
    """
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="diffnb-exit-with-parent", daemon=True).start()


def _worker_process() -> concurrent.futures.ProcessPoolExecutor:
    """One spawned worker process that does not outlive this one (see :func:`_exit_with_parent`)."""
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )


def train_ensemble_async(
    datasets: Sequence,
    net_config: NetConfig,
    train_config: TrainConfig | None = None,
    **options,
) -> concurrent.futures.Future:
    """Start :func:`train_ensemble` in a separate process and return a future of its result.

    On a machine with a spare core this overlaps one training with other work (another training, spectra):
    small networks train on one thread each, so two processes use two cores without the thread hand-offs
    that make two threads slower than one. The process is spawned (it imports the package afresh, about a
    few seconds) and inherits the environment, so ``DIFFNB_CACHE`` and ``DIFFNB_SCALE`` apply; the trained
    members are stored in the cache as usual and returned through the future. The process ends within a
    second of the one that started it, so a restarted or killed notebook kernel leaves no training running. The
    progress bar is off unless ``progress=True`` is passed (it would print to the process's own error
    stream).

    Examples
    --------
    >>> future = train_ensemble_async(datasets, net, cfg)        # doctest: +SKIP
    >>> other = train_ensemble(other_sets, net, cfg)              # doctest: +SKIP
    >>> models = future.result()                                  # doctest: +SKIP
    """
    options.setdefault("progress", False)
    executor = _worker_process()
    future = executor.submit(train_ensemble, list(datasets), net_config, train_config, **options)
    future.add_done_callback(lambda _: executor.shutdown(wait=False))
    return future


def train_score_model(
    data,
    net_config: NetConfig,
    train_config: TrainConfig | None = None,
    **options,
) -> TrainedModel:
    """Train one network on ``data`` of shape ``(P, d)``; options as in :func:`train_ensemble`."""
    if "seeds" in options or "vectorize" in options:
        raise TypeError("seeds and vectorize belong to train_ensemble; set train_config.seed instead")
    return train_ensemble([data], net_config, train_config, **options)[0]


def loss_on(model: ScoreMLP | UNet, data, sigmas: Sequence[float], *, n_noise: int = 4, seed: int = 0) -> np.ndarray:
    """Noise-matching loss of ``model`` on ``data`` at fixed noise scales (one value per sigma).

    Useful to compare networks at the same noise levels (the training loss mixes all of them).
    """
    X = _as_training_set(data, model.d)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    with torch.no_grad():
        for s in sigmas:
            total = 0.0
            for _ in range(n_noise):
                eps = torch.randn(X.shape, generator=gen)
                sigma = torch.full((X.shape[0],), float(s))
                pred = model((X + float(s) * eps).to(device), sigma.to(device)).cpu()
                total += float(((pred - eps) ** 2).mean())
            out.append(total / n_noise)
    return np.asarray(out)
