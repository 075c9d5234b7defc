r"""Image data sets: scikit-learn's 8x8 digits offline, MNIST, Fashion-MNIST and CIFAR-10 from a cache folder.

Conventions
-----------
* **Pixels** are scaled to ``[-1, 1]`` (``2 * value / max - 1``), as the DDPM models of both papers use them.
* **Shape**: :func:`load_images` returns a float tensor of shape ``(n, C, H, W)`` (channels first, as
  ``torch.nn.Conv2d`` wants them); ``flat=True`` returns ``(n, d)`` with ``d = C * H * W`` in the same
  (C, H, W) row-major order, which is what the score functions of :mod:`diffnb.jacobian` take.
  :func:`flatten` and :func:`unflatten` convert between the two.
* **Sizes**: ``size=None`` keeps the native resolution. A smaller ``size`` that divides it averages blocks of
  pixels (``mnist`` at ``size=14`` or ``7``); a larger ``size`` of the same parity pads the border with the
  background value ``-1`` (``mnist`` at ``size=32``, the usual way to put MNIST through a U-Net with three
  down-samplings). Any other size raises ``ValueError``.
* **Subsets** of a given size are the first ``size`` indices of one permutation fixed by ``seed``, so the
  subsets of a sweep over sizes are nested (the memorization paper's ``random_split`` with one seed behaves
  the same way).

Data sets
---------
``digits``
    scikit-learn's 1797 handwritten digits, 8x8, 17 grey levels; they ship inside the scikit-learn wheel, so
    this is the data set that always works offline (the ``quick`` scale). There is no official split: a
    permutation fixed once (seed 0) puts 300 digits in ``"test"`` and 1497 in ``"train"``.
``mnist``, ``fashion_mnist``
    28x28 grey images in the IDX format, 60000 for training and 10000 for testing.
``cifar10``
    32x32 colour images, the "CIFAR-10 python version" archive, 50000 for training and 10000 for testing.

Where files are looked for, in order:

1. ``root/<name>/`` when ``root`` is given, else ``$DIFFNB_DATA/<name>/`` (default
   ``~/.cache/diffnb/data/<name>/``), also in a ``raw/`` subfolder (torchvision's layout); IDX files may be
   gzipped or not, CIFAR-10 may be the ``.tar.gz`` archive or its extracted ``cifar-10-batches-py/`` folder;
2. a download into that folder through ``pooch``, with every file checked against its SHA-256, unless
   ``download=False`` or ``DIFFNB_OFFLINE=1``.

When neither works, :class:`FileNotFoundError` names the folder and every file to put there.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffnb._validation import check_choice, env_flag

__all__ = [
    "DATASETS",
    "DataFile",
    "ImageDataset",
    "data_home",
    "dataset_info",
    "load_images",
    "load_subset",
    "subset_indices",
    "subset",
    "flatten",
    "unflatten",
    "read_idx",
    "read_cifar_batch",
    "nearest_neighbors",
]

DATA_VARIABLE = "DIFFNB_DATA"
OFFLINE_VARIABLE = "DIFFNB_OFFLINE"
SPLITS = ("train", "test", "all")
_DIGITS_TEST = 300
_MIN_SIZE, _MAX_SIZE = 2, 128


@dataclass(frozen=True)
class DataFile:
    """One downloadable file: its name, SHA-256 and the base URLs of its mirrors (tried in turn)."""

    name: str
    sha256: str
    mirrors: tuple[str, ...]


@dataclass(frozen=True)
class ImageDataset:
    """What the loader knows about one data set.

    Parameters
    ----------
    name
        The name :func:`load_images` takes.
    title
        The usual spelling, for messages and figures.
    shape
        Native ``(C, H, W)``.
    files
        Downloadable files (empty for ``digits``, which ships with scikit-learn).
    n_train, n_test
        Number of images in each split.
    """

    name: str
    title: str
    shape: tuple[int, int, int]
    files: tuple[DataFile, ...]
    n_train: int
    n_test: int

    @property
    def d(self) -> int:
        """Native dimension ``C * H * W``."""
        return int(np.prod(self.shape))


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_CIFAR_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)


def _idx_files(hashes: Sequence[str], mirrors: tuple[str, ...]) -> tuple[DataFile, ...]:
    return tuple(DataFile(f"{name}.gz", digest, mirrors) for name, digest in zip(_IDX_NAMES, hashes, strict=True))


DATASETS: dict[str, ImageDataset] = {
    "digits": ImageDataset("digits", "digits (scikit-learn, 8x8)", (1, 8, 8), (), 1797 - _DIGITS_TEST, _DIGITS_TEST),
    "mnist": ImageDataset(
        "mnist",
        "MNIST",
        (1, 28, 28),
        _idx_files(
            (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
            _MNIST_MIRRORS,
        ),
        60000,
        10000,
    ),
    "fashion_mnist": ImageDataset(
        "fashion_mnist",
        "Fashion-MNIST",
        (1, 28, 28),
        _idx_files(
            (
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
            _FASHION_MIRRORS,
        ),
        60000,
        10000,
    ),
    "cifar10": ImageDataset(
        "cifar10",
        "CIFAR-10",
        (3, 32, 32),
        (DataFile(_CIFAR_ARCHIVE, "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", _CIFAR_MIRRORS),),
        50000,
        10000,
    ),
}


# --------------------------------------------------------------------------------------------------- helpers


def data_home() -> Path:
    """The folder that holds downloaded data: ``$DIFFNB_DATA``, else ``$XDG_CACHE_HOME/diffnb/data``,
    else ``~/.cache/diffnb/data``. Nothing is created here."""
    env = os.environ.get(DATA_VARIABLE, "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "diffnb" / "data"


def dataset_info(name: str) -> ImageDataset:
    """The :class:`ImageDataset` record of ``name``; ``ValueError`` listing the known names otherwise."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _offline() -> bool:
    return env_flag(OFFLINE_VARIABLE) is True


