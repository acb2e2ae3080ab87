"""Stopping criteria from the literature, as plug-ins of the :class:`Criterion` protocol.

Each criterion is a function of the recorded :class:`History` only: it reads the counted
evaluations (the first ``history.start_from`` warm-up ones are ignored), returns a short
reason to stop or ``None``, and keeps no state that could change its answer, so resuming
and replaying need nothing but the history. ``GL`` and ``PQ`` cache the running minimum
of the series to stay O(1) per evaluation; the cache is checked against the history it
was built from (the same ``values`` list, grown only by appending, as a stopper does) and
gives exactly the value of the definition; any other history is scanned from the start.

``AdaptivePatience`` is patience that grows with training progress: the evaluations
allowed without improvement are a fraction of the evaluation where the best one came.
It finds the best with the stopper's own improvement rule (deltas and baseline given
to it), caching it the same way.

Prechelt's criteria (L. Prechelt, "Early Stopping - But When?", 1998) are defined on
losses: ``GL`` and ``PQ`` are ratios of losses and refuse ``mode="max"`` (monitor an
error such as ``1 - accuracy`` instead); ``UP`` and ``Plateau`` only compare values and
work in both modes ("worse" means larger in mode ``min``, smaller in mode ``max``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .._core.history import History
from .._core.options import Mode, check_delta, check_threshold
from .numbers import spec_number

__all__ = [
    "GL",
    "PQ",
    "UP",
    "AdaptivePatience",
    "Plateau",
    "generalization_loss",
    "training_progress",
]


def generalization_loss(current: float, best: float) -> float:
    """Prechelt's ``GL = 100 * (E_va(t) / E_opt(t) - 1)``, in percent.

    With a best loss of 0 it is the limit: 0 while the loss stays 0, else ``inf``.

    >>> round(generalization_loss(1.05, 1.0), 6), generalization_loss(0.1, 0.0)
    (5.0, inf)
    """
    if best == 0:
        return 0.0 if current == 0 else math.inf
    return 100.0 * (current / best - 1.0)


def training_progress(strip: Sequence[float]) -> float:
    """Prechelt's ``P_k = 1000 * (sum(strip) / (k * min(strip)) - 1)``, per mille.

    With a minimum of 0 it is the limit: 0 for an all-zero strip, else ``inf``.

    >>> round(training_progress([1.0, 1.0, 1.0, 1.0, 1.5]), 6), training_progress([0.0, 0.1])
    (100.0, inf)
    """
    lowest = min(strip)
    if lowest == 0:
        return 0.0 if max(strip) == 0 else math.inf
    return 1000.0 * (math.fsum(strip) / (len(strip) * lowest) - 1.0)


@dataclass
class _RunningMin:
    """Minimum of the finite counted values, updated incrementally for one history."""

    values: list[float] | None = None
    start: int = 0
    seen: int = 0
    minimum: float = math.inf

    def __call__(self, history: History) -> float:
        values = history.values
        if values is not self.values or history.start_from != self.start or self.seen > len(values):
            self.values, self.start = values, history.start_from
            self.seen, self.minimum = history.start_from, math.inf
        minimum = self.minimum
        for index in range(max(self.seen, self.start), len(values)):
            value = values[index]
            if value < minimum and math.isfinite(value):
                minimum = value
        self.seen, self.minimum = len(values), minimum
        return minimum


def _require_loss(name: str, history: History) -> None:
    if history.mode is not Mode.MIN:
        raise ValueError(
            f"`{name}` is defined for losses (mode='min'), got mode={history.mode.value!r}; "
            "monitor an error such as 1 - accuracy in mode 'min' instead"
        )


def _check_alpha(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a finite float >= 0, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or result < 0:
        raise ValueError(f"`{name}` must be a finite float >= 0, got {value!r}")
    return result


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}")
    return value


def _gl_now(name: str, history: History, running_min: _RunningMin) -> float | None:
    """GL at the latest evaluation, ``None`` when it is a warm-up or not finite."""
    _require_loss(name, history)
    if len(history) <= history.start_from or not math.isfinite(history.values[-1]):
        return None
    best = running_min(history)
    if best < 0:
        raise ValueError(
            f"`{name}` needs losses >= 0: the lowest monitored value so far is {best!r}"
        )
    return generalization_loss(history.values[-1], best)


@dataclass(frozen=True)
class GL:
    """Prechelt's GL_alpha: stop when the generalization loss exceeds ``alpha`` percent.

    ``GL(t) = 100 * (E_va(t) / E_opt(t) - 1)`` where ``E_va(t)`` is the monitored value at
    evaluation t and ``E_opt(t)`` the lowest one so far. Checked at every evaluation.
    A non-finite current value does not stop (``on_nonfinite`` decides); non-finite values
    never become ``E_opt``. With ``E_opt = 0`` any positive loss gives ``GL = inf``.
    Needs losses ``>= 0`` and ``mode="min"`` (``ValueError``).

    Args:
        alpha: threshold in percent (``GL(t) > alpha`` stops).

    >>> from earlystop import History, Mode
    >>> history = History(Mode.MIN, values=[1.0, 0.8, 0.85])
    >>> GL(5.0)(history)  # 100 * (0.85 / 0.8 - 1) = 6.25 > 5
    'gl=5 (GL 6.25% > 5%)'
    """

    alpha: float
    _min: _RunningMin = field(default_factory=_RunningMin, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _check_alpha("alpha", self.alpha))

    def __call__(self, history: History) -> str | None:
        gl = _gl_now("GL", history, self._min)
        if gl is None or gl <= self.alpha:
            return None
        return f"{self.spec()} (GL {gl:.3g}% > {spec_number(self.alpha)}%)"

    def spec(self) -> str:
        """The SPEC token of this criterion (see :func:`earlystop.parse_policy`)."""
        return f"gl={spec_number(self.alpha)}"


@dataclass(frozen=True)
class PQ:
    """Prechelt's PQ_alpha: stop when ``GL(t) / P_k(t) > alpha`` at the end of a strip.

    Training is cut into strips of ``strip`` counted evaluations; the criterion is checked
    at the end of each one. ``P_k(t) = 1000 * (sum of the strip's training losses /
    (k * their minimum) - 1)`` is the training progress: high while training still
    improves fast, so a given generalization loss is tolerated longer. A zero progress
    with a positive GL stops. Needs the ``train_key`` metric (``step(value,
    train_loss=...)``); a strip with a non-finite training loss is skipped.

    Args:
        alpha: threshold on the quotient.
        strip: strip length ``k`` (Prechelt uses 5).
        train_key: the metric holding the training loss.

    >>> from earlystop import History, Mode
    >>> h = History(Mode.MIN, values=[1.0, 0.5, 0.6], metrics={"train_loss": [1.0, 1.0, 1.5]})
    >>> PQ(0.1, strip=3)(h)  # GL = 20, P_3 = 1000 * (3.5 / 3 - 1) = 166.7, PQ = 0.12
    'pq=0.1 (GL/P 0.12 > 0.1)'
    """

    alpha: float
    strip: int = 5
    train_key: str = "train_loss"
    _min: _RunningMin = field(default_factory=_RunningMin, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _check_alpha("alpha", self.alpha))
        _check_int("strip", self.strip, 1)

    def __call__(self, history: History) -> str | None:
        counted = len(history) - history.start_from
        if counted < self.strip or counted % self.strip:
            _require_loss("PQ", history)
            return None
        gl = _gl_now("PQ", history, self._min)
        if gl is None:
            return None
        train = history.series(self.train_key)
        strip = [train[i] for i in range(len(train) - self.strip, len(train))]
        if not all(math.isfinite(v) for v in strip):
            return None
        if min(strip) < 0:
            raise ValueError(
                f"`PQ` needs training losses >= 0 in `{self.train_key}`, got {min(strip)!r}"
            )
        progress = training_progress(strip)
        quotient = gl / progress if progress > 0 else (math.inf if gl > 0 else 0.0)
        if quotient <= self.alpha:
            return None
        return f"{self.spec()} (GL/P {quotient:.3g} > {spec_number(self.alpha)})"

    def spec(self) -> str:
        """The SPEC token (the strip length is written separately as ``strip=K``)."""
        return f"pq={spec_number(self.alpha)}"


@dataclass(frozen=True)
class UP:
    """Prechelt's UP_s: stop when the value got worse in ``s`` successive strips.

    At the end of each strip of ``strip`` counted evaluations, compare the value with the
    one at the end of the previous strip; stop when it was worse at ``s`` strip ends in a
    row: ``E(t) > E(t-k) > ... `` over ``s`` comparisons (``<`` in mode ``max``). The first
    comparison is possible at the end of the second strip. A non-finite value on either
    side of a comparison breaks the run (``on_nonfinite`` decides what it does).
    O(s) per evaluation.

    Args:
        s: number of successive strips that must get worse.
        strip: strip length ``k`` (Prechelt uses 5).

    >>> from earlystop import History, Mode
    >>> UP(2, strip=1)(History(Mode.MIN, values=[1.0, 0.5, 0.6, 0.7]))
    'up=2 (worse at 2 successive strip ends)'
    """

    s: int
    strip: int = 5

    def __post_init__(self) -> None:
        _check_int("s", self.s, 1)
        _check_int("strip", self.strip, 1)

    def __call__(self, history: History) -> str | None:
        counted = len(history) - history.start_from
        k = self.strip
        if counted % k or counted < (self.s + 1) * k:
            return None
        values, sign, last = history.values, history.mode.sign, len(history) - 1
        for i in range(self.s):
            later, earlier = values[last - i * k], values[last - (i + 1) * k]
            if not (math.isfinite(later) and math.isfinite(earlier)):
                return None
            if sign * (later - earlier) <= 0:
                return None
        return f"{self.spec()} (worse at {self.s} successive strip ends)"

    def spec(self) -> str:
        """The SPEC token (the strip length is written separately as ``strip=K``)."""
        return f"up={self.s}"


@dataclass(frozen=True)
class Plateau:
    """Stop when the last ``window`` values show no significant improvement.

    Fits a least-squares line to the finite values of the last ``window`` counted
    evaluations and tests, one-sided at the given ``confidence``, whether the slope points
    toward improvement (down in mode ``min``, up in mode ``max``). It stops when that
    cannot be claimed: ``t = slope / stderr(slope) > -t_crit`` with ``t_crit`` the
    Student-t quantile at ``confidence`` with ``n - 2`` degrees of freedom (``slope`` taken
    on the values multiplied by +1 for ``min``, -1 for ``max``). A noise-free improving
    line never stops; a flat noisy window stops with probability ``confidence``.
    Needs at least 3 finite values in the window. O(window) per evaluation.

    Args:
        window: number of recent counted evaluations to fit (>= 3).
        confidence: one-sided confidence in ``(0.5, 1)`` required to keep going.

    >>> from earlystop import History, Mode
    >>> Plateau(4)(History(Mode.MIN, values=[4.0, 3.0, 2.0, 1.0])) is None
    True
    >>> Plateau(4)(History(Mode.MIN, values=[1.0, 1.1, 0.9, 1.0]))  # slope -0.02, stderr 0.0424
    'plateau=4 (slope t=-0.471 > -2.92 at 95%)'
    """

    window: int
    confidence: float = 0.95

    def __post_init__(self) -> None:
        _check_int("window", self.window, 3)
        confidence = self.confidence
        if (
            isinstance(confidence, bool)
            or not isinstance(confidence, (int, float))
            or not 0.5 < confidence < 1
        ):
            raise ValueError(f"`confidence` must be a float in (0.5, 1), got {confidence!r}")

    def __call__(self, history: History) -> str | None:
        if len(history) - history.start_from < self.window:
            return None
        values, sign = history.values, history.mode.sign
        points = [
            (float(x), sign * values[x])
            for x in range(len(values) - self.window, len(values))
            if math.isfinite(values[x])
        ]
        if len(points) < 3:
            return None
        t_stat = _slope_t(points)
        critical = student_t_quantile(self.confidence, len(points) - 2)
        if t_stat <= -critical:
            return None
        return (
            f"{self.spec()} (slope t={t_stat:.3g} > -{critical:.3g} "
            f"at {100 * self.confidence:.3g}%)"
        )

    def spec(self) -> str:
        """The SPEC token (the confidence is written separately as ``confidence=C``)."""
        return f"plateau={self.window}"


def _slope_t(points: Sequence[tuple[float, float]]) -> float:
    """t statistic of the least-squares slope (``-inf``/``inf``/0 on an exact fit)."""
    n = len(points)
    mean_x = math.fsum(x for x, _ in points) / n
    mean_y = math.fsum(y for _, y in points) / n
    sxx = math.fsum((x - mean_x) ** 2 for x, _ in points)
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx
    residual = math.fsum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in points)
    stderr = math.sqrt(residual / (n - 2) / sxx)
    scale = max(abs(y) for _, y in points) or 1.0
    if stderr <= 1e-12 * scale:
        return 0.0 if abs(slope) <= 1e-12 * scale else math.copysign(math.inf, slope)
    return slope / stderr


@dataclass
class _RunningBest:
    """Best counted value and its 1-based step by the improvement rule, for one history."""

    values: list[float] | None = None
    start: int = 0
    seen: int = 0
    best: float | None = None
    step: int | None = None


@dataclass(frozen=True)
class AdaptivePatience:
    """Patience that grows with progress: the later the best evaluation, the longer the wait.

    Stop when the evaluations since the best one reach
    ``max(min_patience, ceil(fraction * best_step))``, where ``best_step`` is the 1-based
    evaluation of the best value (warm-up evaluations included in the numbering, as in
    :attr:`Decision.best_step`). A run whose best came at evaluation 10 is stopped after
    ``min_patience`` evaluations without improvement; one still improving at evaluation
    100 gets ``ceil(fraction * 100)``. The best is found with the :class:`Stopper`'s
    improvement rule: finite and better than the best so far (``baseline`` before the
    first improvement) by more than ``max(min_delta, min_rel_delta * |best|)``; ties never
    improve. Give it the stopper's deltas and baseline (a SPEC policy does) and its best
    step is the stopper's. Before any improvement, the count runs from the last warm-up
    evaluation (``best_step = start_from``). Non-finite values never improve and count as
    evaluations without improvement (``on_nonfinite`` decides first). Checked at every
    evaluation; O(1) per evaluation (the best is cached like ``GL``'s minimum). Works in
    both modes. The product ``fraction * best_step`` is rounded up, a product within 1e-9
    of an integer counting as that integer (``0.3 * 10`` is 3, not 4).

    With ``patience=P`` on the stopper as well, ``P`` is a ceiling: the wait is at most
    ``P`` whatever the fraction asks.

    Args:
        fraction: allowed wait per evaluation of progress (``>= 0``).
        min_patience: the least wait, for a best that comes early (``>= 1``).
        min_delta, min_rel_delta, baseline: the stopper's improvement rule.

    >>> from earlystop import History, Mode
    >>> values = [1.0] + [0.9 - 0.01 * i for i in range(19)] + [0.8] * 6
    >>> AdaptivePatience(0.3, min_patience=3)(History(Mode.MIN, values=values))
    'adaptive=0.3 (no improvement for 6 evaluations >= max(3, ceil(0.3 * 20)); best at 20)'
    """

    fraction: float
    min_patience: int = 1
    min_delta: float = 0.0
    min_rel_delta: float = 0.0
    baseline: float | None = None
    _best: _RunningBest = field(default_factory=_RunningBest, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fraction", _check_alpha("fraction", self.fraction))
        _check_int("min_patience", self.min_patience, 1)
        object.__setattr__(self, "min_delta", check_delta("min_delta", self.min_delta))
        object.__setattr__(self, "min_rel_delta", check_delta("min_rel_delta", self.min_rel_delta))
        object.__setattr__(self, "baseline", check_threshold("baseline", self.baseline))

    def best_step(self, history: History) -> int | None:
        """The 1-based step of the best counted value, ``None`` before any improvement."""
        cache, values = self._best, history.values
        if (
            values is not cache.values
            or history.start_from != cache.start
            or cache.seen > len(values)
        ):
            cache.values, cache.start = values, history.start_from
            cache.seen, cache.best, cache.step = history.start_from, None, None
        sign, best, step = history.mode.sign, cache.best, cache.step
        for index in range(max(cache.seen, cache.start), len(values)):
            value = values[index]
            if not math.isfinite(value):
                continue
            reference = best if best is not None else self.baseline
            if reference is None:  # the first finite value improves without a baseline
                best, step = value, index + 1
                continue
            margin = max(self.min_delta, self.min_rel_delta * abs(reference))
            if sign * (reference - value) > margin:
                best, step = value, index + 1
        cache.seen, cache.best, cache.step = len(values), best, step
        return step

    def required(self, best_step: int) -> int:
        """The wait allowed after a best at ``best_step``.

        >>> AdaptivePatience(0.3, min_patience=5).required(10), AdaptivePatience(0.3).required(40)
        (5, 12)
        """
        return max(self.min_patience, math.ceil(self.fraction * best_step - 1e-9))

    def __call__(self, history: History) -> str | None:
        if len(history) <= history.start_from:
            return None
        step = self.best_step(history)
        anchor = history.start_from if step is None else step
        wait, required = len(history) - anchor, self.required(anchor)
        if wait < required:
            return None
        best = "no improvement yet" if step is None else f"best at {step}"
        return (
            f"{self.spec()} (no improvement for {wait} evaluations >= max({self.min_patience}, "
            f"ceil({spec_number(self.fraction)} * {anchor})); {best})"
        )

    def spec(self) -> str:
        """The SPEC token (the floor is written separately as ``min_patience=K``)."""
        return f"adaptive={spec_number(self.fraction)}"


# -- Student's t quantile, without scipy ------------------------------------------------


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def _regularized_beta(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: int) -> float:
    """``P(T > t)`` for Student's t with ``df`` degrees of freedom.

    >>> round(student_t_sf(0.0, 5), 12)
    0.5
    """
    tail = 0.5 * _regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


@functools.lru_cache(maxsize=256)
def student_t_quantile(probability: float, df: int) -> float:
    """The ``t`` with ``P(T <= t) = probability`` (``probability`` in (0.5, 1)), by bisection.

    >>> round(student_t_quantile(0.975, 10), 4)
    2.2281
    """
    low, high = 0.0, 1.0
    while student_t_sf(high, df) > 1.0 - probability:
        low, high = high, high * 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if student_t_sf(middle, df) > 1.0 - probability:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * high:
            break
    return 0.5 * (low + high)
