"""The recorded evaluations that criteria read, and the criterion protocol."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .options import Mode

__all__ = ["Criterion", "History", "check_criterion"]


@dataclass
class History:
    """Everything a stopper has been fed, in order; criteria read it, never write it.

    Attributes:
        mode: the direction of improvement of ``values``.
        values: the monitored value of every evaluation (warm-up included), as floats.
        metrics: other named series given to ``step(value, name=...)``, aligned with
            ``values`` (``nan`` where an evaluation did not give that metric).
        start_from: the number of leading warm-up evaluations that criteria must ignore.
    """

    mode: Mode
    values: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    start_from: int = 0

    def __len__(self) -> int:
        return len(self.values)

    def append(self, value: float, metrics: Mapping[str, float]) -> None:
        """Record one evaluation (and pad the metrics it did not give with ``nan``)."""
        size = len(self.values)
        for name, metric in metrics.items():
            series = self.metrics.get(name)
            if series is None:
                series = self.metrics[name] = [math.nan] * size
            series.append(metric)
        self.values.append(value)
        for series in self.metrics.values():
            if len(series) == size:
                series.append(math.nan)

    def series(self, name: str) -> Sequence[float]:
        """The named series: ``"value"`` for the monitored values, else a metric.

        Raises:
            KeyError: naming the series and listing the ones that exist.
        """
        if name == "value":
            return self.values
        try:
            return self.metrics[name]
        except KeyError:
            known = ", ".join(sorted(["value", *self.metrics])) or "none"
            raise KeyError(f"no series named {name!r}; recorded series: {known}") from None


@runtime_checkable
class Criterion(Protocol):
    """A stopping rule: a function of the recorded history.

    Return a short reason string to stop now, or ``None`` to go on. Criteria should be
    pure functions of ``history`` so that resuming and replaying need no state of their
    own. Any object with this method works; no base class is needed.

    >>> class Below:
    ...     def __init__(self, level: float) -> None:
    ...         self.level = level
    ...     def __call__(self, history: History) -> str | None:
    ...         return "below" if history.values[-1] < self.level else None
    >>> isinstance(Below(0.1), Criterion)
    True
    """

    def __call__(self, history: History) -> str | None: ...


def check_criterion(criterion: Any, where: str) -> Criterion:
    """Return ``criterion`` if it can be called as ``criterion(history)``.

    Raises:
        TypeError: ``"{where} must be callable as criterion(history), got <type>"``.
    """
    if not callable(criterion):
        raise TypeError(
            f"{where} must be callable as criterion(history), got {type(criterion).__name__}"
        )
    return criterion  # type: ignore[no-any-return]
