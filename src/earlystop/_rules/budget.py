"""Budget awareness: a patience floor scaled by the evaluation budget of the run.

A run planned for 1000 evaluations and one planned for 50 should not wait the same 20
evaluations after their best: :class:`BudgetPatience` waits ``ceil(fraction * max_epochs)``
(at least ``min_patience``). The budget is what the user gives as ``max_epochs`` (to
:meth:`earlystop.Stopper.from_policy`, :class:`earlystop.EarlyStopping` or
:meth:`earlystop.Policy.build`; replay gives each run's number of evaluations); it counts
evaluations, so a run evaluated every k steps gives the number of evaluations it plans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .._core.history import History
from .._core.options import check_delta, check_threshold
from .criteria import AdaptivePatience
from .numbers import spec_number

__all__ = ["BudgetPatience"]


@dataclass(frozen=True)
class BudgetPatience:
    """Stop when the evaluations since the best reach ``max(min_patience, ceil(fraction *
    max_epochs))``.

    The best is found with the stopper's improvement rule (give it the stopper's deltas
    and baseline; a SPEC policy does), as in :class:`~earlystop.AdaptivePatience`: before
    any improvement the count runs from the last warm-up evaluation. A product within
    1e-9 of an integer counts as that integer.

    Args:
        fraction: the wait as a share of the budget (``>= 0``).
        max_epochs: the budget, in evaluations (``>= 1``).
        min_patience: the least wait (``>= 1``).
        min_delta, min_rel_delta, baseline: the stopper's improvement rule.

    >>> from earlystop import History, Mode
    >>> rule = BudgetPatience(0.05, max_epochs=100)  # waits 5
    >>> rule(History(Mode.MIN, values=[1.0, 0.5, 0.6, 0.6, 0.7, 0.6, 0.6]))
    'budget=0.05 (no improvement for 5 evaluations >= max(1, ceil(0.05 * 100)); best at 2)'
    """

    fraction: float
    max_epochs: int
    min_patience: int = 1
    min_delta: float = 0.0
    min_rel_delta: float = 0.0
    baseline: float | None = None
    _best: AdaptivePatience = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fraction = self.fraction
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not math.isfinite(fraction)
            or fraction < 0
        ):
            raise ValueError(f"`fraction` must be a finite float >= 0, got {fraction!r}")
        object.__setattr__(self, "fraction", float(fraction))
        for name in ("max_epochs", "min_patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
        object.__setattr__(self, "min_delta", check_delta("min_delta", self.min_delta))
        object.__setattr__(self, "min_rel_delta", check_delta("min_rel_delta", self.min_rel_delta))
        object.__setattr__(self, "baseline", check_threshold("baseline", self.baseline))
        best = AdaptivePatience(
            0.0,
            min_patience=self.min_patience,
            min_delta=self.min_delta,
            min_rel_delta=self.min_rel_delta,
            baseline=self.baseline,
        )
        object.__setattr__(self, "_best", best)

    @property
    def wait(self) -> int:
        """The evaluations without improvement that stop."""
        return max(self.min_patience, math.ceil(self.fraction * self.max_epochs - 1e-9))

    def __call__(self, history: History) -> str | None:
        if len(history) <= history.start_from:
            return None
        step = self._best.best_step(history)
        anchor = history.start_from if step is None else step
        waited = len(history) - anchor
        if waited < self.wait:
            return None
        best = "no improvement yet" if step is None else f"best at {step}"
        return (
            f"{self.spec()} (no improvement for {waited} evaluations >= max({self.min_patience}, "
            f"ceil({spec_number(self.fraction)} * {self.max_epochs})); {best})"
        )

    def spec(self) -> str:
        """The SPEC token (the budget is not part of the SPEC: it is given at build)."""
        return f"budget={spec_number(self.fraction)}"
