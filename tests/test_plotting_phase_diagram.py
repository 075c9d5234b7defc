"""The phase-diagram figure helper: cells centred on the (log-spaced) grid, and shape checks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffnb.plotting import _log_edges, dimension_norm, phase_diagram  # noqa: E402


def test_log_edges_are_geometric_midpoints():
    np.testing.assert_allclose(_log_edges(np.array([1.0, 100.0])), [0.1, 10.0, 1000.0])
    np.testing.assert_allclose(_log_edges(np.array([10.0])), [10 * np.exp(-0.5), 10 * np.exp(0.5)])


def test_phase_diagram_draws_one_cell_per_value():
    fig, ax = plt.subplots()
    mesh = phase_diagram(ax, np.logspace(-3, 0, 4), [10, 100, 1000], np.arange(12).reshape(3, 4), vmin=0, vmax=11)
    assert mesh.get_array().size == 12
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="values must have shape"):
        phase_diagram(ax, np.logspace(-3, 0, 4), [10, 100], np.zeros((3, 4)))
    plt.close(fig)


def test_dimension_norm_gives_integers_and_half_integers_their_own_colours():
    norm, ticks = dimension_norm(np.array([[0.0, 1.5], [4.0, 2.0]]), np.array([[6.5]]), top=3)
    assert ticks == list(range(7))  # up to the largest value, above top
    values = np.arange(0, 6.51, 0.5)
    bins = np.asarray(norm(values))
    assert len(set(bins.tolist())) == values.size  # every level its own colour
    assert np.all(np.asarray(norm(values + 0.2)) == bins)  # and a bin around it
    assert dimension_norm(np.zeros((2, 2)), top=7)[1] == list(range(8))


@pytest.mark.parametrize("bad", [np.array([]), np.array([1.0, np.nan]), np.array([np.inf]), np.array([-1.0])])
def test_dimension_norm_rejects_bad_grids(bad):
    with pytest.raises(ValueError, match="grids must be"):
        dimension_norm(np.ones(3), bad)
