"""Image loaders: digits offline, IDX and CIFAR-10 parsing on small synthetic files, errors that say what to do."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from diffnb.data import images as im


def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    return header + big.tobytes()


def _write_fake_mnist(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        raw = _idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


def _cifar_batch_bytes(n: int, seed: int) -> tuple[bytes, np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    batch = {b"batch_label": b"synthetic", b"labels": labels, b"data": data, b"filenames": [b"x.png"] * n}
    return pickle.dumps(batch, protocol=2), data, labels


def _write_fake_cifar(folder: Path, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    train = []
    for i, member in enumerate(im._CIFAR_TRAIN + im._CIFAR_TEST):
        raw, data, _ = _cifar_batch_bytes(n, seed=i)
        (folder / member).write_bytes(raw)
        train.append(data)
    return np.concatenate(train[:5]), train[5]


# ------------------------------------------------------------------------------------------------ parsers


@pytest.mark.parametrize(
    ("dtype", "code"),
    [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)],
)
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, code, gz):
    array = (np.arange(2 * 3 * 4) - 7).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = _idx_bytes(array, code)
    path = tmp_path / "file.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    out = im.read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_rejects_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no IDX file"):
        im.read_idx(tmp_path / "absent")
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x89PNG....")
    with pytest.raises(ValueError, match="not an IDX file"):
        im.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))[:-10])
    with pytest.raises(ValueError, match="truncated"):
        im.read_idx(short)


def test_read_cifar_batch(tmp_path):
    raw, data, labels = _cifar_batch_bytes(4, seed=1)
    path = tmp_path / "data_batch_1"
    path.write_bytes(raw)
    x, y = im.read_cifar_batch(path)
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.uint8
    np.testing.assert_array_equal(x.reshape(4, -1), data)
    # channel planes: the first 1024 bytes of a row are the red plane
    np.testing.assert_array_equal(x[:, 0].reshape(4, -1), data[:, :1024])
    np.testing.assert_array_equal(y, labels)


def test_read_cifar_batch_refuses_foreign_pickles(tmp_path):
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": Path("x"), b"labels": []}))
    with pytest.raises(ValueError, match="may not hold"):
        im.read_cifar_batch(path)
    path.write_bytes(pickle.dumps({b"labels": [1]}))
    with pytest.raises(ValueError, match="lack 'data'"):
        im.read_cifar_batch(path)


# ------------------------------------------------------------------------------------------------ loaders


def test_digits_offline_scaled_and_split():
    train = im.load_images("digits")
    test = im.load_images("digits", "test")
    full, labels = im.load_images("digits", "all", flat=True, return_labels=True)
    assert train.shape == (1497, 1, 8, 8) and test.shape == (300, 1, 8, 8) and full.shape == (1797, 64)
    assert float(full.min()) == -1.0 and float(full.max()) == 1.0
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    # the two splits are disjoint and together give all digits
    rows = {tuple(r) for r in im.flatten(torch.cat([train, test])).tolist()}
    assert len(rows) == len({tuple(r) for r in full.tolist()})
    torch.testing.assert_close(im.unflatten(im.flatten(train), (1, 8, 8)), train)


def test_digits_sizes():
    assert im.load_images("digits", size=4).shape == (1497, 1, 4, 4)
    padded = im.load_images("digits", size=12)
    assert padded.shape == (1497, 1, 12, 12) and torch.all(padded[:, :, :2] == -1)
    pooled = im.load_images("digits", size=4)
    base = im.load_images("digits")
    torch.testing.assert_close(pooled[:, :, 0, 0], base[:, :, :2, :2].mean(dim=(-1, -2)))


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_local_folder(tmp_path, monkeypatch, gz):
    arrays = _write_fake_mnist(tmp_path / "mnist" / "raw", gz=gz)
    if gz:  # point the checksums at the synthetic files
        files = tuple(
            im.DataFile(f.name, hashlib.sha256((tmp_path / "mnist" / "raw" / f.name).read_bytes()).hexdigest(), ())
            for f in im.DATASETS["mnist"].files
        )
        monkeypatch.setitem(
            im.DATASETS, "mnist", im.DATASETS["mnist"].__class__(**{**im.DATASETS["mnist"].__dict__, "files": files})
        )
    x, y = im.load_images("mnist", root=tmp_path, download=False, return_labels=True)
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.float32
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float64) / 127.5 - 1).float()
    torch.testing.assert_close(x[:, 0], expected)
    np.testing.assert_array_equal(y.numpy(), arrays["train-labels-idx1-ubyte"])
    assert im.load_images("mnist", "test", root=tmp_path, download=False).shape == (5, 1, 28, 28)
    assert im.load_images("mnist", "all", root=tmp_path, download=False, size=32).shape == (17, 1, 32, 32)
    assert im.load_images("mnist", root=tmp_path, download=False, size=14, flat=True).shape == (12, 196)


def test_environment_variable_sets_the_folder(tmp_path, monkeypatch):
    _write_fake_mnist(tmp_path / "fashion_mnist")
    monkeypatch.setenv("DIFFNB_DATA", str(tmp_path))
    assert im.data_home() == tmp_path
    assert im.load_images("fashion_mnist", download=False).shape == (12, 1, 28, 28)


def test_checksum_mismatch_is_reported(tmp_path):
    folder = tmp_path / "mnist"
    _write_fake_mnist(folder, gz=True)
    with pytest.raises(ValueError, match="SHA-256"):
        im.load_images("mnist", root=tmp_path, download=False)


@pytest.mark.parametrize("layout", ["folder", "archive"])
def test_cifar_from_local_copy(tmp_path, monkeypatch, layout):
    batches = tmp_path / "staging" / im._CIFAR_FOLDER
    train, test = _write_fake_cifar(batches)
    target = tmp_path / "cifar10"
    target.mkdir()
    if layout == "folder":
        shutil.copytree(batches, target / im._CIFAR_FOLDER)
    else:
        archive = target / im._CIFAR_ARCHIVE
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(batches, arcname=im._CIFAR_FOLDER)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        info = im.DATASETS["cifar10"]
        fake = im.ImageDataset(**{**info.__dict__, "files": (im.DataFile(im._CIFAR_ARCHIVE, digest, ()),)})
        monkeypatch.setitem(im.DATASETS, "cifar10", fake)
    x = im.load_images("cifar10", root=tmp_path, download=False)
    assert x.shape == (15, 3, 32, 32)
    np.testing.assert_allclose(((x + 1) * 127.5).round().reshape(15, -1).numpy(), train, atol=0)
    assert im.load_images("cifar10", "test", root=tmp_path, download=False, size=16).shape == (3, 3, 16, 16)


def test_download_goes_through_pooch_into_the_folder(tmp_path, monkeypatch):
    source = tmp_path / "mirror"
    _write_fake_mnist(source, gz=True)
    files = tuple(
        im.DataFile(f.name, hashlib.sha256((source / f.name).read_bytes()).hexdigest(), ("https://mirror.invalid/",))
        for f in im.DATASETS["mnist"].files
    )
    monkeypatch.setitem(im.DATASETS, "mnist", im.ImageDataset(**{**im.DATASETS["mnist"].__dict__, "files": files}))
    calls = []

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        calls.append((url, known_hash))
        assert known_hash.startswith("sha256:")
        Path(path).mkdir(parents=True, exist_ok=True)
        shutil.copy(source / fname, Path(path) / fname)
        return str(Path(path) / fname)

    import pooch

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    x = im.load_images("mnist", root=tmp_path / "cache")
    assert x.shape == (12, 1, 28, 28) and len(calls) == 4
    assert (tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    im.load_images("mnist", root=tmp_path / "cache")  # found now: no second download
    assert len(calls) == 4


def test_offline_message_says_where_to_put_which_files(tmp_path, monkeypatch):
    import pooch

    def no_network(*args, **kwargs):
        raise ConnectionError("name resolution failed")

    monkeypatch.setattr(pooch, "retrieve", no_network)
    with pytest.raises(FileNotFoundError) as info:
        im.load_images("mnist", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "mnist") in message and "download failed" in message
    for file in im.DATASETS["mnist"].files:
        assert file.name in message and file.sha256 in message
    monkeypatch.setenv("DIFFNB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="DIFFNB_OFFLINE") as info:
        im.load_images("cifar10", root=tmp_path)
    assert "cifar-10-python.tar.gz" in str(info.value) and "cifar-10-batches-py" in str(info.value)


# ------------------------------------------------------------------------------------------------ subsets


def test_subsets_are_seeded_and_nested():
    small = im.load_subset("digits", 50, seed=3)
    large = im.load_subset("digits", 200, seed=3)
    torch.testing.assert_close(large[:50], small)
    assert not torch.equal(im.load_subset("digits", 50, seed=4), small)
    x, y = im.load_subset("digits", 20, seed=1, return_labels=True, flat=True)
    assert x.shape == (20, 64) and y.shape == (20,)


def test_bad_input():
    with pytest.raises(ValueError, match="larger than the data set, which holds 1497"):
        im.load_subset("digits", 5000)
    with pytest.raises(ValueError, match="positive integer"):
        im.subset(torch.zeros(10, 3), 0)
    with pytest.raises(ValueError, match="name must be one of"):
        im.load_images("celeba")
    with pytest.raises(ValueError, match="split must be one of"):
        im.load_images("digits", "validation")
    with pytest.raises(ValueError, match="size=6 is not supported for digits"):
        im.load_images("digits", size=6)
    with pytest.raises(ValueError, match="size=29 is not supported for mnist"):
        im.load_images("mnist", size=29, download=False)
    with pytest.raises(ValueError, match="dtype"):
        im.load_images("digits", dtype=torch.int64)
    with pytest.raises(ValueError, match="shape"):
        im.unflatten(torch.zeros(2, 10), (1, 3, 3))


def test_nearest_neighbors():
    ref = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    dist, idx = im.nearest_neighbors(torch.tensor([[3.0, 3.0], [9.0, 0.0]]), ref)
    torch.testing.assert_close(dist, torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert idx.tolist() == [1, 2]
    dist, idx = im.nearest_neighbors(ref, ref, exclude_self=True, batch_size=2)
    torch.testing.assert_close(dist, torch.tensor([5.0, 5.0, 65**0.5], dtype=torch.float64))
    assert idx.tolist() == [1, 0, 1]


def test_pickle_of_numpy_2_arrays_loads(tmp_path):
    # batches written by current NumPy reference numpy._core; the allow-list accepts both spellings
    buffer = io.BytesIO()
    pickle.dump({"data": np.zeros((1, 3072), dtype=np.uint8), "labels": [0]}, buffer)
    (tmp_path / "b").write_bytes(buffer.getvalue())
    x, y = im.read_cifar_batch(tmp_path / "b")
    assert x.shape == (1, 3, 32, 32) and y.tolist() == [0]


def test_digits_match_scikit_learn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = im._digits()
    np.testing.assert_array_equal(images[:, 0], bunch.images.astype(np.uint8))
    np.testing.assert_array_equal(labels, bunch.target)
