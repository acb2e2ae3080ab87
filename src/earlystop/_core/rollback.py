"""Undo one :meth:`Stopper.step`: what a failed call needs to leave the stopper as it was.

A mark costs a few attribute reads, taken before every call; undoing (rare) rebuilds the
history lists as new objects, so incremental caches keyed on their identity (the smoothed
view, running minima of criteria) start over instead of trusting a value that was undone.
"""

from __future__ import annotations

from typing import Any

from .stopper import Stopper

__all__ = ["StopperMark", "mark", "undo"]

#: (stopper, evaluations, metric names, smoothed length, best value, best step, wait,
#: last decision, kept raw best)
StopperMark = tuple[Stopper, int, int, int, Any, Any, int, Any, Any]


def mark(stopper: Stopper) -> StopperMark:
    """What :func:`undo` needs to put ``stopper`` back to this moment."""
    history = stopper.history
    smoothed = stopper._smoothed
    return (
        stopper,
        len(history.values),
        len(history.metrics),
        -1 if smoothed is None else len(smoothed.view.values),
        stopper.best_value,
        stopper.best_step,
        stopper.wait,
        stopper.last,
        stopper._kept,
    )


def undo(saved: StopperMark) -> None:
    """Forget every evaluation recorded after ``saved`` was taken and restore the best."""
    stopper, size, names, smoothed_size, best_value, best_step, wait, last, kept = saved
    history = stopper.history
    kept_names = list(history.metrics)[:names]  # a call only appends new names
    history.values = history.values[:size]
    history.metrics = {name: history.metrics[name][:size] for name in kept_names}
    smoothed = stopper._smoothed
    if smoothed is not None:
        view = smoothed.view
        view.values = view.values[:smoothed_size]
        view.metrics = history.metrics
        smoothed._source = history.values
    stopper.best_value, stopper.best_step, stopper.wait = best_value, best_step, wait
    stopper.last, stopper._kept = last, kept
