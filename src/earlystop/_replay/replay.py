"""Replay stopping policies on recorded learning curves and score them.

The definitions are fixed so that figures are comparable across corpora. For one policy
and one run with ``n`` recorded evaluations:

- the policy sees only the values up to the current evaluation; ``s`` is the evaluation
  where it stops (``n`` when it never does);
- the kept evaluation ``k`` is the best validation value among ``1..s`` (ties: the
  earliest; non-finite values are never best); the reference ``r`` is the same rule
  applied to the whole run.

Over the runs:

- ``mean_cost``: mean of ``s / n``;
- ``mean_regret``, ``p90_regret``: mean and 90th percentile (linear interpolation) of
  ``test_loss[k] - test_loss[r]``;
- ``mean_rel_regret``: mean of ``(test_loss[k] - test_loss[r]) / test_loss[r]`` clipped
  to ``[-1, 1]`` (``1`` when ``test_loss[k]`` is not finite), as a fraction. Runs whose
  ``test_loss[r]`` is not a finite positive number are left out of the three regret
  figures and counted in ``left_out``;
- ``mean_acc_regret``: mean of ``100 * (test_acc[r] - test_acc[k])`` in points, over the
  runs with accuracy (a finite ``test_acc[r]``; a non-finite ``test_acc[k]`` counts as 0);
- ``fail_rate``: share of the runs with accuracy whose accuracy regret exceeds 0.5 point;
- ``mean_loss_regret``: mean of ``max(0, rel)`` over the runs with a relative regret
  ``rel`` (clipped to 1 as above): only losses count, so a few lucky early stops with a
  lower test loss than the reference cannot hide real losses elsewhere;
- ``share_loss_over_1pct``: share of those runs whose ``rel`` exceeds 0.01 (the kept
  evaluation's test loss is more than 1% above the reference's).

The ``oracle`` (:func:`oracle_outcomes`) stops every run at its reference ``r``: cost
``r / n`` and no regret, the frontier no policy that sees only the past can beat.

A figure with no run to average is ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .._core.options import Mode, parse_enum
from .curves import Curve

if TYPE_CHECKING:
    from .._core.stopper import Stopper

__all__ = [
    "FAIL_POINTS",
    "LOSS_SHARE_LEVEL",
    "ORACLE",
    "Buildable",
    "Outcome",
    "Summary",
    "best_evaluation",
    "oracle_outcomes",
    "oracle_summary",
    "outcome_at",
    "pareto_front",
    "replay",
    "replay_run",
    "stop_evaluation",
    "summarize",
]

#: An accuracy regret above this many points counts as a failure.
FAIL_POINTS = 0.5
#: ``share_loss_over_1pct`` counts the runs whose relative regret exceeds this.
LOSS_SHARE_LEVEL = 0.01
#: The name of the oracle row (see :func:`oracle_outcomes`).
ORACLE = "oracle"
_HIDDEN_PREFIX = "test_"  # columns a policy must never see


class Buildable(Protocol):
    """Anything that makes a fresh :class:`Stopper` per run (a parsed SPEC policy).

    When ``build`` also takes a ``max_epochs`` keyword (as :meth:`earlystop.Policy.build`
    does), replay passes the run's number of evaluations: the budget a budget-aware rule
    reads.
    """

    def build(self, mode: str = "min") -> Stopper: ...


def _takes_budget(policy: Buildable) -> bool:
    import inspect

    try:
        parameters = inspect.signature(policy.build).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover (builtins without a signature)
        return False
    return any(p.name == "max_epochs" or p.kind is p.VAR_KEYWORD for p in parameters)


@dataclass(frozen=True)
class Outcome:
    """One policy replayed on one run (evaluations are 1-based).

    Attributes:
        run: the run identifier.
        evaluations: ``n``, the evaluations recorded for the run.
        stop: ``s``, the evaluation where the policy stopped (``n`` if it never did).
        kept: ``k``, the best validation evaluation among ``1..s`` (``None``: none finite).
        reference: ``r``, the best validation evaluation of the whole run.
        regret: ``test_loss[k] - test_loss[r]``; ``None`` when the run is left out.
        rel_regret: the relative regret clipped to ``[-1, 1]``; ``None`` when left out.
        acc_regret: the accuracy regret in points; ``None`` without accuracy.
    """

    run: str
    evaluations: int
    stop: int
    kept: int | None
    reference: int | None
    regret: float | None
    rel_regret: float | None
    acc_regret: float | None

    @property
    def cost(self) -> float:
        """``s / n``, the share of the budget the policy trained for."""
        return self.stop / self.evaluations


@dataclass(frozen=True)
class Summary:
    """The figures of one policy over a set of runs (see the module docstring)."""

    policy: str
    runs: int
    mean_cost: float
    mean_regret: float
    p90_regret: float
    mean_rel_regret: float
    mean_acc_regret: float
    fail_rate: float
    left_out: int
    acc_runs: int
    mean_loss_regret: float = math.nan
    share_loss_over_1pct: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: non-finite figures become ``None`` (nan) or ``"inf"``."""
        return {key: _json_number(value) for key, value in asdict(self).items()}


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def best_evaluation(values: Sequence[float], upto: int, mode: Mode = Mode.MIN) -> int | None:
    """The 1-based evaluation of the best finite value among the first ``upto``.

    Ties go to the earliest; non-finite values are never best; ``None`` when none is finite.

    >>> best_evaluation([3.0, 1.0, float("nan"), 1.0, 2.0], 5)
    2
    >>> best_evaluation([float("nan")], 1) is None
    True
    """
    sign = mode.sign
    best: int | None = None
    best_value = math.inf
    for index in range(min(upto, len(values))):
        value = values[index]
        if math.isfinite(value) and (best is None or sign * (best_value - value) > 0):
            best, best_value = index + 1, value
    return best


