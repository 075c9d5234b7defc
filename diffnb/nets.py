r"""Score networks: a residual MLP with a noise-level embedding, and a small DDPM U-Net for images.

Every network here predicts the noise :math:`\hat\varepsilon(x, \sigma)` added to a clean point,
:math:`x = x_0 + \sigma\varepsilon`, and its score is :math:`s(x, t) = -\hat\varepsilon(x, \sqrt t)/\sqrt t`,
where ``t = sigma**2`` is the VE noise variance (notation appendix). :meth:`ScoreNetwork.score` takes that ``t``, so a
trained network plugs straight into :func:`diffnb.jacobian.score_jacobian`::

    J = score_jacobian(model.score, x, t, method="autograd")

Architecture (:class:`ScoreMLP`): ``Linear(d -> width)``, ``depth`` pre-norm residual blocks, then
``LayerNorm -> SiLU -> Linear(width -> d)``. The noise level enters through a sinusoidal embedding followed by a
two-layer MLP, and every block reads it in one of two ways:

* ``conditioning="add"`` (the official ``DDPMTabular`` block):
  ``h + W2 SiLU(LN(W1 SiLU(LN(h)) + E SiLU(emb)))``;
* ``conditioning="film"``: ``h + W2 SiLU(LN(W1 SiLU(LN(h))) * (1 + a) + b)`` with ``(a, b) = E SiLU(emb)``, a
  noise-dependent gain and shift per hidden unit (the "scale-shift norm" of the DDPM++/ADM U-Nets).

The trunk's output becomes the predicted noise according to ``parametrization``: ``"eps"`` (it is the noise,
the official code), ``"x0"`` (it is a denoised point :math:`\hat x_0`, and
:math:`\hat\varepsilon = (x - \hat x_0)/\sigma`) or ``"edm"`` (the preconditioning of Karras et al. 2022: a
denoiser :math:`D = c_{skip}(\sigma)\,x + c_{out}(\sigma)\,F` and :math:`\hat\varepsilon = (x - D)/\sigma`,
which keeps the trunk's target of unit size at every noise level). In every case the network predicts the
noise and is trained with the same noise-matching loss; only the last step differs.

Two configurations matter to the book:

* :meth:`NetConfig.official_tabular` reproduces ``DDPMTabular`` of the memorization paper's code (digest
  §3.1): width 128, two residual blocks, the raw noise scale ``sigma`` embedded sinusoidally (dimension 128)
  and lifted to 512, additive conditioning, no input scaling, the output layer predicting the noise directly.
* the default :class:`NetConfig`, the book's choice for short CPU budgets: ``log sigma`` embedded (well
  resolved from 0.01 to 50, where the raw ``sigma`` moves the fastest official frequency by 1e-2 rad at the
  small end), inputs scaled by :math:`1/\sqrt{\sigma^2 + \sigma_{data}^2}`, FiLM conditioning and the
  ``"edm"`` output. Trained for 3000 steps on chapter 5's two-variance manifold it matches the exact sorted
  spectrum to 0.01–0.04, where the official design, trained the same way, misses it by 0.15–0.3 at
  :math:`t \ge 0.2`.

Trained networks are cached under a key of their configurations and of
:data:`diffnb.training.ALGORITHM_VERSION`, not of this module's code: a change to what a network of an
unchanged configuration computes from its weights must raise that version.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffnb._validation import check_choice, dataclass_from_dict
from diffnb.schedules import VPSchedule

PARAMETRIZATIONS = ("eps", "x0", "edm")
CONDITIONINGS = ("add", "film")
NOISE_INPUTS = ("log_sigma", "sigma")


def _check_sizes(config: object, names: tuple[str, ...]) -> None:
    """The named fields, and ``emb_dim``, are positive integers; ``emb_dim`` is even (sine and cosine pairs)."""
    for name in (*names, "emb_dim"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if config.emb_dim % 2:
        raise ValueError(f"emb_dim must be even (sine and cosine pairs), got {config.emb_dim}")


@dataclass(frozen=True)
class NetConfig:
    """Hyper-parameters of a :class:`ScoreMLP`.

    Parameters
    ----------
    d
        Data (ambient) dimension.
    width
        Width of the residual stream.
    depth
        Number of residual blocks.
    emb_dim
        Dimension of the sinusoidal noise embedding (even).
    emb_hidden
        Width of the embedding MLP (its output is added inside every block after a projection).
    noise_input
        ``"log_sigma"`` (embed :math:`\\log\\sigma`) or ``"sigma"`` (embed :math:`\\sigma`, the official code).
    parametrization
        ``"edm"`` (preconditioned denoiser, noise derived analytically), ``"x0"`` (trunk predicts the clean
        point) or ``"eps"`` (trunk predicts the noise directly, the official code).
    input_scaling
        Multiply the input by :math:`1/\\sqrt{\\sigma^2+\\sigma_{data}^2}` before the first layer.
    sigma_data
        Per-coordinate scale of the data, used by ``input_scaling`` and the ``"edm"`` output.
    conditioning
        ``"film"`` (gain and shift per hidden unit) or ``"add"`` (the official code).
    output_norm
        LayerNorm before the output layer (the official code has it).
    dropout
        Dropout probability inside the blocks (0 in the official code).
    """

    d: int
    width: int = 128
    depth: int = 3
    emb_dim: int = 64
    emb_hidden: int = 128
    noise_input: str = "log_sigma"
    parametrization: str = "edm"
    input_scaling: bool = True
    sigma_data: float = 0.5
    conditioning: str = "film"
    output_norm: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_sizes(self, ("d", "width", "depth", "emb_hidden"))
        check_choice(self.noise_input, NOISE_INPUTS, "noise_input")
        check_choice(self.parametrization, PARAMETRIZATIONS, "parametrization")
        check_choice(self.conditioning, CONDITIONINGS, "conditioning")
        if not (math.isfinite(self.sigma_data) and self.sigma_data > 0):
            raise ValueError(f"sigma_data must be positive and finite, got {self.sigma_data}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    @classmethod
    def official_tabular(cls, d: int = 30) -> NetConfig:
        """The memorization paper's ``DDPMTabular`` (digest §3.1): width 128, 2 blocks, ``sigma`` embedded."""
        return cls(
            d=d,
            width=128,
            depth=2,
            emb_dim=128,
            emb_hidden=512,
            noise_input="sigma",
            parametrization="eps",
            input_scaling=False,
            conditioning="add",
            output_norm=True,
            dropout=0.0,
        )

    def to_dict(self) -> dict:
        """Plain dictionary (for cache keys and checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> NetConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return dataclass_from_dict(cls, values)


def _noise_features(c: NetConfig, sigma: torch.Tensor) -> torch.Tensor:
    """The scalar fed to the sinusoidal embedding."""
    if c.noise_input == "sigma":
        return sigma
    # log sigma spans about [-4.6, 3.9] over the book's noise range; scaled so that the embedding's fastest
    # frequency resolves a factor of about 1.1 in sigma and its slowest one the whole range
    return 10.0 * torch.log(sigma)


def _scaled_input(c: NetConfig, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    if c.input_scaling:
        return x * torch.rsqrt(sigma**2 + c.sigma_data**2)[..., None]
    return x


def _noise_from_output(c: NetConfig, x: torch.Tensor, out: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Turn the trunk's output into the predicted noise, per ``parametrization``."""
    if c.parametrization == "eps":
        return out
    s = sigma[..., None]
    if c.parametrization == "x0":
        return (x - out) / s
    # "edm": denoiser D = c_skip x + c_out F (Karras et al. 2022), noise = (x - D) / sigma, which is
    # x * sigma / (sigma^2 + sd^2) - F * sd / sqrt(sigma^2 + sd^2)
    inv = torch.rsqrt(s**2 + c.sigma_data**2)
    return x * (s * inv * inv) - out * (c.sigma_data * inv)


