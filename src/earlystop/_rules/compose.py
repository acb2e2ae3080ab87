"""Composition: criteria combined with ``any_of``/``all_of``, and composite monitored values."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._core.history import Criterion, History, check_criterion
from .._core.values import to_float

__all__ = ["AllOf", "AnyOf", "Composite", "all_of", "any_of", "composite"]


def _check_members(name: str, criteria: Sequence[Any]) -> tuple[Criterion, ...]:
    if not criteria:
        raise ValueError(f"`{name}` needs at least one criterion, got none")
    return tuple(
        check_criterion(criterion, f"`{name}` argument {index}")
        for index, criterion in enumerate(criteria)
    )


def _member_spec(criterion: Criterion) -> str:
    spec = getattr(criterion, "spec", None)
    return str(spec()) if callable(spec) else type(criterion).__name__


@dataclass(frozen=True)
class AnyOf:
    """Stops when any member stops; the reason is the first member's (in order).

    Every member is called at every evaluation, so members that cache stay cheap.
    """

    criteria: tuple[Criterion, ...]

    def __call__(self, history: History) -> str | None:
        first: str | None = None
        for criterion in self.criteria:
            reason = criterion(history)
            if reason and first is None:
                first = str(reason)
        return first

    def spec(self) -> str:
        """The SPEC group ``any(...)`` (members without a ``spec()`` show their class name)."""
        return "any(" + ",".join(_member_spec(c) for c in self.criteria) + ")"


@dataclass(frozen=True)
class AllOf:
    """Stops when every member stops at the same evaluation; the reasons are joined by ``&``.

    Every member is called at every evaluation (no short-circuit), so members that cache
    stay cheap.
    """

    criteria: tuple[Criterion, ...]

    def __call__(self, history: History) -> str | None:
        reasons = [criterion(history) for criterion in self.criteria]
        if all(reasons):
            return " & ".join(str(reason) for reason in reasons)
        return None

    def spec(self) -> str:
        """The SPEC group ``all(...)``."""
        return "all(" + ",".join(_member_spec(c) for c in self.criteria) + ")"


def any_of(*criteria: Criterion) -> AnyOf:
    """A criterion that stops as soon as one of ``criteria`` does.

    >>> from earlystop import GL, UP
    >>> any_of(GL(2), UP(3)).spec()
    'any(gl=2,up=3)'
    """
    return AnyOf(_check_members("any_of", criteria))


def all_of(*criteria: Criterion) -> AllOf:
    """A criterion that stops only when all of ``criteria`` stop at the same evaluation.

    >>> from earlystop import GL, History, Mode, UP
    >>> all_of(GL(2), UP(1, strip=1))(History(Mode.MIN, values=[1.0, 1.1]))
    'gl=2 (GL 10% > 2%) & up=1 (worse at 1 successive strip ends)'
    """
    return AllOf(_check_members("all_of", criteria))


@dataclass(frozen=True)
class Composite:
    """A monitored value computed from several metrics by a user function.

    Call it with the metrics of one evaluation (a mapping or keywords); it passes the
    ``names`` it needs to ``function`` as keywords and returns a float. Feed the result
    to the stopper and the metrics alongside, so criteria can read them too (their names
    must differ from the monitored argument's: ``val_loss`` for ``EarlyStopping``,
    ``value`` for ``Stopper.step``)::

        score = composite(lambda loss, acc: loss - 0.5 * acc, "loss", "acc")
        metrics = {"loss": 0.4, "acc": 0.9}
        early_stopping(score(metrics), model, **metrics)

    :meth:`series` gives the composite over a recorded :class:`History` (for replays).
    """

    function: Callable[..., Any]
    names: tuple[str, ...]

    def __call__(self, metrics: Mapping[str, Any] | None = None, /, **more: Any) -> float:
        given = {**(metrics or {}), **more}
        missing = [name for name in self.names if name not in given]
        if missing:
            known = ", ".join(sorted(given)) or "none"
            raise KeyError(f"composite value needs metric {missing[0]!r}; given: {known}")
        return to_float(self.function(**{n: given[n] for n in self.names}), "composite value")

    def series(self, history: History) -> list[float]:
        """The composite at every recorded evaluation (``nan`` where a metric is ``nan``)."""
        columns = [history.series(name) for name in self.names]
        result: list[float] = []
        for row in zip(*columns, strict=True):
            if all(math.isfinite(v) for v in row):
                result.append(self(dict(zip(self.names, row, strict=True))))
            else:
                result.append(math.nan)
        return result


def composite(function: Callable[..., Any], *names: str) -> Composite:
    """Build a :class:`Composite` monitored value from ``function(**{name: metric})``.

    >>> score = composite(lambda val_loss, val_acc: val_loss - val_acc, "val_loss", "val_acc")
    >>> score(val_loss=0.5, val_acc=0.75)
    -0.25
    """
    if not callable(function):
        raise TypeError(f"`function` must be callable, got {type(function).__name__}")
    if not names:
        raise ValueError("`names` must name at least one metric, got none")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric names must be non-empty strings, got {name!r}")
    return Composite(function, tuple(names))
