"""Protocols through which the stopper reaches its plug-ins (defined here, implemented above).

The core never imports a concrete smoother or scheduler rule: ``earlystop._rules`` holds
those, and any object with the right methods works as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .history import History

__all__ = ["ScheduleRule", "Smoother"]


@runtime_checkable
class Smoother(Protocol):
    """Turns the raw monitored series into the series that the stopping rules read.

    ``raw`` holds the counted raw values up to and including the current one, ``smoothed``
    the smoothed values before it (one shorter). Return the smoothed current value.
    """

    def __call__(self, raw: Sequence[float], smoothed: Sequence[float]) -> float: ...


@runtime_checkable
class ScheduleRule(Protocol):
    """Learning-rate awareness, read from the recorded history (see ``SchedulerAware``).

    ``holds`` vetoes the patience rule and the criteria at the latest evaluation;
    ``restarts`` restarts the patience count at it.
    """

    def holds(self, history: History) -> bool: ...

    def restarts(self, history: History) -> bool: ...
