"""The IDX / MNIST loader on small generated files: valid, gzip, and every broken case."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from earlystop._cli.main import main
from earlystop._demo.idx import MNIST_FILES, IdxError, load_mnist, read_idx
from idx_files import idx_bytes, write, write_mnist

ARRAYS = [
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    np.array([7, 1, 9], dtype=np.uint8),
    np.array([-3, 0, 5], dtype=np.int8),
    np.array([[-300, 2], [40000 - 65536, 7]], dtype=np.int16),
    np.array([1, -2, 70000], dtype=np.int32),
    np.array([[0.5, -1.25]], dtype=np.float32),
]


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype.name}{a.shape}")
def test_valid_files_round_trip(tmp_path: Path, array: np.ndarray, gz: bool) -> None:
    # gzip is detected from the magic bytes: the name carries no .gz suffix.
    path = write(tmp_path / "data-idx", idx_bytes(array), gz=gz)
    result = read_idx(path, ndim=array.ndim)
    assert result.dtype == array.dtype
    assert result.dtype.isnative
    np.testing.assert_array_equal(result, array)


VALID = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 2, 2))

BROKEN = [
    ("empty", b"", {}, r"truncated: expected an IDX header of at least 4 bytes, got 0"),
    (
        "short header",
        VALID[:3],
        {},
        r"truncated: expected an IDX header of at least 4 bytes, got 3",
    ),
    (
        "dims cut",
        VALID[:9],
        {},
        r"truncated: expected 16 header bytes for 3 dimension\(s\), got 9",
    ),
    (
        "data cut",
        VALID[:-1],
        {},
        r"truncated: expected 12 data bytes for shape \(3, 2, 2\), got 11",
    ),
    (
        "trailing",
        VALID + b"\x00",
        {},
        r"trailing bytes: expected 12 data bytes for shape \(3, 2, 2\), got 13",
    ),
    (
        "wrong magic",
        b"\x01\x02" + VALID[2:],
        {},
        r"wrong magic number: expected an IDX file starting with 00 00 .*got 01 02 08 03",
    ),
    (
        "unknown type",
        b"\x00\x00\x07\x03" + VALID[4:],
        {},
        r"wrong magic number: .*got 00 00 07 03",
    ),
    (
        "ndim",
        VALID,
        {"ndim": 1},
        r"wrong magic number: expected 1 dimension\(s\) \(magic 00 00 08 01\), "
        r"got 3 \(00 00 08 03\)",
    ),
    (
        "dtype",
        VALID,
        {"dtype": "float32"},
        r"wrong element type: expected float32, got uint8 \(type byte 08\)",
    ),
]


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
def test_broken_files_name_the_file_and_the_expectation(
    tmp_path: Path, data: bytes, kwargs: dict[str, object], message: str, gz: bool
) -> None:
    path = write(tmp_path / "images-idx3-ubyte", data, gz=gz)
    with pytest.raises(IdxError, match=rf"^{tmp_path}/images-idx3-ubyte: {message}$"):
        read_idx(path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("cut", [5, 20, -3], ids=["in header", "in data", "in trailer"])
def test_truncated_gzip_stream(tmp_path: Path, cut: int) -> None:
    compressed = gzip.compress(VALID)
    path = tmp_path / "x.gz"
    path.write_bytes(compressed[:cut])
    with pytest.raises(IdxError, match=r"x\.gz: truncated or corrupt gzip data \(expected a comp"):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IdxError, match=r"nothing: file not found \(expected an IDX file"):
        read_idx(tmp_path / "nothing")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_load_mnist(tmp_path: Path, gz: bool) -> None:
    arrays = load_mnist(write_mnist(tmp_path, gz=gz))
    assert arrays.train_images.shape == (40, 6, 6)
    assert arrays.test_images.shape == (20, 6, 6)
    assert arrays.train_labels.tolist() == [i % 10 for i in range(40)]
    assert arrays.test_labels.dtype == np.uint8


@pytest.mark.parametrize(("role", "name", "ndim"), MNIST_FILES)
def test_load_mnist_missing_file_names_it(tmp_path: Path, role: str, name: str, ndim: int) -> None:
    (write_mnist(tmp_path) / f"{name}.gz").unlink()
    with pytest.raises(IdxError, match=rf"{name}\[\.gz\]: file not found \(expected the 4 MNIST"):
        load_mnist(tmp_path)


def test_load_mnist_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(19, np.uint8)), gz=True)
    with pytest.raises(
        IdxError,
        match=r"t10k-labels-idx1-ubyte\.gz: label count mismatch: expected 20 labels "
        r"\(one per image in t10k-images-idx3-ubyte\.gz\), got 19$",
    ):
        load_mnist(tmp_path)


def test_load_mnist_images_and_labels_swapped(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    labels = (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(labels)
    with pytest.raises(IdxError, match=r"train-images-idx3-ubyte\.gz: wrong magic number: expec"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_labels_above_nine(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    labels = np.full(40, 12, dtype=np.uint8)
    write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(labels), gz=True)
    with pytest.raises(IdxError, match=r"expected labels 0-9, got 12$"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_different_image_sizes(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    images = np.zeros((20, 5, 5), dtype=np.uint8)
    write(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(images), gz=True)
    with pytest.raises(IdxError, match=r"expected images of shape \(6, 6\) like .*got \(5, 5\)$"):
        load_mnist(tmp_path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", r"train-images-idx3-ubyte\[\.gz\]: file not found"),
        ("truncated", r"train-images-idx3-ubyte: truncated: expected 1440 data bytes"),
        ("magic", r"train-images-idx3-ubyte: wrong magic number"),
    ],
)
def test_cli_reports_bad_data_on_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, message: str
) -> None:
    folder = write_mnist(tmp_path / "mnist", gz=False)
    target = folder / "train-images-idx3-ubyte"
    if damage == "missing":
        target.unlink()
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:-1])
    else:
        target.write_bytes(b"\x00\x01" + target.read_bytes()[2:])
    status = main(["demo", "--dataset", "mnist", "--data-dir", str(folder), "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("earlystop demo: error: ")
    assert "Traceback" not in captured.err
    assert re.search(message, lines[0]), lines[0]


def test_cli_runs_mnist_from_generated_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_mnist(tmp_path / "mnist")
    argv = ["demo", "--dataset", "mnist", "--data-dir", str(folder), "--out", str(tmp_path)]
    assert main([*argv, "--epochs", "3", "--patience", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| epochs run" in out
    assert (tmp_path / "loss.png").is_file()
