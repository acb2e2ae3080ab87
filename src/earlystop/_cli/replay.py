"""``earlystop replay``: score stopping policies on recorded learning curves."""

from __future__ import annotations

import argparse
import json
import sys

from .._replay.plot import plot_summaries
from .._replay.replay import oracle_summary, summarize
from .._replay.report import format_table
from .._replay.tune import load_policy, outcomes_for
from .common import add_common, load_curves, mode_of

__all__ = ["add_arguments", "run"]


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
    parser.add_argument("--plot", metavar="FILE", help="save a cost-vs-regret figure (PNG)")


def run(args: argparse.Namespace) -> int:
    """``earlystop replay``."""
    try:
        policies = [load_policy(spec) for spec in args.policy]
        curves = load_curves(args)
        mode = mode_of(args)
        summaries = [
            summarize(name, outcomes)
            for name, outcomes in outcomes_for(policies, curves, args.monitor, mode).items()
        ]
        summaries.append(oracle_summary(curves, args.monitor, mode))  # the frontier
    except (ValueError, OSError) as error:
        print(f"earlystop replay: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
    else:
        print(format_table(summaries))
        first = summaries[0]
        print(
            f"\n{first.runs} runs from {args.curves}, monitoring {args.monitor} ({mode.value}); "
            f"{first.left_out} left out of the regret figures (test_loss at the reference not "
            f"a finite positive number); {first.acc_runs} with accuracy."
        )
    if args.plot:
        plot_summaries(summaries, args.plot)
        if not args.json:
            print(f"figure saved to {args.plot}")
    return 0