def _frequencies(dim: int, max_period: float) -> torch.Tensor:
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float64) / max(half - 1, 1)
    return torch.exp(exponent).float()


def _max_period(c: NetConfig) -> float:
    return 10_000.0 if c.noise_input == "sigma" else 100.0


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal features of a scalar per sample: ``(n,) -> (n, dim)``.

    ``max_period`` sets the slowest frequency; the fastest is 1 (in units of the input).
    """

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        self.register_buffer("frequencies", _frequencies(dim, max_period), persistent=False)

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        """Features of ``value`` (shape ``(n,)``), shape ``(n, dim)``: sines, then cosines."""
        args = value[:, None] * self.frequencies.to(value.dtype)[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class ResidualBlock(nn.Module):
    """A pre-norm residual block conditioned on the noise embedding.

    ``conditioning="add"`` (the ``DDPMTabular`` block): ``h + W2 SiLU(LN(W1 SiLU(LN(h)) + E SiLU(emb)))``.
    ``conditioning="film"``: ``h + W2 SiLU(LN(W1 SiLU(LN(h))) * (1 + a) + b)`` with ``(a, b) = E SiLU(emb)``,
    a noise-dependent gain per channel (the "scale-shift norm" of the DDPM++/ADM U-Nets).
    """

    def __init__(self, width: int, emb_hidden: int, dropout: float = 0.0, conditioning: str = "add") -> None:
        super().__init__()
        self.film = conditioning == "film"
        self.norm1 = nn.LayerNorm(width)
        self.linear1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_hidden, 2 * width if self.film else width)
        self.norm2 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(width, width)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The block applied to the residual stream ``h`` ``(n, width)`` under the embedding ``emb``."""
        z = self.linear1(self.act(self.norm1(h)))
        e = self.emb(self.act(emb))
        if self.film:
            scale, shift = e.chunk(2, dim=-1)
            z = self.norm2(z) * (1 + scale) + shift
        else:
            z = self.norm2(z + e)
        z = self.linear2(self.dropout(self.act(z)))
        return h + z


