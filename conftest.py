"""Fail fast, before any test or notebook runs, when DIFFNB_SCALE names no known scale."""

import pytest

from diffnb.config import ScaleError, get_scale


def pytest_configure(config: pytest.Config) -> None:
    try:
        get_scale()
    except ScaleError as exc:
        raise pytest.UsageError(str(exc)) from exc
