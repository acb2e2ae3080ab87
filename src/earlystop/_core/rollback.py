"""Undo one :meth:`Stopper.step`: what a failed call needs to leave the stopper as it was.

A mark costs four attribute reads, taken before every call; undoing (rare) rebuilds the
history lists as new objects, so incremental caches keyed on their identity (the smoothed
view, running minima of criteria) start over instead of trusting a value that was undone.
"""

from __future__ import annotations

from typing import Any

from .stopper import Stopper

__all__ = ["StopperMark", "mark", "undo"]

#: (stopper, its last decision, number of metric names, kept raw best)
StopperMark = tuple[Stopper, Any, int, Any]


def mark(stopper: Stopper) -> StopperMark:
    """What :func:`undo` needs to put ``stopper`` back to this moment.

    The last decision already holds the number of evaluations, the best and the wait
    (every path that changes them also sets ``last``), so a mark reads four attributes.
    """
    return stopper, stopper.last, len(stopper.history.metrics), stopper._kept


def undo(saved: StopperMark) -> None:
    """Forget every evaluation recorded after ``saved`` was taken and restore the best."""
    stopper, last, names, kept = saved
    if last is None:
        size, best_value, best_step, wait = 0, None, None, 0
    else:
        size, best_value, best_step, wait = last.step, last.best_value, last.best_step, last.wait
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
