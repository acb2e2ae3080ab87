"""Learning curves on disk: one CSV row per run and evaluation, read back strictly.

The format is plain CSV (gzip-compressed when the file name ends in ``.gz``) with a
header row. Three columns are required:

========== ==========================================================
``run``    a run identifier (any string without a comma or newline)
``epoch``  an integer, strictly increasing within a run
``val_loss`` the validation loss of that evaluation
========== ==========================================================

Optional columns with a known meaning are ``train_loss``, ``test_loss``, ``val_acc``,
``test_acc`` (accuracies as fractions in ``[0, 1]``) and ``lr``; any other column is kept
and can be monitored by name. Cells hold numbers; ``nan``, ``inf`` and ``-inf`` are
allowed (a diverged run is real data), and an empty cell means "not measured" (``nan``).

:class:`CurveRecorder` writes the format from any training loop; :func:`read_curves`
reads it and rejects a malformed file with one :class:`CurvesError` line that names the
file, the line and the column.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .._core.history import History
from .._core.values import to_float

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "Curve",
    "CurveRecorder",
    "CurvesError",
    "read_curves",
]

REQUIRED_COLUMNS: tuple[str, ...] = ("run", "epoch", "val_loss")
OPTIONAL_COLUMNS: tuple[str, ...] = ("train_loss", "test_loss", "val_acc", "test_acc", "lr")

#: The longest line and the longest cell :func:`read_curves` accepts (characters): a file
#: is read line by line within these bounds, so a hostile one (``/dev/zero``, one endless
#: line) is refused with a :class:`CurvesError` instead of filling the memory.
MAX_LINE = 1 << 20
MAX_FIELD = 1 << 17


class CurvesError(ValueError):
    """A curves file that does not follow the format; the message is one line."""


@dataclass
class Curve:
    """The evaluations of one run, in order.

    Attributes:
        run: the run identifier.
        epochs: the epoch number of every evaluation, strictly increasing.
        columns: every numeric column of the file (``val_loss`` included), aligned with
            ``epochs``; ``nan`` where a value was not measured.
    """

    run: str
    epochs: list[int] = field(default_factory=list)
    columns: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.epochs)

    def series(self, name: str) -> list[float]:
        """The named column.

        Raises:
            KeyError: naming the column and listing the ones that exist.
        """
        try:
            return self.columns[name]
        except KeyError:
            known = ", ".join(sorted(self.columns))
            raise KeyError(f"run {self.run!r} has no column {name!r}; columns: {known}") from None

    def has(self, name: str) -> bool:
        """Whether the column exists and holds at least one finite value."""
        return any(math.isfinite(v) for v in self.columns.get(name, ()))


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.GzipFile(path, mode + "b"), encoding="utf-8", newline="")
    return open(path, mode, encoding="utf-8", newline="")


def read_curves(path: str | os.PathLike[str]) -> list[Curve]:
    """Read a curves file; runs come back in the order they first appear.

    Args:
        path: the CSV file, gzip-compressed when its name ends in ``.gz``.

    Returns:
        One :class:`Curve` per run.

    Raises:
        CurvesError: for a missing required column, a non-numeric cell, a duplicate or
            an unsorted epoch within a run, a row with the wrong number of cells, an
            empty file, a line longer than :data:`MAX_LINE` or a cell longer than
            :data:`MAX_FIELD` characters, or damaged compression or text; the message is
            ``FILE:LINE: ...`` naming the column where there is one.
        OSError: when the file cannot be opened.
    """
    file = Path(path)
    lines = _Lines(file)
    with _open_text(file, "r") as handle:
        try:
            return _parse(file, csv.reader(lines.read(handle)))
        except csv.Error as error:
            raise CurvesError(f"{file}:{lines.count}: not a valid CSV line ({error})") from None
        except (gzip.BadGzipFile, zlib.error, UnicodeDecodeError, EOFError) as error:
            raise CurvesError(
                f"{file}:{lines.count + 1}: cannot be decoded as a curves file "
                f"({type(error).__name__}: {error})"
            ) from None


class _Lines:
    """The physical lines of a file, each at most :data:`MAX_LINE` characters, counted."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.count = 0

    def read(self, handle: IO[str]) -> Iterator[str]:
        while True:
            line = handle.readline(MAX_LINE + 1)
            if not line:
                return
            self.count += 1
            if len(line) > MAX_LINE:
                raise CurvesError(
                    f"{self.file}:{self.count}: line longer than {MAX_LINE} characters; "
                    "not a curves file"
                )
            yield line


