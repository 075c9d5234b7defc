"""Argument checks shared by the package: each failure names the argument and the expected form."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np
import torch

ArrayLike = Any


def as_tensor(value: ArrayLike, name: str, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Convert ``value`` to a floating tensor; NumPy arrays and Python numbers become float64."""
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        try:
            array = np.asarray(value)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name} must be an array or a tensor, got {type(value).__name__}") from exc
        if array.dtype == object or not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float64)
    if dtype is not None:
        tensor = tensor.to(dtype)
    return tensor


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise if ``tensor`` is empty or holds NaN or infinity."""
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty; it needs at least one value")
    # A NaN or an infinity anywhere makes the sum non-finite; the element-wise test only runs to confirm,
    # since a sum of huge finite values can overflow.
    if not bool(torch.isfinite(tensor.sum())) and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} holds NaN or infinite values")


def as_float_array(value: ArrayLike, name: str) -> np.ndarray:
    """Convert an array, a tensor (detached, copied to the CPU) or nested numbers to a float64 NumPy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers, got {type(value).__name__}") from exc


def check_finite_array(array: np.ndarray, name: str) -> None:
    """Raise if a NumPy array holds NaN or infinity (an empty array passes)."""
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")


def check_same_kind(reference: torch.Tensor, other: torch.Tensor, ref_name: str, other_name: str) -> None:
    """Raise if two tensors differ in dtype or device (no silent casts or copies)."""
    if reference.dtype != other.dtype:
        raise TypeError(
            f"{other_name} has dtype {other.dtype} but {ref_name} has dtype {reference.dtype}; "
            f"convert one of them, e.g. {other_name}.to({reference.dtype})"
        )
    if reference.device != other.device:
        raise ValueError(
            f"{other_name} is on device {other.device} but {ref_name} is on {reference.device}; "
            f"move them to the same device"
        )


def check_times(t: ArrayLike, n: int, *, like: torch.Tensor, name: str = "t") -> torch.Tensor:
    """Return noise variances as a tensor of shape ``(n,)``: a positive finite scalar or one per point."""
    if isinstance(t, torch.Tensor):
        times = t.to(device=like.device, dtype=like.dtype)
    else:
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            if not math.isfinite(t) or t <= 0:
                raise ValueError(f"{name} must be a positive finite noise variance, got {t}")
        times = torch.as_tensor(np.asarray(t, dtype=np.float64), dtype=like.dtype, device=like.device)
    if times.ndim == 0:
        times = times.expand(n)
    elif times.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), one per point; got {tuple(times.shape)}")
    if not bool(torch.isfinite(times).all()) or not bool((times > 0).all()):
        raise ValueError(f"{name} must be positive and finite (a noise variance), got {times.tolist()[:5]}")
    return times


def check_points(x: ArrayLike, d: int, name: str = "x") -> tuple[torch.Tensor, bool]:
    """Return ``x`` as ``(n, d)`` and whether it was a single point of shape ``(d,)``."""
    tensor = x
    if tensor.ndim == 1:
        tensor, single = tensor[None, :], True
    elif tensor.ndim == 2:
        single = False
    else:
        raise ValueError(f"{name} must have shape (d,) or (n, d), got {tuple(tensor.shape)}")
    if tensor.shape[-1] != d:
        raise ValueError(f"{name} has {tensor.shape[-1]} features but the data have d={d}")
    check_finite(tensor, name)
    return tensor, single


def to_output(tensor: torch.Tensor, as_numpy: bool) -> ArrayLike:
    """Return NumPy for NumPy callers and tensors for tensor callers."""
    return tensor.detach().cpu().numpy() if as_numpy else tensor


def dataclass_from_dict(cls: type, values: dict) -> Any:
    """Build the dataclass ``cls`` from a dictionary of its fields; unknown keys are an error that lists the
    known ones (missing keys take their defaults)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(known)}")
    return cls(**values)


def check_choice(value: Any, choices: Any, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` and the allowed values if ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_positive_int(value: Any, name: str) -> None:
    """Raise unless ``value`` is a positive integer (Python or NumPy; a ``bool`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_score_call(x: torch.Tensor, t: Any, like: torch.Tensor, like_name: str, d: int) -> None:
    """Checks of a score function's call ``score_fn(x, t)`` that hold under ``vmap`` and ``jacrev`` too.

    ``x`` must have the dtype and device of ``like`` (named ``like_name``) and ``d`` features; a number or
    NumPy array ``t`` must be positive and finite (a tensor ``t`` is left to the caller: checking its values
    would break the function transforms).
    """
    check_same_kind(like, x, like_name, "x")
    if x.ndim != 2 or x.shape[-1] != d:
        raise ValueError(f"x must have shape (n, {d}), got {tuple(x.shape)}")
    if isinstance(t, (bool, int, float, np.integer, np.floating)):
        check_positive_number(t, "t")
    elif isinstance(t, np.ndarray):
        for value in t.ravel().tolist():
            check_positive_number(value, "t")


def check_orthonormal_columns(Q: torch.Tensor, name: str, *, atol: float) -> None:
    """Raise unless the square matrix ``Q`` has orthonormal columns (``Q^T Q = I`` within ``atol``)."""
    eye = torch.eye(Q.shape[-1], dtype=Q.dtype, device=Q.device)
    if not torch.allclose(Q.T @ Q, eye, atol=atol):
        raise ValueError(f"{name} must be an orthogonal matrix (orthonormal columns)")


def check_positive_number(value: Any, name: str) -> None:
    """Raise unless ``value`` is a finite positive real number (Python or NumPy; a ``bool`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


_FLAG_WORDS = dict.fromkeys(("1", "true", "on", "yes"), True) | dict.fromkeys(("0", "false", "off", "no"), False)


def env_flag(name: str) -> bool | None:
    """The on/off environment variable ``name``: ``None`` when unset or empty, else its truth value.

    Raises
    ------
    ValueError
        If the value is not one of 1/true/on/yes or 0/false/off/no (any case), naming the variable.
    """
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return None
    if value not in _FLAG_WORDS:
        raise ValueError(f"{name} must be one of {', '.join(_FLAG_WORDS)}, got {value!r}")
    return _FLAG_WORDS[value]
