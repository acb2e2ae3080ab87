"""IDX files (the MNIST format), raw or gzip-compressed, read with numpy only.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32
dimensions, then the data in big-endian C order. Compression is detected from the first
two bytes (``1f 8b`` is gzip), not from the file name.

Every problem raises :class:`IdxError` with a one-line message that names the file and
what was expected, so a command line can print it as is.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MNIST_FILES", "IdxError", "MnistArrays", "load_mnist", "read_idx"]

_GZIP_MAGIC = b"\x1f\x8b"

# type byte -> big-endian numpy dtype
_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

# (role, file name without .gz, expected ndim)
MNIST_FILES: tuple[tuple[str, str, int], ...] = (
    ("train_images", "train-images-idx3-ubyte", 3),
    ("train_labels", "train-labels-idx1-ubyte", 1),
    ("test_images", "t10k-images-idx3-ubyte", 3),
    ("test_labels", "t10k-labels-idx1-ubyte", 1),
)


class IdxError(ValueError):
    """An IDX file is missing, truncated, or not what was expected (one-line message)."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IdxError(f"{path}: file not found (expected an IDX file, raw or gzip)") from None
    except OSError as exc:
        raise IdxError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IdxError(
            f"{path}: truncated or corrupt gzip data (expected a complete gzip stream; {reason})"
        ) from None


def read_idx(path: str | Path, *, ndim: int | None = None, dtype: str | None = None) -> np.ndarray:
    """Read one IDX file (raw or gzip) into a native-endian numpy array.

    Args:
        path: the file.
        ndim: the number of dimensions the file must have (``None``: any).
        dtype: the element type the file must have, as a numpy dtype string such as
            ``"uint8"`` (``None``: any IDX type).

    Returns:
        The array, with the file's shape.

    Raises:
        IdxError: the file is missing, unreadable, truncated, has trailing bytes, a wrong
            magic number, or not the expected ``ndim`` / ``dtype``.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny-idx1-ubyte"
    >>> _ = path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 1, 9]))
    >>> read_idx(path, ndim=1).tolist()
    [7, 1, 9]
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxError(
            f"{path}: truncated: expected an IDX header of at least 4 bytes, got {len(data)}"
        )
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise IdxError(
            f"{path}: wrong magic number: expected an IDX file starting with 00 00 "
            f"<type 08/09/0b/0c/0d/0e> <ndim>, got {data[:4].hex(' ')}"
        )
    file_dtype = np.dtype(_DTYPES[data[2]])
    file_ndim = data[3]
    if ndim is not None and file_ndim != ndim:
        raise IdxError(
            f"{path}: wrong magic number: expected {ndim} dimension(s) "
            f"(magic 00 00 {data[2]:02x} {ndim:02x}), got {file_ndim} ({data[:4].hex(' ')})"
        )
    if dtype is not None and file_dtype.newbyteorder("=") != np.dtype(dtype):
        raise IdxError(
            f"{path}: wrong element type: expected {np.dtype(dtype)}, "
            f"got {file_dtype.newbyteorder('=')} (type byte {data[2]:02x})"
        )
    header = 4 + 4 * file_ndim
    if len(data) < header:
        raise IdxError(
            f"{path}: truncated: expected {header} header bytes for {file_ndim} dimension(s), "
            f"got {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=file_ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * file_dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "trailing bytes"
        raise IdxError(
            f"{path}: {what}: expected {expected} data bytes for shape {shape}, got {got}"
        )
    array = np.frombuffer(data, dtype=file_dtype, offset=header).reshape(shape)
    return array.astype(file_dtype.newbyteorder("="), copy=True)


@dataclass(frozen=True)
class MnistArrays:
    """The four MNIST arrays: images ``(n, rows, cols)`` uint8, labels ``(n,)`` uint8."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def _find(data_dir: Path, name: str) -> Path:
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise IdxError(
        f"{data_dir / name}[.gz]: file not found (expected the 4 MNIST IDX files, raw or gzip, "
        f"in {data_dir}: {', '.join(n for _, n, _ in MNIST_FILES)})"
    )


def load_mnist(data_dir: str | Path) -> MnistArrays:
    """Load the four standard MNIST IDX files from ``data_dir`` (each raw or ``.gz``).

    Raises:
        IdxError: a file is missing or malformed, the images of a split differ in size
            from the others, a label is outside 0-9, or a split has a different number of
            images and labels.
    """
    data_dir = Path(data_dir)
    arrays: dict[str, np.ndarray] = {}
    paths: dict[str, Path] = {}
    for role, name, ndim in MNIST_FILES:
        paths[role] = _find(data_dir, name)
        arrays[role] = read_idx(paths[role], ndim=ndim, dtype="uint8")
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise IdxError(
                f"{paths[f'{split}_labels']}: label count mismatch: expected {len(images)} "
                f"labels (one per image in {paths[f'{split}_images'].name}), got {len(labels)}"
            )
        if labels.size and labels.max() > 9:
            raise IdxError(
                f"{paths[f'{split}_labels']}: expected labels 0-9, got {int(labels.max())}"
            )
    train_shape = arrays["train_images"].shape[1:]
    test_shape = arrays["test_images"].shape[1:]
    if train_shape != test_shape:
        raise IdxError(
            f"{paths['test_images']}: expected images of shape {train_shape} "
            f"like {paths['train_images'].name}, got {test_shape}"
        )
    return MnistArrays(**arrays)