def stop_evaluation(
    policy: Buildable, curve: Curve, monitor: str = "val_loss", mode: Mode = Mode.MIN
) -> int:
    """``s``: the 1-based evaluation where ``policy`` stops on ``curve`` (``n`` if never).

    The stopper is fed the ``monitor`` column as its value and every other column whose
    name does not start with ``test_`` as a metric (``train_loss``, ``lr``, ...).

    Raises:
        ValueError: when the policy rejects a value (GL on a non-positive loss), naming
            the run and the evaluation.
    """
    values = curve.series(monitor)
    visible = [
        name
        for name in curve.columns
        if name != monitor and name != "value" and not name.startswith(_HIDDEN_PREFIX)
    ]
    series = [curve.columns[name] for name in visible]
    stopper = (
        policy.build(mode=mode.value, max_epochs=len(values))  # type: ignore[call-arg]
        if _takes_budget(policy)
        else policy.build(mode=mode.value)
    )
    for index, value in enumerate(values):
        metrics = {name: column[index] for name, column in zip(visible, series, strict=True)}
        try:
            decision = stopper.step(value, **metrics)
        except ValueError as error:
            raise ValueError(f"run {curve.run!r}, evaluation {index + 1}: {error}") from error
        if decision.should_stop:
            return index + 1
    return len(values)


def replay_run(
    policy: Buildable, curve: Curve, monitor: str = "val_loss", mode: Mode = Mode.MIN
) -> Outcome:
    """Replay ``policy`` on one run and measure it against the run's best evaluation."""
    return outcome_at(curve, stop_evaluation(policy, curve, monitor, mode), monitor, mode)


def outcome_at(
    curve: Curve, stop: int, monitor: str = "val_loss", mode: Mode = Mode.MIN
) -> Outcome:
    """The :class:`Outcome` of stopping ``curve`` at evaluation ``stop`` (1-based)."""
    n = len(curve)
    if not 1 <= stop <= n:
        raise ValueError(f"`stop` must be in 1..{n} for run {curve.run!r}, got {stop}")
    values = curve.series(monitor)
    kept = best_evaluation(values, stop, mode)
    reference = best_evaluation(values, n, mode)
    regret = rel_regret = acc_regret = None
    test_loss = curve.columns.get("test_loss")
    if test_loss is not None and reference is not None:
        ref_loss = test_loss[reference - 1]
        if math.isfinite(ref_loss) and ref_loss > 0:
            kept_loss = math.inf if kept is None else test_loss[kept - 1]
            if not math.isfinite(kept_loss):
                kept_loss = math.inf
            regret = kept_loss - ref_loss
            rel_regret = 1.0 if math.isinf(kept_loss) else min(1.0, max(-1.0, regret / ref_loss))
    test_acc = curve.columns.get("test_acc")
    if test_acc is not None and reference is not None and math.isfinite(test_acc[reference - 1]):
        kept_acc = 0.0 if kept is None else test_acc[kept - 1]
        if not math.isfinite(kept_acc):
            kept_acc = 0.0
        acc_regret = 100.0 * (test_acc[reference - 1] - kept_acc)
    return Outcome(curve.run, n, stop, kept, reference, regret, rel_regret, acc_regret)


