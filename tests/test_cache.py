"""diffnb.cache: keys, hit, miss, corrupt and partial files, atomic and concurrent writes."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from diffnb import cache


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DIFFNB_SCALE", raising=False)
    return tmp_path / "cache"


class Counter:
    def __init__(self, value):
        self.calls = 0
        self.value = value

    def __call__(self):
        self.calls += 1
        return self.value


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFNB_CACHE", str(tmp_path / "x"))
    assert cache.cache_dir() == tmp_path / "x"
    monkeypatch.setenv("DIFFNB_CACHE", "off")
    assert cache.cache_dir() is None
    monkeypatch.delenv("DIFFNB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "diffnb"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == Path.home() / ".cache" / "diffnb"


def test_key_depends_on_everything_and_not_on_order():
    base = {"a": 1, "b": [1.0, 2.0], "arr": np.arange(3.0)}
    k = cache.config_key("kind", base, scale="quick")
    assert k == cache.config_key("kind", {"arr": np.arange(3.0), "b": [1.0, 2.0], "a": 1}, scale="quick")
    assert k != cache.config_key("kind", {**base, "a": 2}, scale="quick")
    assert k != cache.config_key("kind", {**base, "arr": np.arange(3.0) + 1e-12}, scale="quick")
    assert k != cache.config_key("other", base, scale="quick")
    assert k != cache.config_key("kind", base, scale="full")
    with pytest.raises(TypeError, match="cache key"):
        cache.config_key("kind", {"f": object()})


def test_key_includes_package_version(monkeypatch):
    import diffnb

    k1 = cache.config_key("kind", {"a": 1}, scale="quick")
    monkeypatch.setattr(diffnb, "__version__", "999.0")
    assert cache.config_key("kind", {"a": 1}, scale="quick") != k1


def test_miss_then_hit(folder):
    value = {"w": torch.arange(4.0), "a": np.ones((2, 3)), "n": 3, "s": "x", "t": (1, 2), "none": None}
    compute = Counter(value)
    first = cache.cached("thing", {"p": 1}, compute)
    second = cache.cached("thing", {"p": 1}, compute)
    assert compute.calls == 1
    for got in (first, second):
        assert torch.equal(got["w"], value["w"])
        np.testing.assert_array_equal(got["a"], value["a"])
        assert isinstance(got["a"], np.ndarray)
        assert got["n"] == 3 and got["s"] == "x" and got["t"] == (1, 2) and got["none"] is None
    cache.cached("thing", {"p": 2}, compute)
    assert compute.calls == 2
    assert len(list((folder / "thing").glob("*.pt"))) == 2


def test_disabled_and_off(folder, monkeypatch):
    compute = Counter(1)
    cache.cached("thing", {}, compute, enabled=False)
    cache.cached("thing", {}, compute, enabled=False)
    assert compute.calls == 2 and not folder.exists()
    monkeypatch.setenv("DIFFNB_CACHE", "off")
    cache.cached("thing", {}, compute)
    assert compute.calls == 3


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_file_is_reported_and_recomputed(folder, caplog, damage):
    compute = Counter({"w": torch.randn(100)})
    cache.cached("thing", {"p": 1}, compute)
    (path,) = (folder / "thing").glob("*.pt")
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        path.write_bytes(raw[:-10] + bytes([raw[-10] ^ 0xFF]) + raw[-9:])
    elif damage == "garbage":
        path.write_bytes(b"not a cache file at all")
    else:
        path.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="diffnb.cache"):
        got = cache.cached("thing", {"p": 1}, compute)
    assert compute.calls == 2
    torch.testing.assert_close(got["w"], compute.value["w"])
    messages = [r.getMessage() for r in caplog.records if r.name == "diffnb.cache"]
    assert len(messages) == 1 and "\n" not in messages[0] and "recomputing" in messages[0]
    # the recomputed entry is whole again
    torch.testing.assert_close(cache.load(path)["w"], compute.value["w"])


def test_load_errors(tmp_path):
    with pytest.raises(cache.CacheError, match="no cache file"):
        cache.load(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(cache._MAGIC + b"x" * 40)
    with pytest.raises(cache.CacheError, match="corrupt or partial"):
        cache.load(bad)


def test_atomic_write_leaves_no_temporary_files(folder):
    cache.store("thing", {"p": 1}, {"w": torch.zeros(10)})
    files = list((folder / "thing").iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"


def test_failed_write_keeps_old_entry(folder):
    cache.store("thing", {"p": 1}, {"w": torch.zeros(3)})
    with pytest.raises(TypeError):
        cache.store("thing", {"p": 1}, {"w": object()})
    assert torch.equal(cache.lookup("thing", {"p": 1})["w"], torch.zeros(3))
    assert len(list((folder / "thing").iterdir())) == 1


def test_concurrent_writers_threads(folder):
    """Many threads write the same entry while others read it: every read sees a whole file."""
    errors, reads = [], []
    payloads = [{"w": torch.full((20_000,), float(i))} for i in range(8)]

    def writer(i):
        try:
            for _ in range(5):
                cache.store("thing", {"p": 1}, payloads[i])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader():
        for _ in range(30):
            value = cache.lookup("thing", {"p": 1})
            if value is not None:
                w = value["w"]
                reads.append(bool((w == w[0]).all()) and 0 <= float(w[0]) < 8)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert all(reads)
    assert len(list((folder / "thing").iterdir())) == 1


def _process_writer(folder: str, i: int) -> None:
    import os

    # a forked child must not enter the parent's OpenMP thread pool (it can deadlock): one thread
    torch.set_num_threads(1)
    os.environ["DIFFNB_CACHE"] = folder
    from diffnb import cache as c

    for _ in range(5):
        c.cached("thing", {"p": 1}, lambda: {"w": torch.full((50_000,), float(i))}, scale="quick")
        c.store("thing", {"p": 1}, {"w": torch.full((50_000,), float(i))}, scale="quick")


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_concurrent_writers_processes(folder):
    ctx = multiprocessing.get_context("fork")  # "spawn" works too but re-imports torch (seconds per process)
    procs = [ctx.Process(target=_process_writer, args=(str(folder), i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    for p in procs:
        if p.is_alive():  # pragma: no cover - only on a hang
            p.kill()
    assert all(p.exitcode == 0 for p in procs)
    value = cache.lookup("thing", {"p": 1}, scale="quick")
    w = value["w"]
    assert w.shape == (50_000,) and bool((w == w[0]).all())
    assert len(list((folder / "thing").iterdir())) == 1