class ScoreNetwork(nn.Module):
    """Base of the book's noise predictors: ``forward(x, sigma)`` returns the predicted noise
    :math:`\\hat\\varepsilon` for flat states ``x`` of shape ``(n, d)``, and :meth:`score` turns it into the
    score at a VE noise variance. Subclasses set ``self.config`` (with a ``d``) and ``forward``."""

    config: NetConfig | UNetConfig

    @property
    def d(self) -> int:
        """Flat data dimension."""
        return self.config.d

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def score(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Score at VE noise variance ``t``: :math:`-\\hat\\varepsilon(x, \\sqrt t)/\\sqrt t`.

        The network runs on the device of its parameters, and the score comes back on the device of ``x``:
        a model trained on a GPU serves points held on the CPU (the spectra helpers, the notebooks) with no
        change to the caller; points already on the model's device are not copied.

        Parameters
        ----------
        x
            Points, shape ``(n, d)``.
        t
            Noise variance: a positive scalar or a tensor of shape ``(n,)``.
        """
        home = next(self.parameters(), x).device
        if not isinstance(t, torch.Tensor):
            if not (math.isfinite(t) and t > 0):
                raise ValueError(f"t must be a positive finite noise variance, got {t}")
            t = torch.tensor(float(t), dtype=x.dtype, device=home)
        t = t.to(device=home, dtype=x.dtype)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        sigma = torch.sqrt(t)
        return (-self(x.to(home), sigma) / sigma[:, None]).to(x.device)


class ScoreMLP(ScoreNetwork):
    """Residual MLP noise predictor with a noise-level embedding; see the module documentation.

    Parameters
    ----------
    config
        A :class:`NetConfig`, or the data dimension ``d`` (then ``**overrides`` set the other fields).

    Examples
    --------
    >>> net = ScoreMLP(NetConfig(d=10, width=32, depth=2))
    >>> x = torch.randn(5, 10)
    >>> net(x, torch.full((5,), 0.3)).shape     # predicted noise at sigma = 0.3
    torch.Size([5, 10])
    >>> net.score(x, 0.09).shape                # score at VE variance t = 0.09
    torch.Size([5, 10])
    """

    def __init__(self, config: NetConfig | int, **overrides) -> None:
        super().__init__()
        if not isinstance(config, NetConfig):
            config = NetConfig(d=config, **overrides)
        elif overrides:
            config = NetConfig(**{**config.to_dict(), **overrides})
        self.config = config
        c = config
        self.embedding = SinusoidalEmbedding(c.emb_dim, max_period=_max_period(c))
        self.emb_mlp = nn.Sequential(
            nn.Linear(c.emb_dim, c.emb_hidden), nn.SiLU(), nn.Linear(c.emb_hidden, c.emb_hidden)
        )
        self.input = nn.Linear(c.d, c.width)
        self.blocks = nn.ModuleList(
            ResidualBlock(c.width, c.emb_hidden, c.dropout, c.conditioning) for _ in range(c.depth)
        )
        self.out_norm = nn.LayerNorm(c.width) if c.output_norm else nn.Identity()
        self.output = nn.Linear(c.width, c.d)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Predicted noise :math:`\\hat\\varepsilon(x, \\sigma)`.

        Parameters
        ----------
        x
            Noisy points, shape ``(n, d)``.
        sigma
            Noise standard deviations, shape ``(n,)`` (or a scalar tensor, broadcast).
        """
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        c = self.config
        emb = self.emb_mlp(self.embedding(_noise_features(c, sigma)))
        h = self.input(_scaled_input(c, x, sigma))
        for block in self.blocks:
            h = block(h, emb)
        out = self.output(self.act(self.out_norm(h)))
        return _noise_from_output(c, x, out, sigma)


def _linear(p: dict[str, torch.Tensor], name: str, h: torch.Tensor) -> torch.Tensor:
    return torch.baddbmm(p[f"{name}.bias"].unsqueeze(1), h, p[f"{name}.weight"].transpose(1, 2))


def _layer_norm(p: dict[str, torch.Tensor], name: str, h: torch.Tensor) -> torch.Tensor:
    normed = F.layer_norm(h, h.shape[-1:], None, None, 1e-5)
    return torch.addcmul(p[f"{name}.bias"].unsqueeze(1), normed, p[f"{name}.weight"].unsqueeze(1))


def stacked_forward(
    params: dict[str, torch.Tensor],
    config: NetConfig,
    x: torch.Tensor,
    sigma: torch.Tensor,
    *,
    training: bool = False,
) -> torch.Tensor:
    """Predicted noise of ``K`` networks of one configuration at once, from their stacked parameters.

    The same computation as :meth:`ScoreMLP.forward` for every member (up to floating-point rounding), with
    every layer a batched matrix product (``torch.baddbmm``) over the leading member axis. It is the fast path
    of :func:`diffnb.training.train_ensemble`: compared with ``vmap`` of the module it fuses the bias additions
    and skips the functional-call machinery, which matters for small networks on a CPU.

    Parameters
    ----------
    params
        The members' parameters stacked along a new first axis, as returned by
        :func:`torch.func.stack_module_state` (keyed by the module's parameter names).
    config
        The members' common configuration.
    x
        Noisy points, shape ``(K, B, d)``.
    sigma
        Noise standard deviations, shape ``(K, B)``.
    training
        Apply dropout (with ``config.dropout > 0``).
    """
    c = config
    feats = _noise_features(c, sigma)
    args = feats[..., None] * _frequencies(c.emb_dim, _max_period(c)).to(device=x.device, dtype=x.dtype)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    emb = _linear(params, "emb_mlp.2", F.silu(_linear(params, "emb_mlp.0", emb)))
    act_emb = F.silu(emb)
    h = _linear(params, "input", _scaled_input(c, x, sigma))
    for i in range(c.depth):
        pre = f"blocks.{i}"
        z = _linear(params, f"{pre}.linear1", F.silu(_layer_norm(params, f"{pre}.norm1", h)))
        e = _linear(params, f"{pre}.emb", act_emb)
        if c.conditioning == "film":
            scale, shift = e.chunk(2, dim=-1)
            z = torch.addcmul(shift, _layer_norm(params, f"{pre}.norm2", z), 1 + scale)
        else:
            z = _layer_norm(params, f"{pre}.norm2", z + e)
        z = F.silu(z)
        if c.dropout and training:
            z = F.dropout(z, c.dropout, training=True)
        h = h + _linear(params, f"{pre}.linear2", z)
    if c.output_norm:
        h = _layer_norm(params, "out_norm", h)
    out = _linear(params, "output", F.silu(h))
    return _noise_from_output(c, x, out, sigma)


# --------------------------------------------------------------------------------------------------------------
# A small DDPM-style U-Net for images
# --------------------------------------------------------------------------------------------------------------

UNET_NOISE_INPUTS = ("log_sigma", "step")
UNET_SCHEDULES = ("linear", "cosine")


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of a :class:`UNet`.

    Parameters
    ----------
    image_shape
        ``(C, H, W)`` of the images, square, ``H`` from 4 to 64 and divisible by ``2**(len(channel_mults) - 1)``.
    channels
        Base number of channels; level ``i`` has ``channels * channel_mults[i]``.
    channel_mults
        One multiplier per resolution level; every level but the last halves the resolution.
    num_res_blocks
        Residual blocks per level on the way down (one more on the way up, as in DDPM).
    attention_resolutions
        Feature-map sizes (e.g. ``(8,)``) at which a self-attention block follows each residual block.
    mid_attention
        Self-attention between the two residual blocks at the lowest resolution.
    groups
        GroupNorm groups (must divide every channel count).
    emb_dim
        Width of the time embedding (even).
    noise_input
        What the time embedding reads: ``"step"`` — the DDPM step ``k`` of the noise level on the schedule
        below, continuous, embedded sinusoidally as Ho et al. do; ``"log_sigma"`` — :math:`\\log\\sigma`.
    schedule, T, beta_start, beta_end
        The VP schedule that defines the step for ``noise_input="step"`` (the papers' linear schedule by
        default).
    dropout
        Dropout in the residual blocks (0 in the memorization paper's runs).
    """

    image_shape: tuple[int, int, int]
    channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = ()
    mid_attention: bool = False
    groups: int = 8
    emb_dim: int = 128
    noise_input: str = "step"
    schedule: str = "linear"
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    dropout: float = 0.0

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.image_shape) if isinstance(self.image_shape, (tuple, list)) else ()
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) with positive entries, got {self.image_shape!r}")
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "channel_mults", tuple(int(m) for m in self.channel_mults))
        object.__setattr__(self, "attention_resolutions", tuple(int(r) for r in self.attention_resolutions))
        C, H, W = shape
        levels = len(self.channel_mults)
        if levels < 1 or any(m < 1 for m in self.channel_mults):
            raise ValueError(f"channel_mults must be one or more positive integers, got {self.channel_mults!r}")
        factor = 2 ** (levels - 1)
        if H != W or not 4 <= H <= 64 or H % factor or H // factor < 2:
            raise ValueError(
                f"image size {H}x{W} is not supported: the U-Net takes square images from 4x4 to 64x64 whose side "
                f"is divisible by 2**(len(channel_mults) - 1) = {factor} with at least 2x2 pixels left at the "
                f"lowest level (e.g. 8, 16, 28 or 32 with two or three levels); pad or pool the images "
                f"(diffnb.data.images.load_images(size=...)) or change channel_mults"
            )
        _check_sizes(self, ("channels", "num_res_blocks", "groups", "T"))
        bad = [self.channels * m for m in self.channel_mults if (self.channels * m) % self.groups]
        if bad:
            raise ValueError(f"groups={self.groups} must divide every channel count, but not {bad}")
        check_choice(self.noise_input, UNET_NOISE_INPUTS, "noise_input")
        check_choice(self.schedule, UNET_SCHEDULES, "schedule")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    @property
    def d(self) -> int:
        """Flat data dimension ``C * H * W``."""
        C, H, W = self.image_shape
        return C * H * W

    @classmethod
    def ddpm(cls, image_shape: tuple[int, int, int], channels: int = 128, schedule: str = "linear") -> UNetConfig:
        """The memorization paper's image network (digest §3.2): channel multipliers (1, 2, 2, 2) at 32x32
        (three levels below 32, fewer for smaller images), two residual blocks per level, attention at 16x16
        and in the middle, step embedding on the DDPM ``schedule`` it is trained with (linear in the paper)."""
        side = int(image_shape[1])
        mults = (1, 2, 2, 2) if side % 8 == 0 and side >= 32 else (1, 2, 2) if side % 4 == 0 else (1, 2)
        return cls(
            image_shape=tuple(image_shape),
            channels=channels,
            channel_mults=mults,
            num_res_blocks=2,
            attention_resolutions=(16,),
            mid_attention=True,
            groups=32 if channels % 32 == 0 else 8,
            schedule=schedule,
        )

    def to_dict(self) -> dict:
        """Plain dictionary (for cache keys and checkpoints)."""
        values = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict) -> UNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return dataclass_from_dict(cls, values)


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class UNetResBlock(nn.Module):
    """``GN -> SiLU -> conv -> (+ time) -> GN -> SiLU -> dropout -> conv`` plus a (1x1-projected) skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _group_norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = _group_norm(c_out, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The block applied to feature maps ``h`` ``(n, C, H, W)`` under the time embedding ``emb``."""
        z = self.conv1(self.act(self.norm1(h)))
        z = z + self.emb(self.act(emb))[:, :, None, None]
        z = self.conv2(self.dropout(self.act(self.norm2(z))))
        return self.skip(h) + z


class UNetAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual connection.

    Written out with ``softmax`` rather than a fused kernel, so that forward-mode differentiation
    (Jacobian-vector products) and ``vmap`` work on every backend.
    """

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Feature maps ``h`` ``(n, C, H, W)`` plus their attended projection."""
        n, c, H, W = h.shape
        q, k, v = self.qkv(self.norm(h)).reshape(n, 3, c, H * W).unbind(1)
        weights = torch.softmax(torch.einsum("ncp,ncq->npq", q, k) / math.sqrt(c), dim=-1)
        out = torch.einsum("npq,ncq->ncp", weights, v).reshape(n, c, H, W)
        return h + self.proj(out)


class UNet(ScoreNetwork):
    """DDPM-style U-Net noise predictor on flat images, in the book's VE variables.

    ``forward(x, sigma)`` takes a VE state :math:`x = x_0 + \\sigma\\varepsilon` (flat, ``(n, d)``) and returns
    :math:`\\hat\\varepsilon`, like :class:`ScoreMLP`, so both share the training loop and :meth:`ScoreNetwork.score`.
    Inside, the state is put in the VP form the DDPM network expects, :math:`x/\\sqrt{1+\\sigma^2} =
    \\sqrt{\\bar\\alpha}\\,x_0 + \\sqrt{1-\\bar\\alpha}\\,\\varepsilon`, reshaped to ``(n, C, H, W)``, and the noise
    level enters through the time embedding (the DDPM step, or :math:`\\log\\sigma`). The predicted noise is the
    same in both parametrisations, so a network trained here *is* a DDPM noise predictor.

    Examples
    --------
    >>> net = UNet(UNetConfig(image_shape=(1, 8, 8), channels=16))
    >>> net(torch.randn(3, 64), torch.full((3,), 0.5)).shape
    torch.Size([3, 64])
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise TypeError(f"config must be a UNetConfig, got {type(config).__name__}")
        self.config = c = config
        C, H, _ = c.image_shape
        self.embedding = SinusoidalEmbedding(c.emb_dim, max_period=10_000.0 if c.noise_input == "step" else 100.0)
        self.emb_mlp = nn.Sequential(
            nn.Linear(c.emb_dim, 4 * c.emb_dim), nn.SiLU(), nn.Linear(4 * c.emb_dim, c.emb_dim)
        )
        if c.noise_input == "step":
            sched = VPSchedule.named(c.schedule, c.T, c.beta_start, c.beta_end)
            log_sigma = 0.5 * torch.log(torch.from_numpy(sched.ve_time(range(c.T))).float())
            self.register_buffer("step_log_sigma", log_sigma, persistent=False)
        self.conv_in = nn.Conv2d(C, c.channels, 3, padding=1)
        widths = [c.channels * m for m in c.channel_mults]
        self.down = nn.ModuleList()
        skips = [c.channels]
        ch, side = c.channels, H
        for level, width in enumerate(widths):
            for _ in range(c.num_res_blocks):
                self.down.append(UNetResBlock(ch, width, c.emb_dim, c.groups, c.dropout))
                ch = width
                if side in c.attention_resolutions:
                    self.down.append(UNetAttention(ch, c.groups))
                skips.append(ch)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                side //= 2
                skips.append(ch)
        self.mid = nn.ModuleList([UNetResBlock(ch, ch, c.emb_dim, c.groups, c.dropout)])
        if c.mid_attention:
            self.mid.append(UNetAttention(ch, c.groups))
        self.mid.append(UNetResBlock(ch, ch, c.emb_dim, c.groups, c.dropout))
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(c.num_res_blocks + 1):
                self.up.append(UNetResBlock(ch + skips.pop(), width, c.emb_dim, c.groups, c.dropout))
                ch = width
                if side in c.attention_resolutions:
                    self.up.append(UNetAttention(ch, c.groups))
            if level > 0:
                self.up.append(
                    nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1))
                )
                side *= 2
        self.out_norm = _group_norm(ch, c.groups)
        self.conv_out = nn.Conv2d(ch, C, 3, padding=1)
        self.act = nn.SiLU()

    def _noise_features(self, sigma: torch.Tensor) -> torch.Tensor:
        log_sigma = torch.log(sigma)
        if self.config.noise_input == "log_sigma":
            return 10.0 * log_sigma
        # the continuous DDPM step whose noise level is sigma (linear interpolation in log sigma)
        table = self.step_log_sigma.to(sigma.dtype)
        right = torch.searchsorted(table, log_sigma.detach().contiguous()).clamp(1, table.numel() - 1)
        lo, hi = table[right - 1], table[right]
        frac = ((log_sigma - lo) / (hi - lo)).clamp(0.0, 1.0)
        return (right - 1).to(sigma.dtype) + frac

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Predicted noise for flat VE states ``x`` of shape ``(n, d)`` at noise scales ``sigma`` ``(n,)``."""
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        n = x.shape[0]
        emb = self.emb_mlp(self.embedding(self._noise_features(sigma)))
        h = (x * torch.rsqrt(1 + sigma**2)[:, None]).reshape(n, *self.config.image_shape)
        h = self.conv_in(h)
        hs = [h]
        for layer in self.down:
            if isinstance(layer, UNetResBlock):
                h = layer(h, emb)
            elif isinstance(layer, UNetAttention):
                h = layer(h)
                hs.pop()
            else:
                h = layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, UNetResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, UNetResBlock):
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        out = self.conv_out(self.act(self.out_norm(h)))
        return out.reshape(n, -1)


def config_from_dict(values: dict) -> NetConfig | UNetConfig:
    """A network configuration from its :meth:`~NetConfig.to_dict` form: a :class:`UNetConfig` when it has an
    ``image_shape``, a :class:`NetConfig` otherwise."""
    if "image_shape" in values:
        return UNetConfig.from_dict(values)
    return NetConfig.from_dict(values)


def build_model(config: NetConfig | UNetConfig, seed: int | None = None) -> ScoreMLP | UNet:
    """A freshly initialised network: a :class:`ScoreMLP` for a :class:`NetConfig`, a :class:`UNet` for a
    :class:`UNetConfig`. With ``seed`` the initialisation is reproducible and the global torch random state
    is left untouched."""
    if isinstance(config, UNetConfig):
        cls = UNet
    elif isinstance(config, NetConfig):
        cls = ScoreMLP
    else:
        raise TypeError(f"config must be a NetConfig or a UNetConfig, got {type(config).__name__}")
    if seed is None:
        return cls(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return cls(config)
