"""The package's progress bars: ``tqdm.auto`` (a widget in Jupyter when ipywidgets is installed, text otherwise)."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():  # tqdm.auto warns when ipywidgets is missing, then falls back to text bars
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
