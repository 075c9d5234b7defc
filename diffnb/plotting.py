"""One house style for the book's figures, and the figures that recur across chapters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

#: Colours for tangent blocks (high variance first), the normal directions and theory lines.
PALETTE = {
    "high": "#c0392b",
    "low": "#2471a3",
    "normal": "#7f8c8d",
    "theory": "#111111",
    "empirical": "#8e44ad",
    "network": "#d68910",
}


def use_style(context: str = "notebook") -> None:
    """Apply the book's style: seaborn ticks, readable fonts, no top/right spines, tight layouts."""
    sns.set_theme(context=context, style="ticks", palette="deep", font_scale=0.95)
    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "figure.constrained_layout.use": True,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "image.cmap": "viridis",
        }
    )


def time_colors(times: Sequence[float], cmap: str = "viridis") -> tuple[list, mpl.colors.Normalize]:
    """Colours for curves indexed by noise level ``t`` (or any positive quantity) on a log scale (dark = small)."""
    times = np.asarray(times, dtype=float)
    norm = mpl.colors.LogNorm(vmin=times.min(), vmax=times.max())
    cm = mpl.colormaps[cmap]
    return [cm(norm(t)) for t in times], norm


def spectrum_fan(
    ax: plt.Axes,
    times: Sequence[float],
    spectra: np.ndarray,
    *,
    cmap: str = "viridis",
    colorbar: bool = True,
    label: str = "noise variance $t$",
    **plot_kwargs,
) -> plt.Axes:
    """Draw one sorted spectrum per noise level, coloured by ``t`` (the papers' "spectrum over time").

    Parameters
    ----------
    ax
        Axes to draw on.
    times
        Noise levels, shape ``(n_times,)``.
    spectra
        Values, shape ``(n_times, k)``; each row is drawn against its rank ``1..k`` after sorting.
    """
    spectra = np.asarray(spectra, dtype=float)
    if spectra.ndim != 2 or spectra.shape[0] != len(times):
        raise ValueError(f"spectra must have shape (len(times), k), got {spectra.shape}")
    colors, norm = time_colors(times, cmap)
    ranks = np.arange(1, spectra.shape[1] + 1)
    kwargs = {"lw": 1.0, "alpha": 0.9, **plot_kwargs}
    for row, color in zip(spectra, colors, strict=True):
        ax.plot(ranks, np.sort(row), color=color, **kwargs)
    ax.set_xlabel("rank (ascending)")
    if colorbar:
        sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        ax.figure.colorbar(sm, ax=ax, label=label)
    return ax


def spectrum_heatmap(
    ax: plt.Axes,
    times: Sequence[float],
    spectra: np.ndarray,
    *,
    cmap: str = "magma",
    label: str = "value",
    **imshow_kwargs,
) -> plt.Axes:
    """Draw sorted spectra as a heat map: noise level on the x axis (log), rank on the y axis."""
    times = np.asarray(times, dtype=float)
    spectra = np.sort(np.asarray(spectra, dtype=float), axis=1)
    order = np.argsort(times)
    mesh = ax.pcolormesh(
        times[order],
        np.arange(1, spectra.shape[1] + 1),
        spectra[order].T,
        cmap=cmap,
        shading="nearest",
        **imshow_kwargs,
    )
    ax.set_xscale("log")
    ax.set_xlabel("noise variance $t$")
    ax.set_ylabel("rank")
    ax.figure.colorbar(mesh, ax=ax, label=label)
    return ax