def _candidate_folders(folder: Path) -> list[Path]:
    return [folder, folder / "raw"]


def _missing_message(info: ImageDataset, folder: Path, reason: str) -> str:
    listing = "\n".join(f"  {f.name}  (sha256 {f.sha256})" for f in info.files)
    sources = sorted({m for f in info.files for m in f.mirrors})
    extra = (
        "  (or the unpacked IDX files without .gz)"
        if info.name != "cifar10"
        else f"  (or its unpacked folder {_CIFAR_FOLDER}/ with data_batch_1 ... data_batch_5 and test_batch)"
    )
    return (
        f"{info.title} is not available. Put these files into {folder}/ :\n{listing}\n{extra}\n"
        f"They can be fetched from {', '.join(sources)}. Alternatively set {DATA_VARIABLE} to a folder that "
        f"holds {info.name}/, or pass root=... pointing to the parent of {info.name}/. "
        f"The offline data set 'digits' needs no files.\nReason: {reason}"
    )


# ------------------------------------------------------------------------------------------------- parsers


_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        head = handle.read(2)
    opener: Callable = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as handle:
        return handle.read()


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not.

    The header is two zero bytes, a type code (``0x08`` unsigned byte, ``0x09`` signed byte, ``0x0B``
    int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of dimensions, and one big-endian
    int32 per dimension; the values follow, big-endian, in row-major order.

    Parameters
    ----------
    path
        The file; gzip is recognised by its magic bytes, not by the suffix.

    Returns
    -------
    numpy.ndarray
        The array, with the file's shape, in native byte order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the header is not an IDX header or the file is shorter or longer than the header says.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no IDX file at {path}")
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(
            f"{path} is not an IDX file (its first bytes are {raw[:4].hex()}, expected 0000 0x08..0x0E NDIM)"
        )
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: the IDX header announces {ndim} dimensions but the file ends first")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: the IDX header announces shape {shape} ({expected} bytes in all) but the file has "
            f"{len(raw)} bytes; it is truncated or not an IDX file"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickle only what a CIFAR-10 batch holds: dicts, lists, bytes and NumPy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"a CIFAR-10 batch may not hold {module}.{name}; refusing to load it")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = module.replace("numpy.core", "numpy._core", 1)
        return super().find_class(module, name)


def _cifar_from_bytes(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{source} is not a CIFAR-10 python batch: {exc}") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{source} is not a CIFAR-10 python batch: it holds a {type(batch).__name__}, not a dict")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{source} is not a CIFAR-10 python batch: keys {sorted(batch)} lack 'data' or 'labels'")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise ValueError(
            f"{source}: expected data of shape (n, 3072) and n labels, got {data.shape} and {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch of the CIFAR-10 python version (``data_batch_1`` ... ``test_batch``).

    A batch is a pickled dict with ``data`` (``uint8``, shape ``(n, 3072)``, the red, green and blue planes
    of each 32x32 image one after the other) and ``labels`` (``n`` integers). Only those types are unpickled;
    anything else in the file is refused.

    Parameters
    ----------
    path
        The batch file.

    Returns
    -------
    images, labels
        ``uint8`` of shape ``(n, 3, 32, 32)`` and ``int64`` of shape ``(n,)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no CIFAR-10 batch at {path}")
    return _cifar_from_bytes(path.read_bytes(), str(path))


