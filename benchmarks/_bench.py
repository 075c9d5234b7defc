"""What the benchmark scripts share: the thread settings read from ``BENCH_THREADS`` and best-of-N timing.

Not a benchmark itself (``make bench`` runs only the scripts whose names do not start with ``_``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from diffnb.config import set_threads


def _threads_variable() -> int | None:
    """``BENCH_THREADS`` as a positive integer, or ``None`` when it is not set."""
    raw = os.environ.get("BENCH_THREADS")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"BENCH_THREADS must be a positive integer, got {raw!r}")
    return int(raw)


def threads_from_env() -> str:
    """Set torch's and the NumPy/SciPy BLAS's threads from ``BENCH_THREADS`` (default 1); say how many.

    One thread by default, so that every method runs on the same footing on a busy machine;
    ``BENCH_THREADS=2`` gives every method both cores of a quiet one.
    """
    threads = set_threads(_threads_variable() or 1)
    return f"{threads} thread{'s' if threads > 1 else ''} (torch and BLAS)"


def thread_counts_from_env() -> list[int]:
    """The thread counts to compare: ``BENCH_THREADS`` alone when it is set, else one and every core we may use."""
    threads = _threads_variable()
    return [threads] if threads is not None else sorted({1, len(os.sched_getaffinity(0))})


def best_time(fn: Callable[..., Any], *args: Any, repeats: int = 1, **kwargs: Any) -> tuple[float, Any]:
    """The best of ``repeats`` wall-clock times of ``fn(*args, **kwargs)`` in seconds, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, out


def keep_fastest(fastest: dict[str, tuple[float, int]], name: str, seconds: float, threads: int) -> None:
    """Record ``(seconds, threads)`` under ``name`` when it is faster than what ``fastest`` holds there."""
    fastest[name] = min(fastest.get(name, (math.inf, 0)), (seconds, threads))


def device_name(device: torch.device) -> str:
    """The GPU's name for a CUDA device (e.g. "NVIDIA H200"), else "CPU"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a CUDA device (nothing to wait for on the CPU), so that a timer reads it done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