def _log_edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges for positive, increasing centres on a log axis (geometric midpoints, extrapolated ends)."""
    logs = np.log(centres)
    if logs.size == 1:
        return np.exp(logs + np.array([-0.5, 0.5]))
    mids = 0.5 * (logs[1:] + logs[:-1])
    return np.exp(np.concatenate([[2 * logs[0] - mids[0]], mids, [2 * logs[-1] - mids[-1]]]))


def phase_diagram(
    ax: plt.Axes,
    times: Sequence[float],
    sizes: Sequence[float],
    values: np.ndarray,
    *,
    cmap: str = "viridis",
    label: str = "dimension",
    colorbar: bool = True,
    **mesh_kwargs,
) -> mpl.collections.QuadMesh:
    """Draw a quantity over (noise level, data-set size): ``t`` on the x axis, ``P`` on the y axis, both log.

    Parameters
    ----------
    ax
        Axes to draw on.
    times
        Noise levels, increasing, shape ``(n_times,)``.
    sizes
        Data-set sizes, increasing, shape ``(n_sizes,)``.
    values
        Shape ``(n_sizes, n_times)``, e.g. the measured dimension.
    """
    times, sizes = np.asarray(times, dtype=float), np.asarray(sizes, dtype=float)
    values = np.asarray(values, dtype=float)
    if values.shape != (sizes.size, times.size):
        raise ValueError(
            f"values must have shape (len(sizes), len(times)) = {(sizes.size, times.size)}, got {values.shape}"
        )
    mesh = ax.pcolormesh(_log_edges(times), _log_edges(sizes), values, cmap=cmap, shading="flat", **mesh_kwargs)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("noise variance $t$")
    ax.set_ylabel("training points $P$")
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=label)
    return mesh


def dimension_norm(*grids: np.ndarray, top: float = 0.0) -> tuple[mpl.colors.BoundaryNorm, list[int]]:
    """A discrete colour scale for dimensions read off spectra, shared by ``grids``, and its colourbar's ticks.

    One colour per integer and one per half-integer (a median over an even number of points lies halfway
    between two integers), from 0 to the largest value in ``grids`` or ``top``, whichever is larger. Pass
    the norm to :func:`phase_diagram` (``norm=...``, ``colorbar=False``) for every panel and draw one
    colourbar with ``fig.colorbar(mesh, ax=axes, ticks=ticks)``.

    Parameters
    ----------
    *grids
        Arrays of dimensions (any shape), finite and non-negative.
    top
        The scale reaches at least this value.

    Returns
    -------
    norm : matplotlib.colors.BoundaryNorm
        Bins centred on 0, 0.5, 1, ... up to the largest value.
    ticks : list of int
        The integers from 0 up to the largest value.

    Raises
    ------
    ValueError
        If a grid is empty, holds NaN or infinity, or a negative value.

    Examples
    --------
    >>> norm, ticks = dimension_norm(np.array([[0, 2.5], [7, 1]]))
    >>> ticks[-1], int(norm(2.5)) != int(norm(3.0))
    (7, True)
    """
    arrays = [np.asarray(grid, dtype=float) for grid in grids]
    if any(a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0) for a in arrays):
        raise ValueError("grids must be non-empty arrays of finite, non-negative dimensions")
    high = max([float(top), *(float(a.max()) for a in arrays)])
    bounds = np.arange(-0.25, high + 0.5, 0.5)  # bins centred on 0, 0.5, 1, ...
    return mpl.colors.BoundaryNorm(bounds, ncolors=256), list(range(int(high) + 1))


def spectrum_bands(
    ax: plt.Axes,
    times: Sequence[float],
    bulks: Sequence[tuple[float, float]],
    *,
    colors: Sequence | None = None,
    labels: Sequence[str | None] | None = None,
    alpha: float = 0.3,
    atom: bool = True,
) -> plt.Axes:
    """Shade the predicted bulks of the spectrum of ``t J`` over noise levels (``t`` on a log x axis).

    A bulk ``[lo, hi]`` of eigenvalues ``lambda`` of the data covariance becomes the band
    ``[-t / (lo + t), -t / (hi + t)]`` of the normalised Jacobian at noise level ``t``.

    Parameters
    ----------
    ax
        Axes to draw on.
    times
        Noise levels, increasing, shape ``(n_times,)``.
    bulks
        Intervals ``(lo, hi)`` of the covariance spectrum, ascending (e.g. ``covariance_support``).
    colors
        One colour per bulk; default: the ``low`` colour for all but the top bulk, ``high`` for the top one.
    labels
        One legend label per bulk (``None`` entries are skipped); default: one label, "theory bulks".
    atom
        Also draw the normal directions, the atom at -1.
    """
    times = np.asarray(times, dtype=float)
    if colors is None:
        colors = [PALETTE["low"]] * (len(bulks) - 1) + [PALETTE["high"]]
    if labels is None:
        labels = ["theory bulks"] + [None] * (len(bulks) - 1)
    for (lo, hi), color, label in zip(bulks, colors, labels, strict=True):
        ax.fill_between(
            times, -times / (lo + times), -times / (hi + times), color=color, alpha=alpha, lw=0, label=label
        )
    if atom:
        ax.plot(times, -np.ones_like(times), color=PALETTE["normal"], lw=2.5, label="normal directions (atom)")
    ax.set_xscale("log")
    ax.set_xlabel("noise variance $t$")
    ax.set_ylabel("eigenvalue of $tJ$")
    return ax


#: Colours of the three phases of generation (trivial, manifold coverage, consolidation).
PHASE_COLORS = {"trivial": "#d5d8dc", "coverage": "#fdebd0", "consolidation": "#d6eaf8"}


def shade_phases(
    ax: plt.Axes,
    t_trivial: float | Sequence[float],
    t_consolidation: float | Sequence[float],
    x: Sequence[float] | None = None,
    *,
    alpha: float = 0.8,
    labels: bool = True,
    label_kw: Mapping[str, Mapping[str, Any]] | None = None,
) -> plt.Axes:
    """Shade the three phases of generation: trivial (large ``t``), coverage, consolidation (small ``t``).

    Parameters
    ----------
    ax
        Axes of ``t``; the ``t`` axis is made log-scaled. With scalar boundaries the x limits cover what
        is already drawn (whether the axis was log-scaled yet or not) and a decade beyond each boundary.
    t_trivial, t_consolidation
        Phase boundaries. Scalars: ``t`` is the x axis and the phases are vertical bands. Arrays over ``x``:
        ``t`` is the y axis and the boundaries are curves over ``x`` (a phase diagram).
    x
        Abscissae of the boundary curves (for arrays).
    labels
        Name the phases (in the bands, or in the legend for a phase diagram).
    label_kw
        For bands: text properties by phase name that override the defaults of that phase's label, e.g.
        ``{"coverage": {"x": 0.1, "ha": "right"}}`` to move a label clear of a line drawn on the band
        (``x`` in data coordinates, ``y`` as a fraction of the axes' height).

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``.

    Raises
    ------
    ValueError
        If ``label_kw`` names something other than the three phases.
    """
    label_kw = dict(label_kw or {})
    unknown = set(label_kw) - set(PHASE_COLORS)
    if unknown:
        raise ValueError(f"label_kw must be keyed by phase names {sorted(PHASE_COLORS)}, got {sorted(unknown)}")
    kw = {"alpha": alpha, "lw": 0, "zorder": 0}
    if x is None:
        t_trivial, t_consolidation = float(t_trivial), float(t_consolidation)
        lo, hi = ax.get_xlim()
        if ax.get_xscale() != "log" or lo <= 0:  # a linear axis: span what is drawn on it, if anything
            # the smallest positive x drawn: a log axis cannot show x <= 0 anyway
            lo, hi = (ax.dataLim.minposx, ax.dataLim.x1) if ax.has_data() else (np.inf, -np.inf)
            if not (0 < lo < hi < np.inf):
                lo, hi = t_consolidation / 10, t_trivial * 10
        lo, hi = min(lo, t_consolidation / 10), max(hi, t_trivial * 10)
        spans = [
            (lo / 1e3, t_consolidation, "consolidation"),
            (t_consolidation, t_trivial, "coverage"),
            (t_trivial, hi * 1e3, "trivial"),
        ]
        for a, b, name in spans:
            ax.axvspan(a, b, color=PHASE_COLORS[name], **kw)
            if labels:
                style = {
                    "x": np.sqrt(max(a, lo) * min(b, hi)) if name != "trivial" else a * 1.15,
                    "y": 0.98,
                    "ha": "center" if name != "trivial" else "left",
                    "va": "top",
                    "fontsize": "small",
                    "color": "0.35",
                }
                style.update(label_kw.get(name, {}))
                ax.text(s=name, transform=ax.get_xaxis_transform(), **style)
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        return ax
    x = np.asarray(x, dtype=float)
    t_trivial = np.broadcast_to(np.asarray(t_trivial, dtype=float), x.shape)
    t_consolidation = np.broadcast_to(np.asarray(t_consolidation, dtype=float), x.shape)
    lo, hi = float(t_consolidation.min()) / 10, float(t_trivial.max()) * 10
    # fill far beyond the limits, so that a caller may widen them afterwards
    ax.fill_between(
        x,
        lo / 1e3,
        t_consolidation,
        color=PHASE_COLORS["consolidation"],
        label="consolidation" if labels else None,
        **kw,
    )
    ax.fill_between(
        x, t_consolidation, t_trivial, color=PHASE_COLORS["coverage"], label="coverage" if labels else None, **kw
    )
    ax.fill_between(x, t_trivial, hi * 1e3, color=PHASE_COLORS["trivial"], label="trivial" if labels else None, **kw)
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    ax.set_ylabel("noise variance $t$")
    return ax


# --------------------------------------------------------------------------------------------------------------
# Images (chapters 6 and 7)
# --------------------------------------------------------------------------------------------------------------


def image_grid(
    ax: plt.Axes,
    images: np.ndarray,
    *,
    ncols: int | None = None,
    shape: Sequence[int] | None = None,
    pad: int = 1,
    title: str | None = None,
) -> plt.Axes:
    """Tile images scaled to ``[-1, 1]`` into one picture (grey for one channel, colour for three).

    Parameters
    ----------
    ax
        Axes to draw on (its ticks are removed).
    images
        Shape ``(n, C, H, W)``, or flat ``(n, d)`` together with ``shape = (C, H, W)``; NumPy or torch.
    ncols
        Images per row (default: about ``sqrt(n)``).
    pad
        Pixels of white between images.
    """
    arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if arr.ndim == 2:
        if shape is None or int(np.prod(shape)) != arr.shape[1]:
            raise ValueError(f"flat images of shape {arr.shape} need shape=(C, H, W) with C*H*W = {arr.shape[1]}")
        arr = arr.reshape(arr.shape[0], *shape)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (n, C, H, W) with C = 1 or 3, got {arr.shape}")
    n, C, H, W = arr.shape
    ncols = int(np.ceil(np.sqrt(n))) if ncols is None else int(ncols)
    nrows = int(np.ceil(n / ncols))
    # white between images: 0 on the reversed grey map (ink dark), 1 in colour
    canvas = np.full((nrows * (H + pad) + pad, ncols * (W + pad) + pad, C), 0.0 if C == 1 else 1.0)
    pixels = np.clip((arr.transpose(0, 2, 3, 1) + 1) / 2, 0, 1)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = pad + r * (H + pad), pad + c * (W + pad)
        canvas[top : top + H, left : left + W] = pixels[i]
    shown = canvas[..., 0] if C == 1 else canvas
    ax.imshow(shown, cmap="gray_r" if C == 1 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return ax


def spectra_by_size(
    ax: plt.Axes,
    sizes: Sequence[float],
    spectra: np.ndarray,
    *,
    cmap: str = "viridis",
    band: bool = True,
    colorbar: bool = True,
) -> plt.Axes:
    """Mean normalised spectrum per training-set size, descending, coloured by size on a log scale (with the
    default map, dark purple for the smallest and yellow for the largest).

    Parameters
    ----------
    sizes
        Training-set sizes, shape ``(n_sizes,)``.
    spectra
        Shape ``(n_sizes, n_images, d)``: normalised singular values per size and image, any order.
    band
        Shade one standard deviation over images.
    """
    spectra = np.asarray(spectra, dtype=float)
    sizes = np.asarray(sizes, dtype=float)
    if spectra.ndim != 3 or spectra.shape[0] != sizes.size:
        raise ValueError(f"spectra must have shape (len(sizes), n_images, d), got {spectra.shape}")
    desc = -np.sort(-spectra, axis=-1)
    colors, norm = time_colors(sizes, cmap)  # log-scaled colours, here of the size
    ranks = np.arange(1, desc.shape[-1] + 1)
    for color, rows in zip(colors, desc, strict=True):
        mean, std = rows.mean(axis=0), rows.std(axis=0)
        ax.plot(ranks, mean, color=color, lw=1.2)
        if band:
            ax.fill_between(ranks, mean - std, mean + std, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("rank (descending)")
    ax.set_ylabel("normalised singular value")
    if colorbar:
        ax.figure.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="training images $P$")
    return ax


def dimension_against_size(
    ax: plt.Axes,
    sizes: Sequence[float],
    dims: Sequence[Sequence[float]],
    *,
    label: str | None = None,
    color: str | None = None,
    invert: bool = True,
    **errorbar_kwargs,
) -> plt.Axes:
    """Latent dimension against training-set size with one-standard-deviation error bars (the memorization
    paper's Fig. 6b): log size axis, large sizes on the left when ``invert``.

    Parameters
    ----------
    sizes
        Shape ``(n_sizes,)``.
    dims
        One sequence of dimensions per size (over images and seeds); lengths may differ.
    """
    sizes = np.asarray(sizes, dtype=float)
    if len(dims) != sizes.size:
        raise ValueError(f"dims must hold one sequence per size ({sizes.size}), got {len(dims)}")
    means = np.array([np.mean(v) for v in dims])
    stds = np.array([np.std(v) for v in dims])
    kwargs = {"marker": "o", "ms": 4, "capsize": 3, "lw": 1.2, **errorbar_kwargs}
    ax.errorbar(sizes, means, yerr=stds, label=label, color=color, **kwargs)
    ax.set_xscale("log")
    if invert and not ax.xaxis_inverted():
        ax.invert_xaxis()
    ax.set_xlabel("training images $P$ (log scale)")
    ax.set_ylabel("latent dimension")
    return ax


def spectrum_comparison(
    ax: plt.Axes,
    spectra: np.ndarray,
    *,
    theory: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    n_show: int | None = None,
    color: str | None = None,
    theory_label: str = "theory",
    reference_label: str = "exact score",
    label: str = "network",
) -> plt.Axes:
    """Sorted normalised spectra of a network at several points against a theory curve (the spectral-gaps
    paper's Fig. 4): one thin line per point, their median in bold, the theory and an exact reference dashed.

    Parameters
    ----------
    ax
        Axes to draw on.
    spectra
        Shape ``(n_points, k)``; each row is sorted ascending before drawing.
    theory, reference
        Shape ``(k,)`` or shorter (drawn from rank 1), sorted ascending; optional.
    n_show
        Draw only the ``n_show`` smallest values (ranks ``1..n_show``).
    """
    spectra = np.sort(np.atleast_2d(np.asarray(spectra, dtype=float)), axis=1)
    k = spectra.shape[1] if n_show is None else int(n_show)
    ranks = np.arange(1, k + 1)
    color = color or PALETTE["network"]
    for row in spectra[:, :k]:
        ax.plot(ranks, row, color=color, lw=0.6, alpha=0.35)
    ax.plot(ranks, np.median(spectra[:, :k], axis=0), color=color, lw=2.0, label=label)
    for curve, style, lab in ((reference, "--", reference_label), (theory, "-", theory_label)):
        if curve is not None:
            curve = np.sort(np.asarray(curve, dtype=float))[:k]
            colour = PALETTE["theory"] if style == "--" else "#c0392b"
            ax.plot(np.arange(1, curve.size + 1), curve, style, color=colour, lw=1.3, label=lab)
    ax.set_xlabel("rank (ascending)")
    ax.set_ylabel("normalised singular value")
    return ax


def dimension_curves(
    ax: plt.Axes,
    times: Sequence[float],
    dims: np.ndarray,
    *,
    color: str | None = None,
    label: str | None = None,
    band: bool = True,
    **plot_kwargs,
) -> plt.Axes:
    """Dimension read from spectra over noise level: the median over points as a step-like line, with the
    range over points as a band.

    Parameters
    ----------
    times
        Noise levels, shape ``(n_times,)``.
    dims
        Shape ``(n_points, n_times)`` (or ``(n_times,)`` for one curve).
    """
    times = np.asarray(times, dtype=float)
    dims = np.atleast_2d(np.asarray(dims, dtype=float))
    if dims.shape[1] != times.size:
        raise ValueError(f"dims must have shape (n_points, {times.size}), got {dims.shape}")
    order = np.argsort(times)
    times, dims = times[order], dims[:, order]
    line = ax.plot(
        times, np.median(dims, axis=0), drawstyle="steps-mid", color=color, label=label, **{"lw": 1.6, **plot_kwargs}
    )
    if band and dims.shape[0] > 1:
        ax.fill_between(
            times, dims.min(axis=0), dims.max(axis=0), step="mid", color=line[0].get_color(), alpha=0.2, lw=0
        )
    ax.set_xscale("log")
    ax.set_xlabel("noise variance $t$")
    ax.set_ylabel("dimension read")
    return ax


#: Colours of the phase labels of :func:`diffnb.spectra.classify_phases` (the phases, plus the collapse of a
#: memorising score).
PHASE_LABEL_COLORS = {**PHASE_COLORS, "collapsed": "#f5b7b1"}


def phase_strip(
    ax: plt.Axes,
    times: Sequence[float],
    labels: Sequence[str],
    y: float = 0.0,
    *,
    height: float = 0.7,
    edgecolor: str = "white",
) -> plt.Axes:
    """Draw measured phase labels over noise level as one horizontal strip of coloured cells (log ``t`` axis).

    Each noise level gets a cell reaching halfway (in ``log t``) to its neighbours, coloured by
    :data:`PHASE_LABEL_COLORS`. Several strips at different ``y`` put several scores on one time axis.

    Parameters
    ----------
    ax
        Axes to draw on (the x axis becomes logarithmic).
    times
        Noise levels, shape ``(n_times,)``, positive, any order.
    labels
        One label per level, e.g. :attr:`diffnb.spectra.PhaseClassification.labels`.
    y
        Centre of the strip on the y axis.
    height
        Height of the strip.
    edgecolor
        Colour of the cell borders (``"none"`` for a continuous band).
    """
    times = np.asarray(times, dtype=float)
    labels = np.asarray(labels)
    if times.ndim != 1 or labels.shape != times.shape:
        raise ValueError(f"labels must have one entry per noise level ({times.size}), got shape {labels.shape}")
    if np.any(times <= 0):
        raise ValueError("times must be positive noise levels")
    unknown = set(labels.tolist()) - set(PHASE_LABEL_COLORS)
    if unknown:
        raise ValueError(f"labels must be among {sorted(PHASE_LABEL_COLORS)}, got {sorted(unknown)}")
    order = np.argsort(times)
    edges = _log_edges(times[order])
    for lo, hi, label in zip(edges[:-1], edges[1:], labels[order], strict=True):
        ax.fill_between(
            [lo, hi], y - height / 2, y + height / 2, color=PHASE_LABEL_COLORS[label], lw=0.3, edgecolor=edgecolor
        )
    ax.set_xscale("log")
    return ax
