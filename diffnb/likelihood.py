r"""Maximum-likelihood density models for data on a manifold, for the comparison with diffusion (chapter 8).

A density model trained by maximum likelihood on data that lie exactly on an ``m``-dimensional manifold in
:math:`\mathbb R^d` has no maximum: squeezing its density onto the manifold raises the likelihood without
bound, whatever it does *inside* the manifold. This is **manifold overfitting** (Loaiza-Ganem et al., 2022).
Two tools show it:

* :func:`floor_log_likelihood` — the exact log-likelihood of a Gaussian model whose tangent part is any
  covariance and whose normal part is an isotropic *floor* variance ``floor``. On data on the manifold it is
  the tangent log-likelihood plus :math:`\tfrac{d-m}{2}\log\frac{1}{2\pi\,\mathrm{floor}}`, which diverges as
  the floor shrinks, for a right and for a wrong tangent covariance alike.
* :class:`CouplingFlow` and :func:`train_flow` — a small RealNVP normalizing flow (affine coupling layers
  with alternating masks and fixed random permutations, Dinh et al., 2017) trained by maximum likelihood with
  Adam. ``noise_std > 0`` trains on the data *thickened* by fresh Gaussian noise at every step, i.e. on the
  noised distribution of one diffusion noise level ``t = noise_std**2``, the fix of Loaiza-Ganem et al.'s
  diagnosis that diffusion applies at every level.

This module depends on NumPy and torch, and on :mod:`diffnb.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from diffnb._progress import tqdm
from diffnb._validation import check_positive_int
from diffnb.metrics import LinearFrame

__all__ = ["floor_log_likelihood", "AffineCoupling", "CouplingFlow", "FlowTraining", "train_flow"]


def floor_log_likelihood(x: Any, frame: LinearFrame, tangent_covariance: Any, floor: float) -> np.ndarray:
    r"""Log-density of a Gaussian with a given tangent covariance and an isotropic normal floor.

    The model is :math:`\mathcal N(0,\; U_\parallel \Sigma U_\parallel^\top + \mathrm{floor}\,U_\perp U_\perp^\top)`
    with the tangent and normal bases :math:`U_\parallel, U_\perp` of ``frame``:

    .. math:: \log p(x) = \log \mathcal N_m(U_\parallel^\top x;\, 0, \Sigma)
              - \frac{\lVert U_\perp^\top x\rVert^2}{2\,\mathrm{floor}} - \frac{d - m}{2}\log(2\pi\,\mathrm{floor}).

    Parameters
    ----------
    x
        Points, shape ``(n, d)``.
    frame
        Tangent and normal bases (:class:`diffnb.metrics.LinearFrame`).
    tangent_covariance
        Shape ``(m, m)`` symmetric positive definite (in the frame's tangent coordinates), or ``(m,)`` for a
        diagonal one.
    floor
        Variance of every normal coordinate, ``> 0``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``.
    """
    if not isinstance(frame, LinearFrame):
        raise ValueError(f"frame must be a LinearFrame, got {type(frame).__name__}")
    floor = float(floor)
    if not (math.isfinite(floor) and floor > 0):
        raise ValueError(f"floor must be a positive finite variance, got {floor!r}")
    cov = np.asarray(tangent_covariance, dtype=np.float64)
    if cov.ndim == 1:
        cov = np.diag(cov)
    if cov.shape != (frame.m, frame.m) or not np.all(np.isfinite(cov)):
        raise ValueError(f"tangent_covariance must be finite with shape ({frame.m}, {frame.m}) or ({frame.m},)")
    try:
        chol = np.linalg.cholesky(0.5 * (cov + cov.T))
    except np.linalg.LinAlgError as exc:
        raise ValueError("tangent_covariance must be positive definite") from exc
    tan = frame.tangent(x)
    nor = frame.normal(x)
    if tan.ndim != 2:
        raise ValueError(f"x must have shape (n, {frame.d}), got {np.shape(x)}")
    r = np.linalg.solve(chol, tan.T)
    tangent_ll = -0.5 * np.sum(r**2, axis=0) - np.sum(np.log(np.diag(chol))) - 0.5 * frame.m * np.log(2 * np.pi)
    n_normal = frame.d - frame.m
    normal_ll = -0.5 * np.sum(nor**2, axis=-1) / floor - 0.5 * n_normal * np.log(2 * np.pi * floor)
    return tangent_ll + normal_ll


class AffineCoupling(nn.Module):
    r"""One affine coupling layer: the masked half conditions a scale and shift of the other half.

    With a binary ``mask``, :math:`y = m \odot x + (1 - m) \odot (x\, e^{s(m\odot x)} + b(m \odot x))` and
    :math:`\log|\det \partial y/\partial x| = \sum (1 - m) \odot s`. The scale is not bounded, so that the
    flow can squeeze directions without limit (that is what maximum likelihood asks of it on a manifold).
    The last layer starts at zero: a fresh coupling is the identity.
    """

    def __init__(self, d: int, hidden: int, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))
        self.net = nn.Sequential(
            nn.Linear(d, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * d)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self.net(kept).chunk(2, dim=-1)
        free = 1.0 - self.mask
        return scale * free, shift * free

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data side to latent side: ``(y, log_det)``."""
        kept = x * self.mask
        scale, shift = self._scale_shift(kept)
        return kept + (1.0 - self.mask) * (x * torch.exp(scale) + shift), scale.sum(-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Latent side to data side."""
        kept = y * self.mask
        scale, shift = self._scale_shift(kept)
        return kept + (1.0 - self.mask) * ((y - shift) * torch.exp(-scale))


class CouplingFlow(nn.Module):
    """A RealNVP normalizing flow: affine couplings with alternating masks and fixed random permutations.

    Layer ``2j`` permutes the coordinates at random and transforms the odd positions given the even ones; layer
    ``2j + 1`` keeps that order and transforms the even positions given the odd ones.

    Parameters
    ----------
    d
        Dimension.
    n_layers
        Number of coupling layers (at least 2, so that every coordinate is transformed).
    hidden
        Width of the two hidden layers of every coupling network.
    seed
        Seed of the initial weights and of the permutations.

    Examples
    --------
    >>> flow = CouplingFlow(d=4, n_layers=2, hidden=8, seed=0)
    >>> x = torch.randn(3, 4)
    >>> torch.allclose(flow.inverse(flow(x)[0]), x, atol=1e-5)
    True
    """

    def __init__(self, d: int, n_layers: int = 4, hidden: int = 128, seed: int = 0) -> None:
        super().__init__()
        for name, value, low in (("d", d, 2), ("n_layers", n_layers, 2), ("hidden", hidden, 1)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.d = int(d)
        gen = torch.Generator().manual_seed(int(seed))
        # layers come in pairs: a random permutation with one mask, then no permutation with the complementary
        # mask, so that every pair transforms every coordinate
        identity = torch.arange(d)
        perms = torch.stack([torch.randperm(d, generator=gen) if k % 2 == 0 else identity for k in range(n_layers)])
        self.register_buffer("perms", perms)
        self.register_buffer("inverse_perms", torch.argsort(perms, dim=1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.layers = nn.ModuleList(
                AffineCoupling(d, hidden, (torch.arange(d) % 2 == k % 2).float()) for k in range(n_layers)
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data to latent: ``(z, log_det)`` with ``log p(x) = log N(z; 0, I) + log_det``."""
        log_det = x.new_zeros(x.shape[0])
        for perm, layer in zip(self.perms, self.layers, strict=True):
            x, ld = layer(x[:, perm])
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Latent to data."""
        for inv, layer in zip(reversed(self.inverse_perms), reversed(self.layers), strict=True):
            z = layer.inverse(z)[:, inv]
        return z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density of points ``x`` of shape ``(n, d)``; returns shape ``(n,)``."""
        z, log_det = self(x)
        return -0.5 * (z**2).sum(-1) - 0.5 * self.d * math.log(2 * math.pi) + log_det

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples, shape ``(n, d)``."""
        check_positive_int(n, "n")
        param = next(self.parameters())
        z = torch.randn(int(n), self.d, generator=generator, dtype=param.dtype)
        return self.inverse(z.to(param.device))


@dataclass
class FlowTraining:
    """Output of :func:`train_flow`.

    Parameters
    ----------
    flow
        The trained flow (evaluation mode).
    steps
        The steps at which the training set was evaluated, shape ``(n_records,)``.
    log_likelihood
        Mean log-likelihood per point of the whole (clean) training set at those steps.
    losses
        Mini-batch loss (negative mean log-likelihood, on the thickened data when ``noise_std > 0``) at every
        step.
    records
        What ``callback(flow, step)`` returned at every recorded step, in order.
    skipped
        Steps whose loss or gradient was not finite; the update was skipped.
    """

    flow: CouplingFlow
    steps: np.ndarray
    log_likelihood: np.ndarray
    losses: np.ndarray
    records: list = field(default_factory=list)
    skipped: int = 0


def train_flow(
    data: Any,
    *,
    n_layers: int = 4,
    hidden: int = 128,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-3,
    noise_std: float = 0.0,
    max_grad_norm: float = 100.0,
    record_every: int = 100,
    callback: Callable[[CouplingFlow, int], Any] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> FlowTraining:
    """Train a :class:`CouplingFlow` by maximum likelihood (Adam) on ``data``.

    Parameters
    ----------
    data
        Training points, shape ``(P, d)``; trained in float32.
    n_layers, hidden
        Architecture (:class:`CouplingFlow`).
    steps, batch_size, lr
        Adam steps, mini-batch size (drawn with replacement) and learning rate.
    noise_std
        Standard deviation of fresh Gaussian noise added to every mini-batch (0: the clean data).
    max_grad_norm
        Gradient-norm clipping; a step with a non-finite loss or gradient is skipped and counted.
    record_every
        Evaluate the training log-likelihood (on the clean data) and call ``callback`` every so many steps
        and at the last step.
    callback
        ``callback(flow, step)``, e.g. to draw samples and measure them; its results are kept in order.
    seed
        Seed of the initialisation, the mini-batches and the noise.
    progress
        Show a progress bar.

    Returns
    -------
    FlowTraining
    """
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    Y = np.asarray(data, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[0] < 2 or not np.all(np.isfinite(Y)):
        raise ValueError(f"data must be a finite array of shape (P, d) with P >= 2, got shape {Y.shape}")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("record_every", record_every)):
        check_positive_int(value, name)
    for name, value in (("lr", lr), ("max_grad_norm", max_grad_norm)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    if not (isinstance(noise_std, (int, float)) and math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a non-negative standard deviation, got {noise_std!r}")
    X = torch.as_tensor(Y, dtype=torch.float32)
    flow = CouplingFlow(X.shape[1], n_layers=n_layers, hidden=hidden, seed=seed)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    losses = np.empty(int(steps))
    rec_steps, rec_ll, records = [], [], []
    skipped = 0
    for step in tqdm(range(1, int(steps) + 1), disable=not progress, desc="flow (max. likelihood)", leave=False):
        idx = torch.randint(0, X.shape[0], (int(batch_size),), generator=gen)
        batch = X[idx]
        if noise_std > 0:
            batch = batch + float(noise_std) * torch.randn(batch.shape, generator=gen)
        loss = -flow.log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(flow.parameters(), float(max_grad_norm))
        if torch.isfinite(loss) and torch.isfinite(norm):
            opt.step()
        else:
            skipped += 1
        losses[step - 1] = float(loss.detach())
        if step % int(record_every) == 0 or step == int(steps):
            flow.eval()
            with torch.no_grad():
                rec_ll.append(float(flow.log_prob(X).mean()))
            rec_steps.append(step)
            if callback is not None:
                records.append(callback(flow, step))
            flow.train()
    flow.eval()
    return FlowTraining(
        flow=flow,
        steps=np.asarray(rec_steps),
        log_likelihood=np.asarray(rec_ll),
        losses=losses,
        records=records,
        skipped=skipped,
    )
