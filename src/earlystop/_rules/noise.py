"""A noise-scaled delta: patience that counts only improvements larger than the noise.

A fixed ``min_delta`` is either too small for a noisy validation set (every wiggle
restarts patience) or too large for a smooth one (real progress is ignored).
:class:`NoiseDelta` measures the noise instead: the robust standard deviation of the
recent first differences,

    ``sigma(t) = 1.4826 * median(|d|) / sqrt(2)``, ``d`` the first differences of the
    last ``window`` finite counted values before evaluation ``t``,

(for independent Gaussian noise of deviation ``sigma`` this is ``sigma``: a difference of
two noisy values has deviation ``sqrt(2) * sigma`` and ``1.4826 * median(|d|)`` is a
robust estimate of it. The median absolute difference is not centred on the median
difference: on a zig-zag curve the centred MAD is 0. A steep descent inflates the
estimate, when the improvements are large anyway), and an evaluation improves
only when it beats the reference by more than ``scale * sigma(t)``. The reference moves
only on such an improvement (as :class:`~earlystop.Stopper`'s does with ``min_delta``).
It stops when ``patience`` evaluations in a row have not improved that way.

It is a function of the recorded history only; like ``AdaptivePatience`` it caches its
scan for the history it was built from, O(window log window) per evaluation.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from statistics import median

from .._core.history import History
from .numbers import spec_number

__all__ = ["NoiseDelta", "robust_noise"]

_MAD_TO_SIGMA = 1.4826


def robust_noise(values: list[float]) -> float:
    """The robust noise of ``values`` (see the module docstring); 0 for fewer than 4.

    >>> round(robust_noise([1.0, 1.1, 1.0, 1.1, 1.0, 1.1]), 4)  # 1.4826 * 0.1 / sqrt(2)
    0.1048
    >>> robust_noise([1.0, 1.0, 1.0, 1.0])
    0.0
    """
    if len(values) < 4:
        return 0.0
    spread = median(abs(b - a) for a, b in itertools.pairwise(values))
    return _MAD_TO_SIGMA * spread / math.sqrt(2.0)


@dataclass
class _Scan:
    values: list[float] | None = None
    start: int = 0
    seen: int = 0
    best: float | None = None
    step: int | None = None
    recent: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class NoiseDelta:
    """Stop after ``patience`` evaluations without an improvement larger than the noise.

    Args:
        scale: ``c``: an improvement must beat the reference by more than ``c * sigma``
            (``>= 0``; 0 is plain patience).
        patience: evaluations without such an improvement that stop (``>= 1``).
        window: the recent finite values the noise is measured on (``>= 4``).

    >>> from earlystop import History, Mode
    >>> noisy = [1.0, 0.9, 0.95, 0.88, 0.93, 0.87, 0.92]  # 0.87 is within the noise
    >>> NoiseDelta(1.0, patience=3, window=6)(History(Mode.MIN, values=noisy))
    'noise_delta=1 (no improvement > 1 x noise 0.0524 for 3 evaluations; best at 4)'
    """

    scale: float
    patience: int = 10
    window: int = 20
    _scan: _Scan = field(default_factory=_Scan, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale >= 0:
            raise ValueError(f"`scale` must be a finite float >= 0, got {scale!r}")
        if not math.isfinite(scale):
            raise ValueError(f"`scale` must be a finite float >= 0, got {scale!r}")
        object.__setattr__(self, "scale", float(scale))
        for name, least in (("patience", 1), ("window", 4)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"`{name}` must be an int >= {least}, got {value!r}")

    def best_step(self, history: History) -> int | None:
        """The 1-based step of the last improvement larger than the noise (``None``: none)."""
        scan, values = self._scan, history.values
        if values is not scan.values or history.start_from != scan.start or scan.seen > len(values):
            scan.values, scan.start, scan.seen = values, history.start_from, history.start_from
            scan.best, scan.step, scan.recent = None, None, []
        sign = history.mode.sign
        for index in range(max(scan.seen, scan.start), len(values)):
            value = values[index]
            if not math.isfinite(value):
                continue
            margin = 0.0 if scan.best is None else self.scale * robust_noise(scan.recent)
            if scan.best is None or sign * (scan.best - value) > margin:
                scan.best, scan.step = value, index + 1
            scan.recent.append(value)
            if len(scan.recent) > self.window:
                del scan.recent[0]
        scan.seen = len(values)
        return scan.step

    def __call__(self, history: History) -> str | None:
        if len(history) <= history.start_from:
            return None
        step = self.best_step(history)
        anchor = history.start_from if step is None else step
        wait = len(history) - anchor
        if wait < self.patience:
            return None
        noise = robust_noise(self._scan.recent)
        best = "no improvement yet" if step is None else f"best at {step}"
        return (
            f"{self.spec()} (no improvement > {spec_number(self.scale)} x noise {noise:.3g} "
            f"for {wait} evaluations; {best})"
        )

    def spec(self) -> str:
        """The SPEC token (patience and window are written as ``noise_patience``,
        ``noise_window``)."""
        return f"noise_delta={spec_number(self.scale)}"
