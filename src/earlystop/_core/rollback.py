"""Undo one :meth:`Stopper.step`: what a failed call needs to leave the stopper as it was.

A mark costs a few attribute reads, taken before every call; undoing (rare) rebuilds the
history lists as new objects, so incremental caches keyed on their identity (the smoothed
view, running minima of criteria) start over instead of trusting a value that was undone.
"""

from __future__ import annotations

from typing import Any

from .stopper import Stopper

__all__ = ["StopperMark", "mark", "undo"]

#: (stopper, its last decision, evaluations, metric names, kept raw best, best value,
#: best step, wait)
StopperMark = tuple[Stopper, Any, int, int, Any, Any, Any, int]


def mark(stopper: Stopper) -> StopperMark:
    """What :func:`undo` needs to put ``stopper`` back to this moment.

    The best and the wait are read from the stopper itself, not from its last decision:
    the front end's seed attributes (``counter = 0``, ``val_loss_min = ...``) change them
    between calls.
    """
    history = stopper.history
    return (
        stopper,
        stopper.last,
        len(history.values),
        len(history.metrics),
        stopper._kept,
        stopper.best_value,
        stopper.best_step,
        stopper.wait,
    )


def undo(saved: StopperMark) -> None:
    """Forget every evaluation recorded after ``saved`` was taken and restore the best."""
    stopper, last, size, names, kept, best_value, best_step, wait = saved
    history = stopper.history
    kept_names = list(history.metrics)[:names]  # a call only appends new names
    history.values = history.values[:size]
    history.metrics = {name: history.metrics[name][:size] for name in kept_names}
    smoothed = stopper._smoothed
    if smoothed is not None:  # the view mirrors the raw values one for one
        view = smoothed.view
        view.values = view.values[:size]
        view.metrics = history.metrics
        smoothed._source = history.values
    stopper.best_value, stopper.best_step, stopper.wait = best_value, best_step, wait
    stopper.last, stopper._kept = last, kept
