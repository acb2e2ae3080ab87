"""The demo's outputs: the comparison table, ``summary.json``, ``summary.md``, ``curves.csv``."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any

from .train import CURVE_COLUMNS, RunResult, TrainConfig

__all__ = [
    "epochs_saved_pct",
    "median_call_s",
    "median_epoch_s",
    "summary",
    "table_markdown",
    "time_saved_pct",
    "write_curves",
    "write_summary",
]


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def median_epoch_s(result: RunResult) -> float:
    """The median seconds per epoch of a run (``nan`` for no epoch)."""
    return _median(result.epoch_times_s)


def median_call_s(result: RunResult) -> float:
    """The median seconds of the run's early-stopping call per epoch."""
    return _median(result.call_times_s)


def time_saved_pct(full: RunResult, early: RunResult) -> float:
    """Time saved by early stopping, in percent, estimated from per-epoch medians.

    Both runs do the same work per epoch except for the early-stopping call (the copy of
    the best weights), so one epoch of the run with early stopping costs the full run's
    median epoch ``m`` less its call's median ``c_full`` plus the early run's call's median
    ``c_early``: the saving is ``1 - (n_early * (m - c_full + c_early)) / (n_full * m)``.
    Medians of one run are not moved by a few slow epochs, and no figure compares the wall
    times of two runs made minutes apart on a machine whose load changes.
    """
    unit = median_epoch_s(full)
    early_epoch = unit - median_call_s(full) + median_call_s(early)
    if not full.epochs_run or not unit > 0 or math.isnan(early_epoch):
        return math.nan
    return 100.0 * (1.0 - (early.epochs_run * early_epoch) / (full.epochs_run * unit))


def epochs_saved_pct(full: RunResult, early: RunResult) -> float:
    """Epochs saved by early stopping, in percent of the run without it."""
    if full.epochs_run <= 0:
        return 0.0
    return 100.0 * (1.0 - early.epochs_run / full.epochs_run)


def _run_summary(result: RunResult) -> dict[str, Any]:
    return {
        "epochs_run": result.epochs_run,
        "wall_time_s": result.wall_time_s,
        "median_epoch_s": median_epoch_s(result),
        "median_early_stopping_call_s": median_call_s(result),
        "best_epoch": result.best_epoch,
        "stopped_epoch": result.stopped_epoch,
        "restored_epoch": result.restored_epoch,
        "final_weights_epoch": result.restored_epoch or result.epochs_run,
        **{f"final_{key}": value for key, value in result.final.items()},
        "stop_detail": result.stop_detail,
    }


def summary(
    full: RunResult,
    early: RunResult,
    *,
    config: TrainConfig,
    dataset: str,
    sizes: dict[str, int],
) -> dict[str, Any]:
    """The comparison as plain JSON-safe values."""
    return {
        "dataset": dataset,
        "sizes": sizes,
        "config": dataclasses.asdict(config),
        "runs": {full.run: _run_summary(full), early.run: _run_summary(early)},
        "epochs_saved_pct": epochs_saved_pct(full, early),
        "time_saved_pct": time_saved_pct(full, early),
        "time_saved_method": (
            "per-epoch medians: 1 - n_early * (m - c_full + c_early) / (n_full * m), m the "
            "median epoch of the full run, c the median early-stopping call of each run"
        ),
    }


def table_markdown(full: RunResult, early: RunResult, *, monitor: str) -> str:
    """The comparison table (Markdown, aligned so that it also reads in a terminal)."""
    saved = time_saved_pct(full, early)

    def weights(result: RunResult) -> str:
        if result.restored_epoch is not None:
            return f"{result.restored_epoch} (restored)"
        return f"{result.epochs_run} (last)"

    def per_epoch(result: RunResult) -> str:
        return f"{median_epoch_s(result):.4f}"

    def pct(value: float) -> str:
        return f"{100 * value:.2f}%"

    rows = [
        ("epochs run", str(full.epochs_run), str(early.epochs_run)),
        ("epochs saved", "-", f"{epochs_saved_pct(full, early):.0f}%"),
        ("median time per epoch (s)", per_epoch(full), per_epoch(early)),
        (
            "median early-stopping call (ms)",
            f"{1000 * median_call_s(full):.3f}",
            f"{1000 * median_call_s(early):.3f}",
        ),
        ("time saved (from the medians)", "-", "-" if math.isnan(saved) else f"{saved:.0f}%"),
        ("wall time (s)", f"{full.wall_time_s:.1f}", f"{early.wall_time_s:.1f}"),
        (f"best epoch ({monitor})", str(full.best_epoch), str(early.best_epoch)),
        ("final weights from epoch", weights(full), weights(early)),
        ("val loss", f"{full.final['val_loss']:.4f}", f"{early.final['val_loss']:.4f}"),
        ("val accuracy", pct(full.final["val_acc"]), pct(early.final["val_acc"])),
        ("test loss", f"{full.final['test_loss']:.4f}", f"{early.final['test_loss']:.4f}"),
        ("test accuracy", pct(full.final["test_acc"]), pct(early.final["test_acc"])),
    ]
    header = ("final model", "without early stopping", "with early stopping")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]

    def line(cells: tuple[str, str, str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    rule = "|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]])
    return "\n".join([line(header), rule + "|", *(line(row) for row in rows)])


def _json_safe(value: Any) -> Any:
    """Non-finite floats as the strings "nan", "inf", "-inf" (as in ``state_dict``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def write_curves(path: str | Path, *runs: RunResult) -> Path:
    """Write every epoch record of ``runs`` as a curves file (see :class:`CurveRecorder`).

    The file is in the format ``earlystop replay`` reads, so a policy can be replayed on the
    demo's own curves: ``earlystop replay demo-out/curves.csv --policy patience=5``. The
    demo writes the run without early stopping only: replay needs runs trained to their full
    budget, and the run with early stopping is its first epochs.
    """
    from .._replay.curves import REQUIRED_COLUMNS, CurveRecorder

    optional = [name for name in CURVE_COLUMNS if name not in REQUIRED_COLUMNS]
    with CurveRecorder(path, columns=optional) as recorder:
        for result in runs:
            for record in result.records:
                recorder.record(
                    str(record["run"]),
                    int(record["epoch"]),
                    record["val_loss"],
                    **{name: record[name] for name in optional},
                )
    return Path(path)


def write_summary(out: str | Path, data: dict[str, Any], table: str) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md`` into ``out``."""
    out = Path(out)
    json_path, md_path = out / "summary.json", out / "summary.md"
    json_path.write_text(
        json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    config = data["config"]
    md_path.write_text(
        f"# earlystop demo: {data['dataset']}, seed {config['seed']}\n\n{table}\n",
        encoding="utf-8",
    )
    return json_path, md_path
