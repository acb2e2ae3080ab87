"""Smoothers: the monitored series is filtered before patience and criteria see it.

A smoother is a pure function of the raw values and of the smoothed values already
produced, so a stopper can replay it from its recorded history after a resume::

    smoothed[t] = smoother(raw[: t + 1], smoothed[:t])

The stopper gives each smoother only the counted evaluations (warm-up evaluations are
passed through unchanged and never enter a smoother). A non-finite raw value is passed
through as the smoothed value of its evaluation, so ``on_nonfinite`` still acts on it,
and it is left out of every later smoothed value.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from .._core.protocols import Smoother
from .numbers import spec_number

__all__ = ["EMA", "MovingMean", "MovingMedian", "smooth_series"]


@dataclass(frozen=True)
class EMA:
    """Exponential moving average: ``s[t] = alpha * x[t] + (1 - alpha) * s[t-1]``.

    The first finite value starts the average (``s = x``). Cost per evaluation: O(1).

    Args:
        alpha: weight of the newest value, in ``(0, 1]``; ``1`` means no smoothing.

    >>> ema = EMA(0.5)
    >>> ema([4.0], []), ema([4.0, 2.0], [4.0])
    (4.0, 3.0)
    """

    alpha: float

    def __post_init__(self) -> None:
        alpha = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
            raise ValueError(f"`alpha` must be a float in (0, 1], got {alpha!r}")

    def __call__(self, raw: Sequence[float], smoothed: Sequence[float]) -> float:
        current = raw[-1]
        if not math.isfinite(current):
            return current
        previous = _last_finite_smoothed(raw, smoothed)
        if previous is None:
            return current
        return self.alpha * current + (1.0 - self.alpha) * previous

    def spec(self) -> str:
        """The SPEC token of this smoother (see :func:`earlystop.parse_policy`)."""
        return f"ema={spec_number(self.alpha)}"


@dataclass(frozen=True)
class MovingMean:
    """Mean of the finite values among the last ``window`` evaluations. O(window).

    >>> MovingMean(2)([1.0, 2.0, 4.0], [1.0, 1.5])
    3.0
    """

    window: int

    def __post_init__(self) -> None:
        _check_window(self.window)

    def __call__(self, raw: Sequence[float], smoothed: Sequence[float]) -> float:
        current = raw[-1]
        if not math.isfinite(current):
            return current
        return math.fsum(finite := _finite_tail(raw, self.window)) / len(finite)

    def spec(self) -> str:
        """The SPEC token of this smoother."""
        return f"mean={self.window}"


@dataclass(frozen=True)
class MovingMedian:
    """Median of the finite values among the last ``window`` evaluations. O(window log window).

    Robust to single spikes: with ``window=3`` one outlier never reaches the output.

    >>> MovingMedian(3)([1.0, 9.0, 2.0], [1.0, 5.0])
    2.0
    """

    window: int

    def __post_init__(self) -> None:
        _check_window(self.window)

    def __call__(self, raw: Sequence[float], smoothed: Sequence[float]) -> float:
        current = raw[-1]
        if not math.isfinite(current):
            return current
        return float(statistics.median(_finite_tail(raw, self.window)))

    def spec(self) -> str:
        """The SPEC token of this smoother."""
        return f"median={self.window}"


def smooth_series(smoother: Smoother, raw: Sequence[float]) -> list[float]:
    """Apply ``smoother`` to a whole series, as a stopper does one value at a time.

    >>> smooth_series(EMA(0.5), [4.0, 2.0, float("nan"), 0.0])
    [4.0, 3.0, nan, 1.5]
    """
    seen: list[float] = []
    smoothed: list[float] = []
    for value in raw:
        seen.append(float(value))
        smoothed.append(float(smoother(seen, smoothed)))
    return smoothed


def _last_finite_smoothed(raw: Sequence[float], smoothed: Sequence[float]) -> float | None:
    # A smoothed value is non-finite only where its raw value was: skip those positions.
    for index in range(len(smoothed) - 1, -1, -1):
        if math.isfinite(smoothed[index]):
            return smoothed[index]
    return None


def _finite_tail(raw: Sequence[float], window: int) -> list[float]:
    start = max(0, len(raw) - window)
    return [raw[i] for i in range(start, len(raw)) if math.isfinite(raw[i])]


def _check_window(window: object) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"`window` must be an int >= 1, got {window!r}")
