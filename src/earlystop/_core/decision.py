"""The immutable result of one evaluation."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Decision", "StopReason"]


class StopReason(str, enum.Enum):
    """Why a built-in rule stops. Plug-in criteria may give any other string."""

    PATIENCE = "patience"
    STOPPING_THRESHOLD = "stopping_threshold"
    DIVERGENCE_THRESHOLD = "divergence_threshold"
    NON_FINITE = "non_finite"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Decision:
    """What the stopper concluded from one evaluation.

    Attributes:
        step: 1-based number of this evaluation (warm-up evaluations included).
        value: the monitored value, as a float.
        should_stop: whether training should stop now.
        improved: whether this evaluation became the new best.
        reason: why it stops (a :class:`StopReason` or a criterion's string); ``None``
            when it does not stop.
        best_value: the best value so far, ``None`` before the first improvement.
        best_step: the step of ``best_value``, ``None`` before the first improvement.
        wait: consecutive counted evaluations without improvement, this one included.
        detail: a human-readable explanation of the decision.
    """

    step: int
    value: float
    should_stop: bool
    improved: bool
    reason: str | None
    best_value: float | None
    best_step: int | None
    wait: int
    detail: str = ""

    def __bool__(self) -> bool:
        """A decision is truthy when training should stop."""
        return self.should_stop
