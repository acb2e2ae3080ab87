"""``tune``: choose a stopping policy by cross-validation over recorded runs.

The recommendation is the cheapest candidate whose mean relative regret (and, optionally,
failure rate) stays under a bound; the figures printed with it were measured on runs the
choice was not made on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .._core.options import Mode
from .._rules.policy import parse_policy
from .curves import Curve
from .replay import Buildable, Outcome, Summary, replay_run, summarize

__all__ = [
    "DEFAULT_CANDIDATES",
    "Fold",
    "TuneResult",
    "cross_validate",
    "load_policy",
    "outcomes_for",
    "patience_guidance",
    "select",
]


#: The policies ``tune`` compares when none are given.
DEFAULT_CANDIDATES: tuple[str, ...] = (
    *(f"patience={p}" for p in (1, 2, 3, 5, 7, 10, 15, 20, 30)),
    *(f"ema=0.3,patience={p}" for p in (3, 5, 10, 15)),
    *(f"median=5,patience={p}" for p in (5, 10)),
    "gl=2",
    "gl=5",
    "pq=1",
    "up=2",
    "up=3",
    "plateau=10",
    "plateau=20",
    "auto",
)


def load_policy(spec: str) -> tuple[str, Buildable]:
    """Parse a SPEC; returns its canonical text and the policy.

    Raises:
        ValueError: naming the bad token.
    """
    policy = parse_policy(spec)
    return str(policy), policy


def outcomes_for(
    policies: Sequence[tuple[str, Buildable]], curves: Sequence[Curve], monitor: str, mode: Mode
) -> dict[str, list[Outcome]]:
    """Replay every policy on every run once; outcomes by canonical policy text."""
    return {
        name: [replay_run(policy, curve, monitor, mode) for curve in curves]
        for name, policy in policies
    }


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold: what was chosen without its runs, and how it did on them."""

    index: int
    chosen: str
    selection: Summary
    held_out: Summary


@dataclass(frozen=True)
class TuneResult:
    """The recommendation and its evidence.

    Attributes:
        recommended: the policy chosen on all runs.
        max_regret: the bound on ``mean_rel_regret``.
        max_fail: the bound on ``fail_rate`` (1.0: none).
        candidates: every candidate's figures on all runs (in candidate order).
        folds: per fold, the choice made without the fold and its figures on the fold.
        cross_validated: every run scored by the policy chosen without that run.
    """

    recommended: str
    max_regret: float
    max_fail: float
    candidates: list[Summary]
    folds: list[Fold]
    cross_validated: Summary


def select(summaries: Sequence[Summary], max_regret: float, max_fail: float = 1.0) -> str:
    """The cheapest policy with ``mean_rel_regret <= max_regret`` and ``fail_rate <= max_fail``.

    A ``nan`` failure rate (no run with accuracy) does not disqualify.

    Ties on cost go to the lower regret; when none qualifies, the lowest regret wins.
    """
    ok = [
        s
        for s in summaries
        if s.mean_rel_regret <= max_regret and not s.fail_rate > max_fail  # nan passes
    ]
    if ok:
        return min(ok, key=lambda s: (s.mean_cost, s.mean_rel_regret)).policy
    ranked = [s for s in summaries if not math.isnan(s.mean_rel_regret)] or list(summaries)
    return min(ranked, key=lambda s: (s.mean_rel_regret, s.mean_cost)).policy


def _groups(runs: Sequence[str], depth: int) -> list[str]:
    if depth <= 0:
        return list(runs)
    return ["/".join(run.split("/")[:depth]) for run in runs]


def cross_validate(
    outcomes: dict[str, list[Outcome]],
    max_regret: float,
    folds: int = 5,
    max_fail: float = 1.0,
    seed: int = 0,
    group_depth: int = 0,
) -> TuneResult:
    """Choose a policy by K-fold cross-validation over runs.

    Args:
        outcomes: per candidate, its outcome on every run (same run order for all).
        max_regret: the bound on ``mean_rel_regret`` (a fraction, 0.01 is 1%).
        folds: number of folds (at most the number of groups).
        max_fail: the bound on ``fail_rate`` (a fraction; 1.0 puts none).
        seed: seed of the random assignment of groups to folds.
        group_depth: runs whose names share their first ``group_depth`` ``/``-separated
            parts stay in one fold (``0``: every run is its own group).

    Raises:
        ValueError: for no candidates, fewer than 2 groups, or a bad ``folds``.
    """
    if not outcomes:
        raise ValueError("`outcomes` must hold at least one candidate")
    names = list(outcomes)
    runs = [o.run for o in outcomes[names[0]]]
    groups = _groups(runs, group_depth)
    unique = sorted(set(groups))
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"`folds` must be an int >= 2, got {folds!r}")
    if len(unique) < 2:
        raise ValueError(f"cross-validation needs at least 2 groups of runs, got {len(unique)}")
    folds = min(folds, len(unique))
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_group = {unique[g]: i % folds for i, g in enumerate(order)}
    fold_of_run = [fold_of_group[g] for g in groups]

    def figures(name: str, keep: Sequence[bool]) -> Summary:
        return summarize(name, (o for o, k in zip(outcomes[name], keep, strict=True) if k))

    result_folds: list[Fold] = []
    held_outcomes: list[Outcome] = []
    for index in range(folds):
        inside = [f != index for f in fold_of_run]
        chosen = select([figures(name, inside) for name in names], max_regret, max_fail)
        held_mask = [not k for k in inside]
        result_folds.append(
            Fold(index + 1, chosen, figures(chosen, inside), figures(chosen, held_mask))
        )
        held_outcomes.extend(o for o, k in zip(outcomes[chosen], held_mask, strict=True) if k)
    everything = [summarize(name, outcomes[name]) for name in names]
    return TuneResult(
        recommended=select(everything, max_regret, max_fail),
        max_regret=max_regret,
        max_fail=max_fail,
        candidates=everything,
        folds=result_folds,
        cross_validated=summarize("cross-validated choice", held_outcomes),
    )


#: the training-set size up to which the committed corpus gives evidence
GUIDANCE_MEASURED_UP_TO = 10_000


def patience_guidance(samples: int) -> tuple[int, int]:
    """A starting range for patience by training-set size, as ``(low, high)``.

    Under 10k samples it is what the committed corpus measured (400 runs of 98 to 2,200
    training samples, ``docs/stopping.md``): patience 3-5 lose more than 0.5 accuracy point
    on 3-8% of the runs, 7-10 on 0.3-0.6% of them at 34-38% of the budget, and
    ``earlystop tune --max-regret 0.005 --max-fail-rate 0.01`` recommends 7. The corpus
    holds no larger run, so from 10k samples
    on the range is a patient guess (10-20), not a measurement. Either way, replay your
    own curves with ``earlystop tune`` when you have them.

    >>> patience_guidance(5_000), patience_guidance(50_000)
    ((7, 10), (10, 20))

    Raises:
        ValueError: when ``samples`` is not an int >= 1.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"`samples` must be an int >= 1, got {samples!r}")
    if samples < GUIDANCE_MEASURED_UP_TO:
        return 7, 10
    return 10, 20
