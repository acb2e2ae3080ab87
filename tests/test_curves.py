"""The curves CSV format: strict reading, one-line errors, and the recorder round-trip."""

from __future__ import annotations

import gzip
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from earlystop import CurveRecorder, CurvesError, Stopper, read_curves

ROOT = Path(__file__).resolve().parents[1]

GOOD = """run,epoch,val_loss,train_loss,test_acc,custom
a,1,1.0,2.0,0.5,7
a,2,nan,1.5,,8
b,0,inf,1.0,0.25,-1e3
b,5,0.5,-inf,1,0
"""


def write(tmp_path: Path, text: str, name: str = "curves.csv") -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["curves.csv", "curves.csv.gz"])
def test_reads_runs_in_order_with_every_column(tmp_path: Path, name: str) -> None:
    curves = read_curves(write(tmp_path, GOOD, name))
    assert [c.run for c in curves] == ["a", "b"]
    a, b = curves
    assert a.epochs == [1, 2]
    assert b.epochs == [0, 5]
    assert sorted(a.columns) == ["custom", "test_acc", "train_loss", "val_loss"]
    assert a.series("val_loss")[0] == 1.0
    assert math.isnan(a.series("val_loss")[1])
    assert math.isnan(a.series("test_acc")[1])  # an empty cell is "not measured"
    assert b.series("val_loss")[0] == math.inf
    assert b.series("train_loss")[1] == -math.inf
    assert b.series("custom") == [-1000.0, 0.0]
    assert len(a) == 2
    assert a.has("custom")
    assert not a.has("lr")


def test_missing_series_lists_the_columns(tmp_path: Path) -> None:
    (curve,) = read_curves(write(tmp_path, "run,epoch,val_loss\nx,1,1\n"))
    with pytest.raises(KeyError, match=r"run 'x' has no column 'lr'; columns: val_loss"):
        curve.series("lr")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"curves.csv:1: empty file; expected a header with run, epoch, val_loss"),
        (
            "run,epoch,train_loss\na,1,2\n",
            r"curves.csv:1: missing required column 'val_loss'; header has run, epoch, train_loss",
        ),
        ("epoch,val_loss\n1,2\n", r"curves.csv:1: missing required column 'run'"),
        ("run,epoch,val_loss,lr,lr\n", r"curves.csv:1: column 'lr' appears more than once"),
        (
            "run,epoch,val_loss,lr\na,1,0.5,0.1\na,2,0.4,fast\n",
            r"curves.csv:3: column 'lr' must be a number, got 'fast'",
        ),
        (
            "run,epoch,val_loss\na,1,0.5\na,1,0.4\n",
            r"curves.csv:3: column 'epoch': duplicate epoch 1 in run 'a' \(previous epoch 1\); "
            r"epochs must increase within a run",
        ),
        (
            "run,epoch,val_loss\na,1,0.5\na,3,0.4\na,2,0.3\n",
            r"curves.csv:4: column 'epoch': unsorted epoch 2 in run 'a' \(previous epoch 3\)",
        ),
        (
            "run,epoch,val_loss\na,1,0.5\nb,1,0.5\na,1,0.4\n",
            r"curves.csv:4: column 'epoch': duplicate epoch 1 in run 'a'",
        ),
        ("run,epoch,val_loss\na,one,0.5\n", r"curves.csv:2: column 'epoch' must be an integer"),
        ("run,epoch,val_loss\na,1.5,0.5\n", r"curves.csv:2: column 'epoch' must be an integer"),
        ("run,epoch,val_loss\na,1,\n", r"curves.csv:2: column 'val_loss' is empty"),
        ("run,epoch,val_loss\n,1,0.5\n", r"curves.csv:2: column 'run' is empty"),
        (
            "run,epoch,val_loss\na,1,0.5,9\n",
            r"curves.csv:2: expected 3 cells as in the header, got 4",
        ),
    ],
)
def test_malformed_files_give_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CurvesError, match=message) as caught:
        read_curves(write(tmp_path, text))
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "curves.csv"))


def test_a_file_that_is_not_gzip_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "curves.csv.gz"
    path.write_text("run,epoch,val_loss\n")
    with pytest.raises(
        CurvesError, match=r"curves.csv.gz:1: cannot be decoded as a curves file \(BadGzipFile"
    ):
        read_curves(path)


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz"])
def test_recorder_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with CurveRecorder(path, columns=["train_loss", "lr"]) as recorder:
        recorder.record("r/1", 1, 0.5, train_loss=0.25, lr=0.1)
        recorder.record("r/1", 2, float("nan"), lr=0.01)
        recorder.record("r/2", 10, float("inf"), train_loss=1 / 3)
    a, b = read_curves(path)
    assert (a.run, a.epochs, b.run, b.epochs) == ("r/1", [1, 2], "r/2", [10])
    assert a.series("train_loss")[0] == 0.25
    assert math.isnan(a.series("train_loss")[1])
    assert math.isnan(a.series("val_loss")[1])
    assert a.series("lr") == [0.1, 0.01]
    assert b.series("val_loss") == [math.inf]
    assert b.series("train_loss")[0] == pytest.approx(1 / 3, rel=1e-6)


