"""``earlystop replay``: score stopping policies on recorded learning curves."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._replay.curves import Curve, CurvesError
from .._replay.replay import Summary, oracle_summary, summarize
from .._replay.report import format_table, replay_footer
from .._replay.tune import outcomes_for
from .common import (
    CliError,
    add_common,
    expansion_lines,
    load_curves,
    mode_of,
    named_policies,
    plot_target,
)

__all__ = ["add_arguments", "group_by", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``earlystop replay``."""
    parser.add_argument("curves", metavar="CURVES", help="curves CSV file (.gz accepted)")
    parser.add_argument(
        "--policy",
        metavar="SPEC",
        action="append",
        required=True,
        help="a stopping policy, e.g. patience=7 or ema=0.3,patience=5 (repeatable)",
    )
    add_common(parser)
    parser.add_argument(
        "--by",
        metavar="LABEL",
        help="report per value of a text column of the curves (e.g. task), then overall",
    )
    parser.add_argument("--plot", metavar="FILE", help="save a cost-vs-regret figure (PNG)")


def group_by(curves: list[Curve], label: str, source: str) -> list[tuple[str, list[Curve]]]:
    """The runs per value of the text column ``label``, values in order of appearance.

    Raises:
        CurvesError: when the column is missing, numeric, or changes within a run.
    """
    first = curves[0]
    if label not in first.labels:
        numeric = " (it holds numbers)" if label in first.columns else ""
        known = ", ".join(sorted(first.labels)) or "none"
        raise CurvesError(
            f"{source}: --by {label}: no text column {label!r}{numeric}; text columns: {known}"
        )
    groups: dict[str, list[Curve]] = {}
    for curve in curves:
        try:
            value = curve.label(label)
        except ValueError as error:
            raise CurvesError(f"{source}: --by {label}: {error}") from None
        groups.setdefault(value, []).append(curve)
    return list(groups.items())


def run(args: argparse.Namespace) -> int:
    """``earlystop replay``."""
    plot = plot_target(args.plot) if args.plot else None
    policies, expansions = named_policies(args.policy)
    curves = load_curves(args)
    mode = mode_of(args)
    sections: list[tuple[str | None, list[Curve]]] = [(None, curves)]
    if args.by is not None:
        sections = [*group_by(curves, args.by, args.curves), (None, curves)]
    results: list[tuple[str | None, list[Summary]]] = []
    for value, runs in sections:
        outcomes = outcomes_for(policies, runs, args.monitor, mode)
        summaries = [summarize(name, found) for name, found in outcomes.items()]
        summaries.append(oracle_summary(runs, args.monitor, mode))  # the frontier
        results.append((value, summaries))

    if args.json:
        rows: list[dict[str, Any]] = []
        for value, summaries in results:
            for summary in summaries:
                row = {**summary.to_dict(), "spec": expansions.get(summary.policy, summary.policy)}
                if args.by is not None:
                    row["by"] = {args.by: value}  # None: all runs
                rows.append(row)
        print(json.dumps(rows, indent=2))
    else:
        for value, summaries in results:
            if args.by is not None:
                head = "all runs" if value is None else f"{args.by}={value or '(empty)'}"
                print(f"{head} ({summaries[0].runs} runs):")
            print(format_table(summaries))
            if args.by is not None:
                print()
        if not args.quiet:
            overall = results[-1][1][0]
            footer = replay_footer(overall, args.curves, args.monitor, mode.value)
            print(footer if args.by is not None else f"\n{footer}")
            for line in expansion_lines(expansions):
                print(line)
    if plot is not None:
        from .._replay.plot import plot_summaries

        every = [
            s if value is None else _renamed(s, f"{s.policy} [{args.by}={value}]")
            for value, summaries in results
            for s in summaries
        ]
        try:
            plot_summaries(every, plot)
        except OSError as error:
            raise CliError(f"--plot {plot}: cannot write the figure ({error})") from None
        if not args.json and not args.quiet:
            print(f"figure saved to {plot}")
    return 0


def _renamed(summary: Summary, name: str) -> Summary:
    return Summary(**{**summary.__dict__, "policy": name})
