"""Trend tests on the recent window: Mann-Kendall and Theil-Sen, in pure Python.

:func:`mann_kendall` is the rank test for a monotonic trend (the statistic ``S``, its
tie-corrected variance and the normal score ``z``, without continuity correction, as
``scipy.stats.kendalltau(range(n), values, method="asymptotic")`` computes it);
:func:`theil_sen` is the median of the pairwise slopes (``scipy.stats.theilslopes``'s
slope). Both are rank-based, so a single outlier moves them little, unlike a
least-squares slope (:class:`~earlystop.Plateau`).

Two criteria use them, each a function of the recorded history only:

- :class:`Trend` (SPEC ``trend=W``) stops when the last ``W`` values show no significant
  improving trend: the curve has stopped going down (in mode ``min``). Alone it is a
  plateau test; combined with a wait (``all(trend=15,adaptive=0.1)``) it allows a short
  wait only when the recent window shows no downward trend.
- :class:`Rising` (SPEC ``rising=W``) is an over-fitting detector: it stops when the last
  ``W`` values show a significant worsening trend (the validation loss climbs).

scipy is not a dependency of the core (``import earlystop`` imports neither numpy nor
scipy); the tests check these functions against scipy's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from .._core.history import History

__all__ = ["MannKendall", "Rising", "Trend", "mann_kendall", "theil_sen"]


@dataclass(frozen=True)
class MannKendall:
    """The result of :func:`mann_kendall`.

    Attributes:
        s: ``sum(sign(x[j] - x[i]) for i < j)``; negative for a downward trend.
        variance: the variance of ``S`` under no trend, corrected for ties.
        z: ``S / sqrt(variance)`` (0 when the variance is 0).
    """

    s: int
    variance: float
    z: float

    def p_down(self) -> float:
        """One-sided p-value of a downward trend: ``P(Z <= z)``."""
        return NormalDist().cdf(self.z)

    def p_up(self) -> float:
        """One-sided p-value of an upward trend: ``P(Z >= z)``."""
        return 1.0 - NormalDist().cdf(self.z)


def mann_kendall(values: Sequence[float]) -> MannKendall:
    """The Mann-Kendall trend statistic of ``values`` taken in order.

    >>> result = mann_kendall([5.0, 4.0, 4.0, 2.0, 1.0])
    >>> result.s, round(result.variance, 4), round(result.z, 4)
    (-9, 15.6667, -2.2738)

    Raises:
        ValueError: for fewer than 2 values or a non-finite one.
    """
    n = len(values)
    if n < 2:
        raise ValueError(f"`values` must hold at least 2 values, got {n}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("`values` must all be finite")
    s = 0
    for i in range(n - 1):
        first = values[i]
        for j in range(i + 1, n):
            diff = values[j] - first
            s += (diff > 0) - (diff < 0)
    counts: dict[float, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    ties = sum(t * (t - 1) * (2 * t + 5) for t in counts.values() if t > 1)
    variance = (n * (n - 1) * (2 * n + 5) - ties) / 18.0
    z = s / math.sqrt(variance) if variance > 0 else 0.0
    return MannKendall(s, variance, z)


def theil_sen(values: Sequence[float]) -> float:
    """The Theil-Sen slope of ``values`` against ``0, 1, 2, ...``: the median pairwise slope.

    >>> theil_sen([1.0, 2.0, 3.0, 40.0, 5.0])  # one outlier barely moves it
    1.0

    Raises:
        ValueError: for fewer than 2 values or a non-finite one.
    """
    n = len(values)
    if n < 2:
        raise ValueError(f"`values` must hold at least 2 values, got {n}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("`values` must all be finite")
    slopes = sorted(
        (values[j] - values[i]) / (j - i) for i in range(n - 1) for j in range(i + 1, n)
    )
    middle = len(slopes) // 2
    if len(slopes) % 2:
        return slopes[middle]
    return 0.5 * (slopes[middle - 1] + slopes[middle])


def _check_window(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 4:
        raise ValueError(f"`window` must be an int >= 4, got {value!r}")
    return value


def _check_confidence(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.5 < value < 1:
        raise ValueError(f"`confidence` must be a float in (0.5, 1), got {value!r}")
    return float(value)


def _window(history: History, window: int) -> list[float] | None:
    """The finite counted values of the last ``window`` evaluations, signed so that lower
    is better; ``None`` before ``window`` counted evaluations or with fewer than 4 finite."""
    if len(history) - history.start_from < window:
        return None
    sign, values = history.mode.sign, history.values
    points = [sign * v for v in values[len(values) - window :] if math.isfinite(v)]
    return points if len(points) >= 4 else None


@dataclass(frozen=True)
class _WindowTest:
    """What :class:`Trend` and :class:`Rising` share: the window, the confidence, and the
    Mann-Kendall test of the window's signed values (``None`` until the window is full)."""

    window: int
    confidence: float = 0.95

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", _check_window(self.window))
        object.__setattr__(self, "confidence", _check_confidence(self.confidence))

    def _test(self, history: History) -> tuple[list[float], MannKendall] | None:
        points = _window(history, self.window)
        return None if points is None else (points, mann_kendall(points))


