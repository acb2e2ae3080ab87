"""The smoothed view of a history that the stopper's rules read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

from .history import History
from .protocols import Smoother

__all__ = ["SmoothedHistory", "Tail"]


class Tail(Sequence[float]):
    """A read-only view of ``values[start:stop]`` that copies nothing (O(1) to make)."""

    __slots__ = ("_start", "_stop", "_values")

    def __init__(self, values: Sequence[float], start: int, stop: int) -> None:
        self._values = values
        self._start = start
        self._stop = stop

    def __len__(self) -> int:
        return max(0, self._stop - self._start)

    @overload
    def __getitem__(self, index: int) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[float]: ...

    def __getitem__(self, index: int | slice) -> float | Sequence[float]:
        size = len(self)
        if isinstance(index, slice):
            return [self._values[self._start + i] for i in range(*index.indices(size))]
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("Tail index out of range")
        return self._values[self._start + index]


class SmoothedHistory:
    """Keeps ``view``: the raw history with its counted values replaced by smoothed ones.

    ``view`` shares ``metrics`` with the raw history; warm-up values are copied as is.
    Call :meth:`update` after each append to the raw history (and after replacing its
    lists, as a state load does: it then recomputes from the start).
    """

    def __init__(self, smoother: Smoother, raw: History) -> None:
        self.smoother = smoother
        self.raw = raw
        self.view = History(mode=raw.mode, metrics=raw.metrics, start_from=raw.start_from)
        self._source = raw.values

    def update(self) -> float:
        """Smooth the values not seen yet; return the latest smoothed value (nan if none)."""
        raw, view = self.raw, self.view
        if (
            view.metrics is not raw.metrics
            or self._source is not raw.values
            or len(view.values) > len(raw.values)
        ):
            view.metrics, view.values, self._source = raw.metrics, [], raw.values
        start = raw.start_from
        smoothed = view.values
        for index in range(len(smoothed), len(raw.values)):
            value = raw.values[index]
            if index >= start:
                counted = Tail(smoothed, start, index)
                value = float(self.smoother(Tail(raw.values, start, index + 1), counted))
            smoothed.append(value)
        return smoothed[-1] if smoothed else math.nan
