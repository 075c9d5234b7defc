"""The argument checks shared by diffnb.metrics and diffnb.spectra (diffnb._validation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffnb._validation import as_float_array, check_finite_array, env_flag
from diffnb.metrics import ks_distances
from diffnb.spectra import estimate_dimension


def test_as_float_array_accepts_arrays_tensors_and_lists():
    expected = np.array([[1.0, 2.0]])
    for value in (expected.astype(np.float32), torch.tensor([[1.0, 2.0]], requires_grad=True), [[1, 2]]):
        out = as_float_array(value, "x")
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="x must be an array of numbers, got str"):
        as_float_array("abc", "x")


def test_check_finite_array():
    check_finite_array(np.zeros((0, 3)), "x")
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="x holds NaN or infinite values"):
            check_finite_array(np.array([1.0, bad]), "x")


@pytest.mark.parametrize(
    "call",
    [lambda v: ks_distances(v, np.ones((3, 2))), lambda v: estimate_dimension(v, "threshold")],
    ids=["metrics", "spectra"],
)
def test_metrics_and_spectra_report_bad_values_alike(call):
    with pytest.raises(ValueError, match="must be an array of numbers"):
        call("abc")
    with pytest.raises(ValueError, match="holds NaN or infinite values"):
        call(np.array([[0.1, np.nan], [0.2, 1.0]]))


@pytest.mark.parametrize(
    "value, expected", [("", None), (" ", None), ("1", True), ("Yes", True), ("off", False), ("0", False)]
)
def test_env_flag_reads_on_off_words(monkeypatch, value, expected):
    monkeypatch.setenv("DIFFNB_SOME_FLAG", value)
    assert env_flag("DIFFNB_SOME_FLAG") is expected


def test_env_flag_is_none_when_unset_and_names_the_variable_on_a_bad_word(monkeypatch):
    monkeypatch.delenv("DIFFNB_SOME_FLAG", raising=False)
    assert env_flag("DIFFNB_SOME_FLAG") is None
    monkeypatch.setenv("DIFFNB_SOME_FLAG", "maybe")
    with pytest.raises(ValueError, match="DIFFNB_SOME_FLAG must be one of"):
        env_flag("DIFFNB_SOME_FLAG")
