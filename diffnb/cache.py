"""On-disk cache of heavy results (trained networks, spectra), keyed by a hash of their configuration.

An entry is found by the SHA-256 of a canonical JSON rendering of ``(kind, configuration, package version,
scale)``: change any hyper-parameter, the package version or ``DIFFNB_SCALE`` and the entry is recomputed.
Arrays in a configuration (e.g. a training set) enter the key through a digest of their bytes.

Files are written atomically (a temporary file in the same folder, flushed, then ``os.replace``), so a
reader never sees half a file, and two processes that compute the same entry at once both leave a complete
one. Every file starts with a magic line and a digest of its body; a truncated or corrupt file is detected,
reported in one line on the ``diffnb.cache`` logger, deleted and recomputed.

Folder: ``$DIFFNB_CACHE`` when set, else ``$XDG_CACHE_HOME/diffnb``, else ``~/.cache/diffnb``.
``DIFFNB_CACHE=off`` turns the cache off (every call computes).

Values may be nested dicts, lists and tuples of tensors, NumPy arrays, numbers, strings and ``None``; they are
stored with :func:`torch.save` and read back with ``torch.load(weights_only=True)`` (no arbitrary pickles).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffnb.config import get_scale

log = logging.getLogger("diffnb.cache")

ENV_VARIABLE = "DIFFNB_CACHE"
_MAGIC = b"DIFFNB-CACHE-1\n"
_DIGEST_BYTES = 32
_OFF = {"off", "0", "false", "no", "none"}
_MISSING = object()  # what _read returns for no usable entry (a cached value may itself be None)


class CacheError(RuntimeError):
    """A cache file that cannot be read (missing, truncated, or its digest does not match)."""


def cache_dir() -> Path | None:
    """The cache folder (created on first write), or ``None`` when ``DIFFNB_CACHE=off``."""
    env = os.environ.get(ENV_VARIABLE, "").strip()
    if env.lower() in _OFF:
        return None
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "diffnb"


# ----------------------------------------------------------------------------------------------- keys
def _canonical(value: Any) -> Any:
    """A JSON-able, order-independent rendering of a configuration value."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return repr(value) if not math.isfinite(value) else value
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return {
            "__tensor__": array_digest(value.numpy() if value.dtype != torch.bfloat16 else value.float().numpy()),
            "dtype": str(value.dtype),
        }
    if isinstance(value, np.ndarray):
        return {"__ndarray__": array_digest(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value) if f.compare}
        return {"__dataclass__": type(value).__name__, **fields}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (torch.dtype, torch.device, Path)):
        return str(value)
    raise TypeError(
        f"cannot use a {type(value).__name__} in a cache key; use numbers, strings, arrays, dataclasses, "
        f"or dicts and lists of them"
    )


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{array.dtype.str}|{array.shape}|".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def config_key(kind: str, config: Any, *, scale: str | None = None) -> str:
    """The hex key of an entry: SHA-256 of ``kind``, ``config``, the package version and the scale."""
    from diffnb import __version__

    if not isinstance(kind, str) or not kind or not kind.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"kind must be a non-empty name of letters, digits, '_' or '-', got {kind!r}")
    document = {
        "kind": kind,
        "config": _canonical(config),
        "version": __version__,
        "scale": get_scale(scale),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def entry_path(kind: str, key: str, folder: Path | None = None) -> Path:
    """File of an entry: ``<folder>/<kind>/<key>.pt``."""
    folder = cache_dir() if folder is None else Path(folder)
    if folder is None:
        raise CacheError(f"the cache is off ({ENV_VARIABLE}=off)")
    return folder / kind / f"{key}.pt"


# ----------------------------------------------------------------------------------------------- values
def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("object arrays cannot be cached")
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    raise TypeError(f"cannot cache a {type(value).__name__}; store tensors, arrays, numbers, strings, dicts, lists")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ndarray__"}:
            return value["__ndarray__"].numpy()
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def save(path: Path | str, value: Any) -> Path:
    """Write ``value`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(_encode(value), buffer)
    body = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(_MAGIC)
            handle.write(hashlib.sha256(body).digest())
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def load(path: Path | str) -> Any:
    """Read a file written by :func:`save`; raise :class:`CacheError` if it is missing, truncated or corrupt."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise CacheError(f"no cache file at {path}") from exc
    head = len(_MAGIC) + _DIGEST_BYTES
    if len(raw) < head or not raw.startswith(_MAGIC):
        raise CacheError(f"{path} is not a diffnb cache file or is truncated ({len(raw)} bytes)")
    digest, body = raw[len(_MAGIC) : head], raw[head:]
    if hashlib.sha256(body).digest() != digest:
        raise CacheError(f"{path} is corrupt or partial (digest mismatch, {len(body)} bytes of body)")
    try:
        return _decode(torch.load(io.BytesIO(body), weights_only=True, map_location="cpu"))
    except Exception as exc:  # pragma: no cover - digest matched but the pickle is unreadable
        raise CacheError(f"{path} could not be unpickled: {exc}") from exc


def cached(
    kind: str,
    config: Any,
    compute: Callable[[], Any],
    *,
    enabled: bool = True,
    folder: Path | str | None = None,
    scale: str | None = None,
) -> Any:
    """Return the cached value for ``(kind, config)``, computing and storing it on a miss.

    Parameters
    ----------
    kind
        Short name of the kind of artifact (a sub-folder), e.g. ``"score_mlp"``.
    config
        Everything the value depends on (see :func:`config_key`).
    compute
        Called without arguments on a miss; its result is stored and returned.
    enabled
        ``False`` skips the cache entirely (always computes, never writes).
    folder
        Cache folder; by default :func:`cache_dir`.
    scale
        Scale that enters the key; by default the active ``DIFFNB_SCALE``.

    Returns
    -------
    object
        The value, read from the cache or just computed.

    Notes
    -----
    A corrupt or partial file is reported in one line (``diffnb.cache`` logger, level WARNING), removed and
    recomputed.
    """
    path = _entry(kind, config, folder, scale) if enabled else None
    if path is None:
        return compute()
    value = _read(path, "recomputing")
    if value is _MISSING:
        value = compute()
        save(path, value)
    return value


def _entry(kind: str, config: Any, folder: Path | str | None, scale: str | None) -> Path | None:
    """File of the entry for ``(kind, config)`` in ``folder`` (default :func:`cache_dir`); ``None`` when off."""
    root = cache_dir() if folder is None else Path(folder)
    if root is None:
        return None
    return entry_path(kind, config_key(kind, config, scale=scale), root)


def _read(path: Path, then: str) -> Any:
    """The value stored at ``path``, or ``_MISSING`` when there is none or the file is corrupt or partial.

    A corrupt or partial file is reported in one line (saying what happens ``then``) and removed.
    """
    if not path.exists():
        return _MISSING
    try:
        return load(path)
    except CacheError as exc:
        log.warning("diffnb.cache: %s; %s", exc, then)
        path.unlink(missing_ok=True)
        return _MISSING


def lookup(kind: str, config: Any, *, folder: Path | str | None = None, scale: str | None = None) -> Any | None:
    """The cached value for ``(kind, config)`` or ``None`` (a corrupt file is reported and removed)."""
    path = _entry(kind, config, folder, scale)
    value = _MISSING if path is None else _read(path, "ignoring it")
    return None if value is _MISSING else value


def store(
    kind: str, config: Any, value: Any, *, folder: Path | str | None = None, scale: str | None = None
) -> Path | None:
    """Store ``value`` under ``(kind, config)``; returns the file, or ``None`` when the cache is off."""
    path = _entry(kind, config, folder, scale)
    return None if path is None else save(path, value)


def remove(kind: str, config: Any, *, folder: Path | str | None = None, scale: str | None = None) -> bool:
    """Delete the entry for ``(kind, config)``; returns whether there was one."""
    path = _entry(kind, config, folder, scale)
    if path is None:
        return False
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
