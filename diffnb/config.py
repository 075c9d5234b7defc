"""Workload scales, seeds, device and thread choice.

Every notebook reads its workload from the environment variable ``DIFFNB_SCALE``:

* ``quick`` — CI and a first local run: each notebook in under 3 minutes on 2 CPU cores;
* ``full`` — a reader on a laptop: the papers' qualitative results on CPU;
* ``paper`` — a GPU: the papers' own sizes and training budgets, results cached on disk.

A notebook asks for its sizes with :func:`pick`, e.g. ``n_train = pick(quick=500, full=5000, paper=20000)``.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

SCALES: tuple[str, ...] = ("quick", "full", "paper")
DEFAULT_SCALE = "quick"
SCALE_VARIABLE = "DIFFNB_SCALE"
DEFAULT_SEED = 0


class ScaleError(ValueError):
    """Raised when ``DIFFNB_SCALE`` names no known scale."""


def get_scale(name: str | None = None) -> str:
    """Return the active scale, validated.

    Parameters
    ----------
    name
        A scale name. When omitted, the environment variable ``DIFFNB_SCALE`` is read, and
        ``"quick"`` is used when it is unset or empty.

    Raises
    ------
    ScaleError
        If the name is not one of ``SCALES``; the message lists the valid names.
    """
    if name is None:
        name = os.environ.get(SCALE_VARIABLE, "").strip() or DEFAULT_SCALE
    if name not in SCALES:
        raise ScaleError(
            f"{SCALE_VARIABLE}={name!r} is not a known scale; valid scales are "
            f"{', '.join(SCALES)} (for example: {SCALE_VARIABLE}=quick make test)."
        )
    return name


def pick(*, quick: T, full: T, paper: T | None = None, scale: str | None = None) -> T:
    """Choose a workload parameter for the active scale.

    Parameters
    ----------
    quick, full, paper
        The value at each scale. ``paper`` defaults to the ``full`` value.
    scale
        Override the scale read from ``DIFFNB_SCALE``.

    Examples
    --------
    >>> pick(quick=100, full=1000, scale="quick")
    100
    """
    values = {"quick": quick, "full": full, "paper": full if paper is None else paper}
    return values[get_scale(scale)]


def seed_everything(seed: int = DEFAULT_SEED) -> np.random.Generator:
    """Seed Python, NumPy and torch, and return a fresh NumPy generator with that seed.

    Parameters
    ----------
    seed
        A non-negative integer.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)  # noqa: NPY002 - also seed code that still uses the global generator
    torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device to compute on: CUDA when present, else CPU.

    Parameters
    ----------
    prefer
        ``"cpu"``, ``"cuda"`` or ``None``. When ``None``, the environment variable ``DIFFNB_DEVICE`` is
        read, and CUDA is used when available.
    """
    prefer = prefer or os.environ.get("DIFFNB_DEVICE") or None
    if prefer is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if prefer not in ("cpu", "cuda") and not prefer.startswith("cuda:"):
        raise ValueError(f"prefer must be 'cpu', 'cuda' or 'cuda:N', got {prefer!r}")
    if prefer.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {prefer!r} was asked for but CUDA is not available on this machine")
    return torch.device(prefer)


def set_threads(n: int | None = None) -> int:
    """Set the number of CPU threads of torch and of the BLAS under NumPy/SciPy, and return it.

    Tiny networks train fastest on one thread (thread hand-offs cost more than the arithmetic);
    large matrix products prefer all cores. Both libraries are limited because the exact spectra run
    partly in each (``diffnb._linalg`` sends products and Gram matrices through NumPy's BLAS). ``None``
    reads ``DIFFNB_THREADS`` and otherwise leaves both choices unchanged.
    """
    if n is None:
        env = os.environ.get("DIFFNB_THREADS")
        if not env:
            return torch.get_num_threads()
        n = int(env)
    if n < 1:
        raise ValueError(f"n must be a positive number of threads, got {n}")
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(int(n))
    threadpool_limits(int(n), user_api="blas")  # process-wide until changed again
    return torch.get_num_threads()


@contextlib.contextmanager
def active_scale(name: str) -> Iterator[str]:
    """Make ``name`` the active scale (``DIFFNB_SCALE``) for the duration of a ``with`` block, then restore
    the previous setting. What reads the scale from the environment inside the block, such as the keys of
    :mod:`diffnb.cache`, sees ``name``. The environment is the process's: other threads see the change too
    (the sweeps run one job per process or thread at a time, so this is safe there).

    Parameters
    ----------
    name
        One of ``SCALES``.

    Yields
    ------
    str
        The scale.

    Raises
    ------
    ScaleError
        If ``name`` is not one of ``SCALES``.
    """
    scale = get_scale(name)
    previous = os.environ.get(SCALE_VARIABLE)
    os.environ[SCALE_VARIABLE] = scale
    try:
        yield scale
    finally:
        if previous is None:
            os.environ.pop(SCALE_VARIABLE, None)
        else:
            os.environ[SCALE_VARIABLE] = previous


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run torch on ``n`` CPU threads for the duration of a ``with`` block (``None``: unchanged), then restore.

    Only torch is limited, not the BLAS under NumPy. Two uses: tiny networks train fastest on one thread,
    and a loop that alternates small torch operations with NumPy's BLAS runs torch on one so that the two
    libraries' idle threads, which spin for a while before they sleep, do not wait on each other's cores
    (on two cores the closed-form spectrum of 16 points at ``d = 64, P = 1000`` took 120-260 ms with torch
    on two threads against 12 ms on one).
    """
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


#: printed under :func:`describe` when ``paper`` scale runs without a GPU
PAPER_ON_CPU_NOTE = (
    "note: paper scale without a GPU. A chapter that finds committed\n"
    "paper-scale results (under results/, or $DIFFNB_RESULTS) loads them;\n"
    "one that does not trains at the papers' budgets, which takes days on a\n"
    "CPU. `full` is the scale for a CPU."
)


def describe() -> str:
    """The package, torch and numpy versions, the scale and the device, for a notebook's first cell.

    One line, and a second one (:data:`PAPER_ON_CPU_NOTE`) when ``paper`` scale runs on a CPU.
    """
    from diffnb import __version__

    scale, device = get_scale(), get_device()
    versions = f"diffnb {__version__} | torch {torch.__version__} | numpy {np.__version__}"
    line = f"{versions} | scale={scale} | device={device}"
    if scale == "paper" and device.type == "cpu":
        line += "\n" + PAPER_ON_CPU_NOTE
    return line


def _main() -> int:
    """``python -m diffnb.config``: validate ``DIFFNB_SCALE`` and print the set-up (used by the Makefile)."""
    import sys

    try:
        print(describe())
    except ScaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
