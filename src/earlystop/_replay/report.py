"""Text and JSON renderings of replay and tune results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .._rules.policy import AUTO_SPEC
from .replay import Summary
from .tune import TuneResult

__all__ = ["format_table", "format_tune", "replay_footer", "tune_to_dict"]


def _cell(value: float, spec: str) -> str:
    return "-".rjust(int(spec.split(".")[0])) if math.isnan(value) else format(value, spec)


def format_table(summaries: Sequence[Summary], marks: dict[str, str] | None = None) -> str:
    """A fixed-width table, one row per policy (cost and regrets as percentages).

    ``loss_regret%`` is ``mean_loss_regret`` and ``>1%`` is ``share_loss_over_1pct``.
    """
    width = max([len("policy"), *(len(s.policy) for s in summaries)]) + 2
    header = (
        f"{'policy':<{width}}{'runs':>5} {'cost%':>7} {'regret':>9} {'p90':>9} "
        f"{'rel_regret%':>12} {'acc_regret':>11} {'fail%':>7} {'loss_regret%':>13} {'>1%':>6}"
    )
    lines = [header, "-" * len(header)]
    for s in summaries:
        mark = (marks or {}).get(s.policy, "")
        lines.append(
            f"{s.policy + mark:<{width}}{s.runs:>5} {_cell(100 * s.mean_cost, '7.1f')} "
            f"{_cell(s.mean_regret, '9.4f')} {_cell(s.p90_regret, '9.4f')} "
            f"{_cell(100 * s.mean_rel_regret, '12.2f')} {_cell(s.mean_acc_regret, '11.2f')} "
            f"{_cell(100 * s.fail_rate, '7.1f')} {_cell(100 * s.mean_loss_regret, '13.2f')} "
            f"{_cell(100 * s.share_loss_over_1pct, '6.1f')}"
        )
    if any(s.policy == "auto" for s in summaries):  # `auto` prints as auto; say what it is
        lines.append(f"auto = {AUTO_SPEC}")
    return "\n".join(lines)


def tune_to_dict(result: TuneResult) -> dict[str, Any]:
    return {
        "recommended": result.recommended,
        "max_regret": result.max_regret,
        "max_fail_rate": result.max_fail,
        "cross_validated": result.cross_validated.to_dict(),
        "folds": [
            {
                "fold": f.index,
                "chosen": f.chosen,
                "selection": f.selection.to_dict(),
                "held_out": f.held_out.to_dict(),
            }
            for f in result.folds
        ],
        "candidates": [s.to_dict() for s in result.candidates],
    }


def format_tune(result: TuneResult) -> str:
    """The recommendation followed by its evidence, as text."""
    bound = 100 * result.max_regret
    marks = {result.recommended: " *"}
    lines = [
        f"Candidates on all {result.candidates[0].runs} runs (* = recommended):",
        format_table(sorted(result.candidates, key=lambda s: s.mean_cost), marks),
        "",
        f"Cross-validation ({len(result.folds)} folds): each fold's runs are scored by the "
        "policy chosen on the other folds.",
        format_table(
            [
                Summary(**{**f.held_out.__dict__, "policy": f"fold {f.index}: {f.chosen}"})
                for f in result.folds
            ]
            + [result.cross_validated]
        ),
        "",
    ]
    cv = result.cross_validated
    within = cv.mean_rel_regret <= result.max_regret and not cv.fail_rate > result.max_fail
    fail_bound = f" and failure rate <= {100 * result.max_fail:g}%" if result.max_fail < 1 else ""
    fails = f" and {100 * cv.fail_rate:.1f}% failures" if fail_bound else ""
    lines.append(
        f"Recommended: {result.recommended}  (cheapest policy with mean relative regret <= "
        f"{bound:g}%{fail_bound} on all runs). On held-out runs the procedure trained "
        f"{100 * cv.mean_cost:.1f}% of the budget with {100 * cv.mean_rel_regret:.2f}% mean "
        f"relative regret{fails}, {'within' if within else 'ABOVE'} the bound."
    )
    return "\n".join(lines)


def replay_footer(summary: Summary, source: str, monitor: str, mode: str) -> str:
    """The note under a replay table: what was replayed, and what the figures leave out.

    Runs left out of the regret figures are named only when there are some.
    """
    parts = [f"{summary.runs} runs from {source}, monitoring {monitor} ({mode})"]
    parts.append(f"{summary.acc_runs} with accuracy" if summary.acc_runs else "none with accuracy")
    if summary.left_out:
        parts.append(
            f"{summary.left_out} left out of the regret figures (test_loss at the reference "
            "not a finite positive number)"
        )
    return "; ".join(parts) + "."