@dataclass(frozen=True)
class Trend(_WindowTest):
    """Stop when the last ``window`` values show no significant improving trend.

    A one-sided Mann-Kendall test on the finite values of the last ``window`` counted
    evaluations (improving = down in mode ``min``, up in mode ``max``): it goes on while
    ``P(Z <= z) < 1 - confidence`` (a significant improvement) and stops otherwise. A
    noisy but falling curve keeps going; a flat or rising window stops. Needs at least 4
    finite values in the window; O(window^2) per evaluation.

    Args:
        window: number of recent counted evaluations tested (>= 4).
        confidence: one-sided confidence in ``(0.5, 1)`` required to keep going.

    >>> from earlystop import History, Mode
    >>> falling = [1.0, 0.9, 0.95, 0.8, 0.85, 0.7, 0.75, 0.6]
    >>> Trend(8)(History(Mode.MIN, values=falling)) is None
    True
    >>> Trend(8)(History(Mode.MIN, values=[0.6, 0.7, 0.6, 0.65, 0.62, 0.7, 0.6, 0.66]))
    'trend=8 (no downward trend in the last 8: Mann-Kendall z=0.514, p=0.7)'
    """

    def __call__(self, history: History) -> str | None:
        tested = self._test(history)
        if tested is None:
            return None
        _, test = tested
        p = test.p_down()
        if p < 1.0 - self.confidence:
            return None
        word = "downward" if history.mode.sign > 0 else "upward"
        return (
            f"{self.spec()} (no {word} trend in the last {self.window}: "
            f"Mann-Kendall z={test.z:.3g}, p={p:.2g})"
        )

    def spec(self) -> str:
        """The SPEC token (the confidence is written separately as ``confidence=C``)."""
        return f"trend={self.window}"


@dataclass(frozen=True)
class Rising(_WindowTest):
    """Over-fitting detector: stop when the last ``window`` values significantly worsen.

    A one-sided Mann-Kendall test for a worsening trend (up in mode ``min``) on the finite
    values of the last ``window`` counted evaluations: it stops when
    ``P(Z >= z) < 1 - confidence``, and the reason gives the Theil-Sen slope of the
    worsening per evaluation (positive in both modes). A noisy flat curve rarely triggers
    it (at most ``1 - confidence`` of the windows); a validation loss that climbs while
    training goes on does. Needs at least 4 finite values in the window; O(window^2) per
    evaluation.

    Args:
        window: number of recent counted evaluations tested (>= 4).
        confidence: one-sided confidence in ``(0.5, 1)`` required to stop.

    >>> from earlystop import History, Mode
    >>> rising = [0.5, 0.52, 0.51, 0.55, 0.56, 0.58, 0.57, 0.6]
    >>> Rising(8)(History(Mode.MIN, values=rising))
    'rising=8 (worsening trend in the last 8: Mann-Kendall z=2.97, Theil-Sen 0.0146 per evaluation)'
    """

    def __call__(self, history: History) -> str | None:
        tested = self._test(history)
        if tested is None:
            return None
        points, test = tested
        if test.p_up() >= 1.0 - self.confidence:
            return None
        worsening = theil_sen(points)  # on the signed values: > 0 in both modes
        return (
            f"{self.spec()} (worsening trend in the last {self.window}: "
            f"Mann-Kendall z={test.z:.3g}, Theil-Sen {worsening:.3g} per evaluation)"
        )

    def spec(self) -> str:
        """The SPEC token (the confidence is written separately as ``confidence=C``)."""
        return f"rising={self.window}"
