"""The demo's figure: training and validation loss per epoch, with and without early stopping.

The figure is built on a bare :class:`matplotlib.figure.Figure` with the Agg canvas: no
pyplot, no backend switch, no global state. :func:`loss_figure` returns the Figure, so a
test can inspect its artists; :func:`save_figure` writes the PNG. Artists carry a ``gid``
(:data:`GIDS`) to be found without relying on colours or order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .train import RunResult

__all__ = ["GIDS", "loss_figure", "save_figure"]

#: gid of each artist a reader (or a test) may look for
GIDS = {
    "train": "train_loss",
    "val": "val_loss",
    "train_rest": "train_loss_without_early_stopping",
    "val_rest": "val_loss_without_early_stopping",
    "checkpoint": "checkpoint",
    "stopped": "stopped",
}

_TRAIN_COLOR = "tab:blue"
_VAL_COLOR = "tab:orange"


def _column(records: list[dict[str, Any]], key: str) -> list[Any]:
    return [record[key] for record in records]


def loss_figure(
    full: RunResult, early: RunResult, *, dataset: str = "", time_saved_pct: float | None = None
) -> Any:
    """The familiar early-stopping figure, comparing the two runs of one seed.

    Solid lines: training and validation loss of the run with early stopping, up to the
    epoch where it stopped. Faint lines: the same curves of the run without early stopping
    from that epoch to the end of its budget (its first epochs are the same numbers). A
    dashed red vertical line marks the checkpoint (restored) epoch, a black cross the epoch
    where training stopped.

    Args:
        full: the run without early stopping.
        early: the run with early stopping.
        dataset: named in the title.
        time_saved_pct: shown in the title when given.

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, 5.0), dpi=100)
    axes = figure.add_subplot()
    epochs = _column(early.records, "epoch")
    axes.plot(
        epochs,
        _column(early.records, "train_loss"),
        color=_TRAIN_COLOR,
        label="training loss",
        gid=GIDS["train"],
    )
    axes.plot(
        epochs,
        _column(early.records, "val_loss"),
        color=_VAL_COLOR,
        label="validation loss",
        gid=GIDS["val"],
    )
    last = epochs[-1] if epochs else 0
    rest = [r for r in full.records if r["epoch"] >= last]
    if len(rest) > 1:
        rest_epochs = _column(rest, "epoch")
        style: dict[str, Any] = {"alpha": 0.4, "linewidth": 1.0, "linestyle": "-"}
        axes.plot(
            rest_epochs,
            _column(rest, "train_loss"),
            color=_TRAIN_COLOR,
            label="training loss, without early stopping",
            gid=GIDS["train_rest"],
            **style,
        )
        axes.plot(
            rest_epochs,
            _column(rest, "val_loss"),
            color=_VAL_COLOR,
            label="validation loss, without early stopping",
            gid=GIDS["val_rest"],
            **style,
        )
    if early.restored_epoch is not None:
        axes.axvline(
            early.restored_epoch,
            color="red",
            linestyle="--",
            label=f"checkpoint (restored epoch {early.restored_epoch})",
            gid=GIDS["checkpoint"],
        )
    if early.stopped_epoch is not None:
        stop_record = early.records[early.stopped_epoch - 1]
        axes.plot(
            [early.stopped_epoch],
            [stop_record["val_loss"]],
            linestyle="none",
            marker="X",
            markersize=10,
            color="black",
            label=f"stopped (epoch {early.stopped_epoch})",
            gid=GIDS["stopped"],
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss (cross-entropy)")
    # The first epoch's losses dwarf the rest: scale to the validation loss from epoch 2
    # on, so that its turn upwards is visible; earlier training losses may leave the top.
    later = [r["val_loss"] for r in [*early.records, *full.records] if r["epoch"] >= 2]
    finite = [value for value in later if math.isfinite(value)]
    if finite:
        axes.set_ylim(0.0, 1.3 * max(finite))
    axes.set_xlim(0, max(len(full.records), last) + 1)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    axes.set_title(_title(full, early, dataset, time_saved_pct), fontsize="medium")
    figure.tight_layout()
    return figure


def _title(full: RunResult, early: RunResult, dataset: str, time_saved_pct: float | None) -> str:
    stopped = (
        f"stopped at epoch {early.stopped_epoch}/{len(full.records)}"
        if early.stopped_epoch is not None
        else f"no stop within {early.epochs_run} epochs"
    )
    head = f"{dataset}: " if dataset else ""
    first = f"{head}best epoch {early.restored_epoch}, {stopped}"
    if full.epochs_run:
        first += f" ({100 * (1 - early.epochs_run / full.epochs_run):.0f}% fewer epochs"
        if time_saved_pct is not None:
            first += f", {time_saved_pct:.0f}% less time"
        first += ")"
    accuracy = (
        f"test loss {early.final['test_loss']:.3f} vs {full.final['test_loss']:.3f}, "
        f"accuracy {100 * early.final['test_acc']:.1f}% vs {100 * full.final['test_acc']:.1f}% "
        f"(early stopping vs full budget)"
    )
    return f"{first}\n{accuracy}"


def save_figure(figure: Any, path: str | Path) -> Path:
    """Write ``figure`` as a PNG with the Agg canvas (no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png")
    return path