def _parse(file: Path, reader: Any) -> list[Curve]:
    header = next(reader, None)
    if not header:
        raise CurvesError(f"{file}:1: empty file; expected a header with run, epoch, val_loss")
    header = [name.strip() for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise CurvesError(
            f"{file}:1: missing required column {missing[0]!r}; header has {', '.join(header)}"
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise CurvesError(f"{file}:1: column {duplicated[0]!r} appears more than once")
    run_at, epoch_at = header.index("run"), header.index("epoch")
    numeric = [(i, name) for i, name in enumerate(header) if name not in ("run", "epoch")]
    curves: dict[str, Curve] = {}
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if any(len(cell) > MAX_FIELD for cell in row):
            raise CurvesError(f"{file}:{line}: a cell is longer than {MAX_FIELD} characters")
        if len(row) != len(header):
            raise CurvesError(
                f"{file}:{line}: expected {len(header)} cells as in the header, got {len(row)}"
            )
        run = row[run_at].strip()
        if not run:
            raise CurvesError(f"{file}:{line}: column 'run' is empty")
        epoch = _parse_epoch(file, line, row[epoch_at])
        curve = curves.get(run)
        if curve is None:
            curve = curves[run] = Curve(run, [], {name: [] for _, name in numeric})
        elif epoch <= curve.epochs[-1]:
            problem = "duplicate" if epoch in curve.epochs else "unsorted"
            raise CurvesError(
                f"{file}:{line}: column 'epoch': {problem} epoch {epoch} in run {run!r} "
                f"(previous epoch {curve.epochs[-1]}); epochs must increase within a run"
            )
        curve.epochs.append(epoch)
        for index, name in numeric:
            curve.columns[name].append(_parse_number(file, line, name, row[index]))
    return list(curves.values())


def _parse_epoch(file: Path, line: int, cell: str) -> int:
    try:
        return int(cell.strip())
    except ValueError:
        raise CurvesError(
            f"{file}:{line}: column 'epoch' must be an integer, got {cell!r}"
        ) from None


def _parse_number(file: Path, line: int, name: str, cell: str) -> float:
    text = cell.strip()
    if not text:
        if name == "val_loss":
            raise CurvesError(f"{file}:{line}: column 'val_loss' is empty; write nan if unknown")
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise CurvesError(
            f"{file}:{line}: column {name!r} must be a number, got {cell!r}"
        ) from None


def _format(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.7g}"


def _check_columns(columns: Iterable[str]) -> list[str]:
    names = [str(name) for name in columns]
    clash = [name for name in names if name in REQUIRED_COLUMNS or names.count(name) > 1]
    if clash:
        raise ValueError(
            f"`columns` must be distinct names other than run, epoch, val_loss, got {clash[0]!r}"
        )
    bad = [name for name in names if not name or "," in name or "\n" in name]
    if bad:
        raise ValueError(f"`columns` names must be non-empty without commas, got {bad[0]!r}")
    return names


class CurveRecorder:
    """Writes a curves file row by row from any training loop.

    The header is ``run, epoch, val_loss`` followed by ``columns`` (by default the other
    metrics given to the first :meth:`record`, in that order). Rows are flushed as they
    are written, so a crashed run leaves every finished evaluation on disk.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "curves.csv")
    >>> with CurveRecorder(path, columns=["train_loss"]) as recorder:
    ...     recorder.record("a", 1, val_loss=0.9, train_loss=1.0)
    ...     recorder.record("a", 2, val_loss=0.7, train_loss=0.8)
    >>> [c.series("val_loss") for c in read_curves(path)]
    [[0.9, 0.7]]

    Args:
        path: where to write; gzip-compressed when the name ends in ``.gz``. An existing
            file is replaced.
        columns: the optional columns, in order; ``None`` takes them from the first row.
    """

    def __init__(self, path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self._columns = None if columns is None else _check_columns(columns)
        self._last_epoch: dict[str, int] = {}
        self._handle: IO[str] | None = _open_text(self.path, "w")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        if self._columns is not None:
            self._writer.writerow([*REQUIRED_COLUMNS, *self._columns])

    def record(self, run: str, epoch: int, val_loss: Any, **metrics: Any) -> None:
        """Write one evaluation.

        Args:
            run: the run identifier.
            epoch: the epoch number; it must increase within a run.
            val_loss: the validation loss (a float, a 0-d array or a one-element tensor).
            **metrics: other columns of this evaluation; those not given are left empty.

        Raises:
            ValueError: for an unknown column, a bad run name, or an epoch that does not
                increase within the run.
            RuntimeError: after :meth:`close`.
        """
        if self._handle is None:
            raise RuntimeError(f"CurveRecorder for {self.path} is closed")
        if not isinstance(run, str) or not run.strip() or "\n" in run:
            raise ValueError(f"`run` must be a non-empty one-line string, got {run!r}")
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise ValueError(f"`epoch` must be an int, got {epoch!r}")
        last = self._last_epoch.get(run)
        if last is not None and epoch <= last:
            raise ValueError(f"`epoch` must increase within run {run!r}: got {epoch} after {last}")
        if self._columns is None:
            self._columns = _check_columns(metrics)
            self._writer.writerow([*REQUIRED_COLUMNS, *metrics])
        columns = self._columns or []
        unknown = sorted(set(metrics) - set(columns))
        if unknown:
            raise ValueError(
                f"unknown column {unknown[0]!r} for {self.path}; columns are "
                f"{', '.join(columns) or 'none'} (declare them with `columns=`)"
            )
        cells = [run, str(epoch), _format(to_float(val_loss, "val_loss"))]
        for name in columns:
            value = metrics.get(name)
            cells.append("" if value is None else _format(to_float(value, name)))
        self._writer.writerow(cells)
        self._handle.flush()
        self._last_epoch[run] = epoch

    def record_history(
        self, run: str, history: History, *, monitor_as: str = "val_loss", first_epoch: int = 1
    ) -> None:
        """Write everything a :class:`~earlystop.Stopper` recorded (``stopper.history``).

        The monitored values become the ``monitor_as`` column (``val_loss`` unless another
        column was monitored) and every metric given to ``step`` its own column.

        Args:
            run: the run identifier.
            history: the history to write.
            monitor_as: the column the monitored values go to.
            first_epoch: the epoch number of the first evaluation.
        """
        metrics: dict[str, Sequence[float]] = dict(history.metrics)
        if monitor_as == "val_loss":
            losses: Sequence[float] = history.values
        else:
            metrics[monitor_as] = history.values
            losses = metrics.pop("val_loss", [math.nan] * len(history))
        for offset, loss in enumerate(losses):
            row = {name: series[offset] for name, series in metrics.items()}
            self.record(run, first_epoch + offset, loss, **row)

    def close(self) -> None:
        """Finish the file (writes the header when no row was recorded)."""
        if self._handle is None:
            return
        if self._columns is None:
            self._writer.writerow(REQUIRED_COLUMNS)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> CurveRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