def test_recorder_takes_columns_from_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    recorder = CurveRecorder(path)
    recorder.record("x", 1, 1.0, val_acc=0.5)
    recorder.close()
    recorder.close()  # closing twice is harmless
    assert path.read_text() == "run,epoch,val_loss,val_acc\nx,1,1,0.5\n"


def test_recorder_with_no_row_writes_a_header(tmp_path: Path) -> None:
    CurveRecorder(tmp_path / "c.csv").close()
    assert read_curves(tmp_path / "c.csv") == []


def test_recorder_writes_a_stopper_history(tmp_path: Path) -> None:
    stopper = Stopper(patience=None)
    for loss, train in [(1.0, 2.0), (0.5, 1.0), (0.75, 0.5)]:
        stopper.step(loss, train_loss=train)
    with CurveRecorder(tmp_path / "h.csv", columns=["train_loss"]) as recorder:
        recorder.record_history("run", stopper.history)
    (curve,) = read_curves(tmp_path / "h.csv")
    assert curve.epochs == [1, 2, 3]
    assert curve.series("val_loss") == [1.0, 0.5, 0.75]
    assert curve.series("train_loss") == [2.0, 1.0, 0.5]


def test_recorder_history_of_another_monitored_column(tmp_path: Path) -> None:
    stopper = Stopper(mode="max", patience=None)
    stopper.step(0.5, val_loss=0.9)
    stopper.step(0.7, val_loss=0.8)
    with CurveRecorder(tmp_path / "h.csv", columns=["val_acc"]) as recorder:
        recorder.record_history("run", stopper.history, monitor_as="val_acc", first_epoch=0)
    (curve,) = read_curves(tmp_path / "h.csv")
    assert (curve.epochs, curve.series("val_acc")) == ([0, 1], [0.5, 0.7])
    assert curve.series("val_loss") == [0.9, 0.8]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda r: r.record("a", 1, 0.5, acc=1.0),
            ValueError,
            r"unknown column 'acc' for .*c.csv; columns are lr \(declare them with `columns=`\)",
        ),
        (lambda r: r.record("", 1, 0.5), ValueError, r"`run` must be a non-empty one-line string"),
        (lambda r: r.record("a", 1.0, 0.5), ValueError, r"`epoch` must be an int, got 1.0"),
        (
            lambda r: (r.record("a", 2, 0.5), r.record("a", 2, 0.4)),
            ValueError,
            r"`epoch` must increase within run 'a': got 2 after 2",
        ),
        (lambda r: r.record("a", 1, "x"), TypeError, r"val_loss"),
        (
            lambda r: (r.close(), r.record("a", 1, 0.5)),
            RuntimeError,
            r"CurveRecorder for .*c.csv is closed",
        ),
    ],
)
def test_recorder_errors(tmp_path: Path, call: object, error: type, message: str) -> None:
    recorder = CurveRecorder(tmp_path / "c.csv", columns=["lr"])
    with pytest.raises(error, match=message):
        call(recorder)  # type: ignore[operator]
    recorder.close()


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["val_loss"], r"`columns` must be distinct names other than run, epoch, val_loss, "),
        (["lr", "lr"], r"got 'lr'"),
        (["a,b"], r"`columns` names must be non-empty without commas, got 'a,b'"),
    ],
)
def test_recorder_rejects_bad_columns(tmp_path: Path, columns: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CurveRecorder(tmp_path / "c.csv", columns=columns)


def test_generator_quick_mode_writes_a_valid_corpus(tmp_path: Path) -> None:
    out = tmp_path / "quick.csv.gz"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/curves/generate.py"), "--quick", "--out", str(out)],
        check=True,
        env=env,
        timeout=120,
        capture_output=True,
    )
    curves = read_curves(out)
    assert len(curves) == 3
    assert all(c.epochs == list(range(1, 7)) for c in curves)
    for curve in curves:
        assert set(curve.columns) == {
            "val_loss",
            "train_loss",
            "test_loss",
            "val_acc",
            "test_acc",
            "lr",
        }
        assert all(math.isfinite(v) for v in curve.series("train_loss")[:2])
    assert [c.has("test_acc") for c in curves] == [True, True, False]  # diabetes: regression
    assert re.search(r'"quick": true', (tmp_path / "quick.json").read_text())
