"""Smoke tests of the spectral figure helpers in diffnb.plotting."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffnb import plotting  # noqa: E402


def test_spectrum_bands_draws_one_band_per_bulk_and_the_atom():
    fig, ax = plt.subplots()
    times = np.geomspace(1e-3, 1e2, 50)
    plotting.spectrum_bands(ax, times, [(0.02, 0.16), (0.33, 2.1)], labels=["low", "high"])
    assert len(ax.collections) == 2 and len(ax.lines) == 1
    assert ax.get_xscale() == "log"
    assert ax.get_legend_handles_labels()[1] == ["low", "high", "normal directions (atom)"]
    band = ax.collections[1].get_paths()[0].vertices[:, 1]  # mu = -t / (lambda + t)
    assert np.all((band >= -1.0) & (band < 0.0))
    plt.close(fig)


def test_shade_phases_bands_and_phase_diagram():
    fig, (ax1, ax2) = plt.subplots(1, 2)
    ax1.plot([1e-3, 1e2], [0, 1])
    plotting.shade_phases(ax1, 19.0, 0.002)
    assert ax1.get_xscale() == "log" and ax1.get_xlim()[0] > 0
    assert {t.get_text() for t in ax1.texts} == {"trivial", "coverage", "consolidation"}
    x = np.geomspace(1e-3, 1, 20)
    plotting.shade_phases(ax2, np.full(20, 19.0), 0.02 * x, x=x)
    assert ax2.get_yscale() == "log" and ax2.get_ylim()[0] > 0
    assert sorted(ax2.get_legend_handles_labels()[1]) == ["consolidation", "coverage", "trivial"]
    plt.close(fig)


@pytest.mark.parametrize("log_first", [False, True])
def test_shade_phases_keeps_the_data_in_view(log_first):
    # data drawn on a still linear axis (and on a log one) stay inside the limits, beyond the boundaries
    fig, ax = plt.subplots()
    ax.plot([1e-4, 2.5e4], [0, 1])
    if log_first:
        ax.set_xscale("log")
    plotting.shade_phases(ax, 55.0, 0.016)
    lo, hi = ax.get_xlim()
    assert lo <= 1e-4 and hi >= 2.5e4
    fig, ax = plt.subplots()
    ax.plot([0.0, 1e-4, 2.5e4], [0, 0, 1])  # x = 0 cannot show on a log axis; the rest stays in view
    plotting.shade_phases(ax, 55.0, 0.016)
    lo, hi = ax.get_xlim()
    assert 0 < lo <= 1e-4 and hi >= 2.5e4
    fig, ax = plt.subplots()
    ax.plot([1.0, 2.0], [0, 1])  # data inside the boundaries: a decade beyond each boundary
    plotting.shade_phases(ax, 19.0, 0.002)
    assert np.allclose(ax.get_xlim(), (2e-4, 190.0))
    plt.close("all")


def test_shade_phases_moves_a_label_and_rejects_unknown_phases():
    fig, ax = plt.subplots()
    plotting.shade_phases(ax, 19.0, 0.002, label_kw={"coverage": {"x": 0.5, "ha": "right"}})
    coverage = next(t for t in ax.texts if t.get_text() == "coverage")
    assert coverage.get_position()[0] == 0.5 and coverage.get_ha() == "right"
    trivial = next(t for t in ax.texts if t.get_text() == "trivial")
    assert trivial.get_ha() == "left" and trivial.get_position()[1] == 0.98
    with pytest.raises(ValueError, match="label_kw.*memorization"):
        plotting.shade_phases(ax, 19.0, 0.002, label_kw={"memorization": {"x": 1.0}})
    plt.close(fig)
