"""Figure helpers for the image chapters."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from diffnb import plotting


def test_image_grid_grey_colour_and_flat():
    fig, axes = plt.subplots(1, 3)
    plotting.image_grid(axes[0], torch.rand(5, 1, 8, 8) * 2 - 1, ncols=3)
    plotting.image_grid(axes[1], np.random.default_rng(0).uniform(-1, 1, (4, 3, 4, 4)))
    plotting.image_grid(axes[2], np.zeros((2, 16)), shape=(1, 4, 4), title="flat")
    grey = axes[0].images[0].get_array()
    assert grey.shape == (2 * 9 + 1, 3 * 9 + 1)
    assert axes[1].images[0].get_array().shape == (2 * 5 + 1, 2 * 5 + 1, 3)
    with pytest.raises(ValueError, match="shape="):
        plotting.image_grid(axes[0], np.zeros((2, 16)))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plotting.image_grid(axes[0], np.zeros((2, 2, 4, 4)))
    plt.close(fig)


def test_spectra_by_size_and_dimension_against_size():
    fig, (a, b) = plt.subplots(1, 2)
    spectra = np.random.default_rng(1).uniform(0, 1, (3, 5, 10))
    plotting.spectra_by_size(a, [10, 100, 1000], spectra)
    assert len(a.lines) == 3
    plotting.dimension_against_size(b, [10, 100, 1000], [[1, 2], [3, 4, 5], [6]], label="test")
    assert b.xaxis_inverted() and b.get_xscale() == "log"
    with pytest.raises(ValueError, match="one sequence per size"):
        plotting.dimension_against_size(b, [10, 100], [[1]])
    with pytest.raises(ValueError, match="len\\(sizes\\)"):
        plotting.spectra_by_size(a, [10, 100], spectra)
    plt.close(fig)
