"""One house style for the book's figures, and the figures that recur across chapters."""

from __future__ import annotations

from collections.abc import Sequence

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
    """Colours for curves indexed by noise level ``t`` on a log scale (dark = small ``t``)."""
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
    ax.set_xlabel("rank")
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
) -> plt.Axes:
    """Shade the three phases of generation: trivial (large ``t``), coverage, consolidation (small ``t``).

    Parameters
    ----------
    ax
        Axes whose ``t`` axis is log-scaled.
    t_trivial, t_consolidation
        Phase boundaries. Scalars: ``t`` is the x axis and the phases are vertical bands. Arrays over ``x``:
        ``t`` is the y axis and the boundaries are curves over ``x`` (a phase diagram).
    x
        Abscissae of the boundary curves (for arrays).
    labels
        Name the phases (in the bands, or in the legend for a phase diagram).
    """
    kw = {"alpha": alpha, "lw": 0, "zorder": 0}
    if x is None:
        t_trivial, t_consolidation = float(t_trivial), float(t_consolidation)
        lo, hi = ax.get_xlim()
        if ax.get_xscale() != "log" or lo <= 0:  # nothing drawn on a log axis yet
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
                ax.text(
                    np.sqrt(max(a, lo) * min(b, hi)) if name != "trivial" else a * 1.15,
                    0.98,
                    name,
                    transform=ax.get_xaxis_transform(),
                    ha="center" if name != "trivial" else "left",
                    va="top",
                    fontsize="small",
                    color="0.35",
                )
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
