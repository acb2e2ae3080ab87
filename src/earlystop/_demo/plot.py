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
    "best": "best_restored",
    "stopped": "stopped",
    "lr": "lr_lowered",
    "acc": "val_acc",
    "acc_rest": "val_acc_without_early_stopping",
    "acc_best": "best_restored_acc",
    "clipped": "clipped_note",
}

_TRAIN_COLOR = "tab:blue"
_VAL_COLOR = "tab:orange"
_ACC_COLOR = "tab:green"
_FAINT: dict[str, Any] = {"alpha": 0.4, "linewidth": 1.0, "linestyle": "-"}


def _column(records: list[dict[str, Any]], key: str) -> list[Any]:
    return [record[key] for record in records]


def loss_figure(
    full: RunResult,
    early: RunResult,
    *,
    dataset: str = "",
    monitor: str = "val_loss",
    on_disk: bool = False,
) -> Any:
    """The familiar early-stopping figure, comparing the two runs of one seed.

    Left, the losses; right, the validation accuracy; the monitored one says so in its
    legend. Solid lines: the run with early stopping, up to the epoch where it stopped.
    Faint lines: the run without early stopping from that epoch to the end of its budget
    (its first epochs are the same numbers). A dashed red line marks the best epoch, whose
    weights the final model has ("best (restored)", or "checkpoint" when ``on_disk``), a
    black cross the epoch where training stopped, dotted grey lines the epochs where the
    learning rate was lowered. The loss axis is scaled to the validation loss from epoch
    2 on; values above it (usually epoch 1) are named in a note on the plot.

    Args:
        full: the run without early stopping.
        early: the run with early stopping.
        dataset: named in the title.
        monitor: ``"val_loss"`` or ``"val_acc"``, the value early stopping watched.
        on_disk: whether the best weights were restored from a checkpoint file.

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11.0, 5.0), dpi=100)
    losses, accuracy = figure.subplots(1, 2, width_ratios=[1.4, 1])
    epochs = _column(early.records, "epoch")
    last = epochs[-1] if epochs else 0
    rest = [r for r in full.records if r["epoch"] >= last]
    watched = {"val_loss": " (monitored)" if monitor == "val_loss" else ""}
    watched["val_acc"] = " (monitored)" if monitor == "val_acc" else ""

    losses.plot(
        epochs,
        _column(early.records, "train_loss"),
        color=_TRAIN_COLOR,
        label="training loss",
        gid=GIDS["train"],
    )
    losses.plot(
        epochs,
        _column(early.records, "val_loss"),
        color=_VAL_COLOR,
        label=f"validation loss{watched['val_loss']}",
        gid=GIDS["val"],
    )
    accuracy.plot(
        epochs,
        [100 * a for a in _column(early.records, "val_acc")],
        color=_ACC_COLOR,
        label=f"validation accuracy{watched['val_acc']}",
        gid=GIDS["acc"],
    )
    if len(rest) > 1:
        rest_epochs = _column(rest, "epoch")
        losses.plot(
            rest_epochs,
            _column(rest, "train_loss"),
            color=_TRAIN_COLOR,
            label="training loss, without early stopping",
            gid=GIDS["train_rest"],
            **_FAINT,
        )
        losses.plot(
            rest_epochs,
            _column(rest, "val_loss"),
            color=_VAL_COLOR,
            label="validation loss, without early stopping",
            gid=GIDS["val_rest"],
            **_FAINT,
        )
        accuracy.plot(
            rest_epochs,
            [100 * a for a in _column(rest, "val_acc")],
            color=_ACC_COLOR,
            label="without early stopping",
            gid=GIDS["acc_rest"],
            **_FAINT,
        )
    if early.restored_epoch is not None:
        what = "checkpoint" if on_disk else "best (restored)"
        for axes, gid in ((losses, GIDS["best"]), (accuracy, GIDS["acc_best"])):
            axes.axvline(
                early.restored_epoch,
                color="red",
                linestyle="--",
                label=f"{what}: epoch {early.restored_epoch}",
                gid=gid,
            )
    _mark_lr_drops(losses, full)
    if early.stopped_epoch is not None:
        stop_record = early.records[early.stopped_epoch - 1]
        losses.plot(
            [early.stopped_epoch],
            [stop_record["val_loss"]],
            linestyle="none",
            marker="X",
            markersize=10,
            color="black",
            label=f"stopped (epoch {early.stopped_epoch})",
            gid=GIDS["stopped"],
        )
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss (cross-entropy)")
    accuracy.set_xlabel("epoch")
    accuracy.set_ylabel("validation accuracy (%)")
    _scale_losses(losses, early, full)
    for axes in (losses, accuracy):
        axes.set_xlim(0, max(len(full.records), last) + 1)
        axes.grid(True, alpha=0.3)
    losses.legend(loc="upper right", fontsize="small")
    accuracy.legend(loc="lower right", fontsize="small")
    figure.suptitle(_title(full, early, dataset), fontsize="medium")
    figure.tight_layout()
    return figure


def _mark_lr_drops(axes: Any, run: RunResult) -> None:
    """A dotted line at each epoch that trained with a lower learning rate than the last."""
    previous = None
    first = True
    for record in run.records:
        lr = record["lr"]
        if previous is not None and lr < previous:
            axes.axvline(
                record["epoch"],
                color="grey",
                linestyle=":",
                linewidth=1.2,
                gid=GIDS["lr"],
                label=f"learning rate lowered (x{lr / previous:.2g})" if first else None,
            )
            first = False
        previous = lr


def _scale_losses(axes: Any, early: RunResult, full: RunResult) -> None:
    """Scale to the validation loss from epoch 2 on; name what the axis clips."""
    records = [*early.records, *full.records]
    later = [r["val_loss"] for r in records if r["epoch"] >= 2]
    finite = [value for value in later if math.isfinite(value)]
    if not finite:
        return
    top = 1.3 * max(finite)
    axes.set_ylim(0.0, top)
    clipped: dict[int, list[str]] = {}
    for record in full.records if len(full.records) >= len(early.records) else early.records:
        for key, name in (("train_loss", "train"), ("val_loss", "val")):
            value = record[key]
            if math.isfinite(value) and value > top:
                clipped.setdefault(record["epoch"], []).append(f"{name} {value:.2f}")
    if clipped:
        shown = list(clipped.items())[:3]
        more = f" and {len(clipped) - 3} more epochs" if len(clipped) > 3 else ""
        text = "; ".join(f"epoch {e}: {', '.join(v)}" for e, v in shown)
        label = axes.set_xlabel(f"epoch\n(above the loss axis: {text}{more})", gid=GIDS["clipped"])
        label.set_fontsize("small")


def _title(full: RunResult, early: RunResult, dataset: str) -> str:
    head = f"{dataset}: " if dataset else ""
    if early.stopped_epoch is not None:
        saved = 100 * (1 - early.epochs_run / full.epochs_run) if full.epochs_run else 0.0
        first = (
            f"{head}stopped at epoch {early.stopped_epoch} of {len(full.records)}: "
            f"{saved:.0f}% fewer epochs"
        )
    else:
        first = f"{head}no stop within {early.epochs_run} epochs: no epoch saved"
    if early.restored_epoch is not None:
        first += f"; weights of the best epoch, {early.restored_epoch}"
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
