"""Scheduler awareness: read a learning-rate series from the history.

Training with ``torch.optim.lr_scheduler.ReduceLROnPlateau`` often plateaus just before
a reduction makes it improve again; stopping then wastes the reductions the schedule
still had. :class:`SchedulerAware` reads the learning rate that the loop records with
each evaluation (``step(value, lr=optimizer.param_groups[0]["lr"])``) and

* ``hold``: vetoes ``patience`` and the criteria while the scheduler could still reduce
  the rate, exactly as torch decides it: ``lr - max(lr * factor, min_lr) > eps``
  (non-finite values, ``divergence_threshold`` and ``stopping_threshold`` still stop).
  It assumes such a scheduler drives the rate: a constant rate above ``min_lr`` holds
  forever;
* ``restart``: counts patience from the last reduction: at an evaluation whose rate is
  lower than the previous evaluation's, the count of evaluations without improvement
  restarts (at 1 if it does not improve).

Both are pure functions of the recorded ``lr`` series, so resume and replay need no
scheduler object. Record the rate that produced the evaluated weights (read it before
``scheduler.step(val_loss)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .._core.history import History
from .numbers import spec_number

__all__ = ["SchedulerAware"]


@dataclass(frozen=True)
class SchedulerAware:
    """Make the patience rule aware of a ``ReduceLROnPlateau``-style learning-rate schedule.

    Args:
        hold: do not stop on patience or criteria while a reduction is still possible.
        restart: count patience from the last learning-rate reduction.
        min_lr: the scheduler's ``min_lr`` (one value: the recorded group's).
        factor: the scheduler's ``factor``.
        eps: the scheduler's ``eps`` (smaller reductions are not made).
        key: the metric holding the learning rate.

    >>> from earlystop import History, Mode
    >>> aware = SchedulerAware(min_lr=1e-3, factor=0.1)
    >>> aware.can_reduce(0.1), aware.can_reduce(1e-3)
    (True, False)
    """

    hold: bool = True
    restart: bool = False
    min_lr: float = 0.0
    factor: float = 0.1
    eps: float = 1e-8
    key: str = "lr"

    def __post_init__(self) -> None:
        for name in ("hold", "restart"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be a bool, got {getattr(self, name)!r}")
        if not (self.hold or self.restart):
            raise ValueError("`hold` and `restart` are both False: SchedulerAware would do nothing")
        _check_float("min_lr", self.min_lr, low=0.0)
        _check_float("eps", self.eps, low=0.0)
        factor = _check_float("factor", self.factor, low=0.0)
        if factor >= 1.0:
            raise ValueError(f"`factor` must be a float in [0, 1), got {self.factor!r}")
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"`key` must be a non-empty string, got {self.key!r}")

    @classmethod
    def from_scheduler(
        cls, scheduler: Any, *, hold: bool = True, restart: bool = False, key: str = "lr"
    ) -> SchedulerAware:
        """Read ``min_lr``, ``factor`` and ``eps`` from a torch ``ReduceLROnPlateau``.

        The first parameter group's ``min_lr`` is used: record that group's rate.
        """
        try:
            min_lrs, factor, eps = scheduler.min_lrs, scheduler.factor, scheduler.eps
        except AttributeError:
            raise TypeError(
                "`scheduler` must be a ReduceLROnPlateau (with min_lrs, factor and eps), "
                f"got {type(scheduler).__name__}"
            ) from None
        return cls(
            hold=hold,
            restart=restart,
            min_lr=float(min_lrs[0]),
            factor=float(factor),
            eps=float(eps),
            key=key,
        )

    def can_reduce(self, lr: float) -> bool:
        """Whether the scheduler would still lower ``lr`` (torch's own test)."""
        return lr - max(lr * self.factor, self.min_lr) > self.eps

    def holds(self, history: History) -> bool:
        """Whether stopping on patience or criteria is vetoed at the latest evaluation."""
        return self.hold and self.can_reduce(self._lr(history, len(history) - 1))

    def restarts(self, history: History) -> bool:
        """Whether the latest evaluation's rate is lower than the previous evaluation's."""
        if not self.restart or len(history) - history.start_from < 2:
            return False
        last = len(history) - 1
        return self._lr(history, last) < self._lr(history, last - 1)

    def _lr(self, history: History, index: int) -> float:
        lr = history.series(self.key)[index]
        if not math.isfinite(lr):
            raise ValueError(
                f"scheduler awareness needs the `{self.key}` metric at every evaluation, "
                f"got {lr} at evaluation {index + 1}"
            )
        return lr

    def spec(self) -> str:
        """The SPEC tokens of these settings (see :func:`earlystop.parse_policy`)."""
        tokens = []
        if self.hold:
            tokens.append(f"min_lr={spec_number(self.min_lr)}")
            if self.factor != 0.1:
                tokens.append(f"lr_factor={spec_number(self.factor)}")
        if self.restart:
            tokens.append("lr_restart=true")
        return ",".join(tokens)


def _check_float(name: str, value: object, *, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a finite float >= {low:g}, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or result < low:
        raise ValueError(f"`{name}` must be a finite float >= {low:g}, got {value!r}")
    return result
