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