def _read_cifar_archive(path: Path, members: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    with tarfile.open(path, "r:gz") as archive:
        names = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        for member in members:
            if member not in names:
                raise ValueError(f"{path} holds no {member}; it is not the CIFAR-10 python archive")
            handle = archive.extractfile(names[member])
            assert handle is not None
            x, y = _cifar_from_bytes(handle.read(), f"{path}:{member}")
            images.append(x)
            labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


# ------------------------------------------------------------------------------------------------- locating


def _download(file: DataFile, folder: Path) -> Path:
    """Fetch ``file`` into ``folder`` through pooch (SHA-256 checked); try each mirror in turn."""
    import pooch

    errors = []
    for base in file.mirrors:
        try:
            return Path(
                pooch.retrieve(
                    base + file.name,
                    known_hash=f"sha256:{file.sha256}",
                    fname=file.name,
                    path=folder,
                    progressbar=False,
                )
            )
        except Exception as exc:  # noqa: BLE001 - network errors come from several libraries; all mean "not here"
            errors.append(f"{base}{file.name}: {type(exc).__name__}: {exc}")
    raise ConnectionError("; ".join(errors))


def _verified(path: Path, file: DataFile) -> Path:
    actual = _sha256(path)
    if actual != file.sha256:
        raise ValueError(
            f"{path} has SHA-256 {actual}, expected {file.sha256}; the file is damaged or a different version. "
            f"Delete it and load again (it will be downloaded) or replace it."
        )
    return path


def _find_idx(info: ImageDataset, folder: Path, stem: str) -> Path | None:
    file = next(f for f in info.files if f.name == f"{stem}.gz")
    for place in _candidate_folders(folder):
        if (place / file.name).is_file():
            return _verified(place / file.name, file)
        if (place / stem).is_file():
            return place / stem
    return None


def _find_cifar(folder: Path) -> tuple[str, Path] | None:
    for place in _candidate_folders(folder):
        for extracted in (place / _CIFAR_FOLDER, place):
            if all((extracted / m).is_file() for m in _CIFAR_TRAIN + _CIFAR_TEST):
                return "folder", extracted
        if (place / _CIFAR_ARCHIVE).is_file():
            return "archive", _verified(place / _CIFAR_ARCHIVE, DATASETS["cifar10"].files[0])
    return None


def _locate(info: ImageDataset, folder: Path, download: bool) -> None:
    """Make sure the files are in ``folder`` (download them if allowed), or raise FileNotFoundError."""
    present = (
        _find_cifar(folder) is not None
        if info.name == "cifar10"
        else all(_find_idx(info, folder, stem) is not None for stem in _IDX_NAMES)
    )
    if present:
        return
    if not download:
        why = f"{OFFLINE_VARIABLE} is set" if _offline() else "download=False"
        raise FileNotFoundError(_missing_message(info, folder, f"the files are not in {folder} and {why}."))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for file in info.files:
            stem = file.name[:-3] if file.name.endswith(".gz") and info.name != "cifar10" else None
            if stem is not None and _find_idx(info, folder, stem) is not None:
                continue
            _download(file, folder)
    except (ConnectionError, OSError) as exc:
        raise FileNotFoundError(
            _missing_message(info, folder, f"the files are not in {folder} and the download failed ({exc}).")
        ) from exc


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as uint8 ``(n, 1, 8, 8)`` (values 0..16) and their labels, in scikit-learn's order.

    The CSV that scikit-learn ships is read directly when it is where scikit-learn keeps it (importing
    ``sklearn.datasets`` costs seconds); otherwise :func:`sklearn.datasets.load_digits` is used.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise ImportError("the digits data set needs scikit-learn: pip install scikit-learn")
    locations = list(spec.submodule_search_locations or [])
    csv = Path(locations[0]) / "datasets" / "data" / "digits.csv.gz" if locations else None
    if csv is not None and csv.is_file():
        table = np.loadtxt(csv, delimiter=",", dtype=np.float64)
        pixels, target = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - other scikit-learn layouts
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels, target = bunch.data, bunch.target
    return np.rint(pixels).astype(np.uint8).reshape(-1, 1, 8, 8), target.astype(np.int64)


def _load_native(info: ImageDataset, split: str, folder: Path, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(n, C, H, W)`` and labels for one split, native resolution."""
    if info.name == "digits":
        images, labels = _digits()
        order = np.random.default_rng(0).permutation(images.shape[0])
        test, train = order[:_DIGITS_TEST], order[_DIGITS_TEST:]
        pick = {"train": train, "test": test, "all": np.arange(images.shape[0])}[split]
        return images[pick], labels[pick]
    _locate(info, folder, download)
    if info.name == "cifar10":
        kind, where = _find_cifar(folder)  # type: ignore[misc]
        members = {"train": _CIFAR_TRAIN, "test": _CIFAR_TEST, "all": _CIFAR_TRAIN + _CIFAR_TEST}[split]
        if kind == "archive":
            return _read_cifar_archive(where, members)
        parts = [read_cifar_batch(where / m) for m in members]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    prefixes = {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}[split]
    images, labels = [], []
    for prefix in prefixes:
        x = read_idx(_find_idx(info, folder, f"{prefix}-images-idx3-ubyte"))  # type: ignore[arg-type]
        y = read_idx(_find_idx(info, folder, f"{prefix}-labels-idx1-ubyte"))  # type: ignore[arg-type]
        if x.ndim != 3 or x.shape[1:] != info.shape[1:] or y.shape != (x.shape[0],):
            raise ValueError(
                f"{info.title} {prefix} files: expected images (n, {info.shape[1]}, {info.shape[2]}) and n labels, "
                f"got {x.shape} and {y.shape}"
            )
        images.append(x[:, None])
        labels.append(y.astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


# ------------------------------------------------------------------------------------------------- resizing


def _check_size(info: ImageDataset, size: int | None) -> int:
    native = info.shape[1]
    if size is None:
        return native
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
        raise ValueError(f"size must be an integer side length or None, got {size!r}")
    size = int(size)
    ok = _MIN_SIZE <= size <= _MAX_SIZE and (
        (size <= native and native % size == 0) or (size > native and (size - native) % 2 == 0)
    )
    if not ok:
        divisors = [s for s in range(_MIN_SIZE, native + 1) if native % s == 0]
        raise ValueError(
            f"size={size} is not supported for {info.name} (native {native}x{native}): use a divisor of {native} "
            f"(averaged down: {divisors}) or a larger size of the same parity as {native}, up to {_MAX_SIZE} "
            f"(padded with the background)"
        )
    return size


def _resize(images: torch.Tensor, native: int, size: int) -> torch.Tensor:
    if size == native:
        return images
    if size < native:
        return torch.nn.functional.avg_pool2d(images, native // size)
    pad = (size - native) // 2
    return torch.nn.functional.pad(images, (pad, pad, pad, pad), value=-1.0)


# --------------------------------------------------------------------------------------------------- public


def load_images(
    name: str,
    split: str = "train",
    *,
    size: int | None = None,
    root: str | Path | None = None,
    download: bool | None = None,
    flat: bool = False,
    dtype: torch.dtype = torch.float32,
    return_labels: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Load an image data set scaled to ``[-1, 1]``.

    Parameters
    ----------
    name
        ``"digits"``, ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
    split
        ``"train"``, ``"test"`` or ``"all"`` (both, train first).
    size
        Side length; ``None`` keeps the native one. See the module documentation for what is supported.
    root
        Parent folder of ``<name>/``; default :func:`data_home`.
    download
        Allow a download when the files are not found; default: yes unless ``DIFFNB_OFFLINE=1``.
    flat
        Return ``(n, d)`` instead of ``(n, C, H, W)``.
    dtype
        Floating dtype of the result.
    return_labels
        Also return the class labels (``int64``, shape ``(n,)``).

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        Images, and labels when asked for.

    Raises
    ------
    ValueError
        Unknown ``name`` or ``split``, unsupported ``size``, or a file that does not parse or fails its
        checksum.
    FileNotFoundError
        The files are neither in the folder nor downloadable; the message says where to put which files.

    Examples
    --------
    >>> x = load_images("digits", flat=True)
    >>> x.shape, float(x.min()), float(x.max())
    (torch.Size([1497, 64]), -1.0, 1.0)
    """
    info = dataset_info(name)
    check_choice(split, SPLITS, "split")
    side = _check_size(info, size)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
    folder = (Path(root).expanduser() if root is not None else data_home()) / info.name
    allow = (not _offline()) if download is None else bool(download)
    raw, labels = _load_native(info, split, folder, allow)
    top = 16.0 if info.name == "digits" else 255.0
    images = torch.from_numpy(raw.astype(np.float64) * (2.0 / top) - 1.0).to(dtype)
    images = _resize(images, info.shape[1], side)
    if flat:
        images = flatten(images)
    return (images, torch.from_numpy(labels)) if return_labels else images


def subset_indices(n_total: int, size: int, seed: int = 0) -> np.ndarray:
    """The first ``size`` entries of a permutation of ``range(n_total)`` fixed by ``seed``.

    Subsets of different sizes with one seed are nested: the smaller is a prefix of the larger.

    Raises
    ------
    ValueError
        If ``size`` is not an integer in ``[1, n_total]`` or ``seed`` is not a non-negative integer.
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive integer number of images, got {size!r}")
    if size > n_total:
        raise ValueError(f"size={size} is larger than the data set, which holds {n_total} images")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(int(seed)).permutation(int(n_total))[: int(size)]


def subset(images: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """A seeded subset of ``size`` images (rows) of ``images``; see :func:`subset_indices`."""
    if not isinstance(images, torch.Tensor) or images.ndim < 2:
        raise ValueError("images must be a tensor of shape (n, d) or (n, C, H, W)")
    idx = subset_indices(images.shape[0], size, seed)
    return images[torch.from_numpy(idx)]


def load_subset(name: str, n: int, *, seed: int = 0, split: str = "train", **options) -> torch.Tensor:
    """``n`` images of a data set chosen by ``seed`` (nested across ``n``); options as :func:`load_images`
    (``size`` there is the image side length).

    Raises
    ------
    ValueError
        If ``n`` exceeds the split (the message gives its size), or for any bad option.
    """
    if options.get("return_labels"):
        images, labels = load_images(name, split, **options)
        idx = torch.from_numpy(subset_indices(images.shape[0], n, seed))
        return images[idx], labels[idx]
    images = load_images(name, split, **options)
    try:
        return subset(images, n, seed)
    except ValueError as exc:
        raise ValueError(f"{name} ({split} split): {exc}") from exc


def flatten(images: torch.Tensor) -> torch.Tensor:
    """``(n, C, H, W)`` to ``(n, C*H*W)`` (row-major, channels first)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a tensor of shape (n, C, H, W), got {getattr(images, 'shape', images)}")
    return images.reshape(images.shape[0], -1)


def unflatten(flat: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``(n, d)`` to ``(n, *shape)`` with ``shape = (C, H, W)`` and ``d = C*H*W``."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W), got {shape}")
    if not isinstance(flat, torch.Tensor) or flat.ndim != 2 or flat.shape[1] != int(np.prod(shape)):
        raise ValueError(f"flat must have shape (n, {int(np.prod(shape))}) for shape {shape}, got {tuple(flat.shape)}")
    return flat.reshape(flat.shape[0], *shape)


def nearest_neighbors(
    queries: torch.Tensor, reference: torch.Tensor, *, exclude_self: bool = False, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance from every query to its nearest reference image, and that image's index.

    Parameters
    ----------
    queries, reference
        Shapes ``(n, ...)`` and ``(m, ...)`` with the same trailing shape (images or flat vectors).
    exclude_self
        When ``queries`` *is* the reference set: skip the zero distance of each point to itself (the
        data's own nearest-neighbour distance).
    batch_size
        Queries per distance block.

    Returns
    -------
    distances, indices
        Shapes ``(n,)`` and ``(n,)``.
    """
    if not isinstance(queries, torch.Tensor) or not isinstance(reference, torch.Tensor):
        raise TypeError("queries and reference must be tensors")
    if queries.shape[1:] != reference.shape[1:]:
        raise ValueError(f"queries {tuple(queries.shape)} and reference {tuple(reference.shape)} differ in shape")
    if exclude_self and queries.shape[0] != reference.shape[0]:
        raise ValueError("exclude_self=True needs queries to be the reference set itself")
    if reference.shape[0] < (2 if exclude_self else 1):
        raise ValueError("reference must hold at least one image (two with exclude_self=True)")
    q = queries.reshape(queries.shape[0], -1).to(torch.float64)
    r = reference.reshape(reference.shape[0], -1).to(q)
    dist, idx = [], []
    for start in range(0, q.shape[0], batch_size):
        block = torch.cdist(q[start : start + batch_size], r)
        if exclude_self:
            rows = torch.arange(block.shape[0])
            block[rows, rows + start] = float("inf")
        value, where = block.min(dim=1)
        dist.append(value)
        idx.append(where)
    return torch.cat(dist), torch.cat(idx)