def summarize(policy: str, outcomes: Iterable[Outcome]) -> Summary:
    """Aggregate per-run outcomes into the figures of the module docstring."""
    items = list(outcomes)
    import numpy as np

    regrets = np.array([o.regret for o in items if o.regret is not None], dtype=float)
    rel = [o.rel_regret for o in items if o.rel_regret is not None]
    acc = [o.acc_regret for o in items if o.acc_regret is not None]
    return Summary(
        policy=policy,
        runs=len(items),
        mean_cost=_mean([o.cost for o in items]),
        mean_regret=_mean(regrets.tolist()),
        p90_regret=_percentile(regrets.tolist(), 90),
        mean_rel_regret=_mean(rel),
        mean_acc_regret=_mean(acc),
        fail_rate=_mean([1.0 if a > FAIL_POINTS else 0.0 for a in acc]),
        left_out=sum(1 for o in items if o.regret is None),
        acc_runs=len(acc),
        mean_loss_regret=_mean([max(0.0, r) for r in rel]),
        share_loss_over_1pct=_mean([1.0 if r > LOSS_SHARE_LEVEL else 0.0 for r in rel]),
    )


def oracle_outcomes(
    curves: Sequence[Curve], monitor: str = "val_loss", mode: str | Mode = Mode.MIN
) -> list[Outcome]:
    """The outcomes of stopping every run at its best validation evaluation ``r``.

    It needs the whole run (it looks ahead), so it is a yardstick, not a policy: cost
    ``r / n``, regret 0. A run with no finite value is stopped at its last evaluation.
    """
    parsed = parse_enum("mode", mode, Mode)
    return [
        outcome_at(
            curve,
            best_evaluation(curve.series(monitor), len(curve), parsed) or len(curve),
            monitor,
            parsed,
        )
        for curve in curves
    ]


def oracle_summary(
    curves: Sequence[Curve], monitor: str = "val_loss", mode: str | Mode = Mode.MIN
) -> Summary:
    """The :class:`Summary` of :func:`oracle_outcomes`, named :data:`ORACLE`."""
    return summarize(ORACLE, oracle_outcomes(curves, monitor, mode))


def _percentile(values: Sequence[float], q: float) -> float:
    """numpy's default (linear) percentile, where an infinite neighbour gives ``inf``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    weight = position - low
    if (math.isinf(ordered[high]) and weight > 0) or math.isinf(ordered[low]):
        return ordered[high] if weight > 0 else ordered[low]
    return ordered[low] + weight * (ordered[high] - ordered[low])


def _mean(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    if any(math.isinf(v) for v in values):
        return float(sum(v for v in values))  # inf (or nan for inf - inf)
    import numpy as np

    return float(np.mean(values))


def replay(
    policies: Sequence[tuple[str, Buildable]],
    curves: Sequence[Curve],
    monitor: str = "val_loss",
    mode: str | Mode = Mode.MIN,
) -> list[Summary]:
    """Replay every named policy on every run; one :class:`Summary` per policy, in order.

    Raises:
        KeyError: when a run has no ``monitor`` column (the message lists the columns).
    """
    parsed = parse_enum("mode", mode, Mode)
    return [
        summarize(name, (replay_run(policy, curve, monitor, parsed) for curve in curves))
        for name, policy in policies
    ]


def pareto_front(summaries: Sequence[Summary]) -> list[Summary]:
    """The summaries no other one beats on both ``mean_cost`` and ``mean_rel_regret``.

    Sorted by cost. A summary with a ``nan`` figure is never on the front.
    """
    finite = [
        s for s in summaries if math.isfinite(s.mean_cost) and math.isfinite(s.mean_rel_regret)
    ]
    front: list[Summary] = []
    for s in sorted(finite, key=lambda s: (s.mean_cost, s.mean_rel_regret)):
        if not front or s.mean_rel_regret < front[-1].mean_rel_regret:
            front.append(s)
    return front
