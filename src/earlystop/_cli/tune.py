"""``earlystop tune``: recommend a stopping policy from curves, cross-validated."""

from __future__ import annotations

import argparse
import json
import sys

from .._replay.report import format_tune, tune_to_dict
from .._replay.tune import (
    DEFAULT_CANDIDATES,
    cross_validate,
    load_policy,
    outcomes_for,
    patience_guidance,
)
from .common import add_common, load_curves, mode_of

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``earlystop tune``."""
    parser.add_argument(
        "curves", metavar="CURVES", nargs="?", help="curves CSV file (.gz accepted)"
    )
    parser.add_argument(
        "--max-regret",
        type=float,
        default=0.01,
        metavar="R",
        help="bound on mean relative test-loss regret, as a fraction (default 0.01)",
    )
    parser.add_argument(
        "--max-fail-rate",
        type=float,
        default=1.0,
        metavar="F",
        help="bound on the share of runs losing more than 0.5 accuracy point (default: none)",
    )
    parser.add_argument(
        "--policy",
        metavar="SPEC",
        action="append",
        help="a candidate policy (repeatable; default: a built-in set)",
    )
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (5)")
    parser.add_argument(
        "--group-depth",
        type=int,
        default=0,
        metavar="D",
        help="keep runs sharing the first D '/'-parts of their name in one fold (0: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (0)")
    parser.add_argument(
        "--samples",
        type=int,
        metavar="N",
        help="without CURVES: print the patience guidance for N training samples",
    )
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    """``earlystop tune``."""
    if args.curves is None:
        if args.samples is None:
            print(
                "earlystop tune: error: give CURVES, or --samples N for guidance", file=sys.stderr
            )
            return 2
        try:
            low, high = patience_guidance(args.samples)
        except ValueError as error:
            print(f"earlystop tune: error: {error}", file=sys.stderr)
            return 2
        print(
            f"{args.samples} training samples: try patience {low}-{high} (rule of thumb: 3-5 "
            "under 10k samples, 5-10 up to 100k, 10-15 above). Record curves with "
            "earlystop.CurveRecorder and run `earlystop tune CURVES` for evidence."
        )
        return 0
    try:
        policies = [load_policy(spec) for spec in (args.policy or DEFAULT_CANDIDATES)]
        curves = load_curves(args)
        if not 0 <= args.max_regret <= 1:
            raise ValueError(f"`--max-regret` must be a fraction in [0, 1], got {args.max_regret}")
        if not 0 <= args.max_fail_rate <= 1:
            raise ValueError(
                f"`--max-fail-rate` must be a fraction in [0, 1], got {args.max_fail_rate}"
            )
        mode = mode_of(args)
        if args.policy:
            outcomes = outcomes_for(policies, curves, args.monitor, mode)
        else:  # a built-in candidate that does not apply (GL on a score) is skipped
            outcomes = {}
            for name, policy in policies:
                try:
                    outcomes.update(outcomes_for([(name, policy)], curves, args.monitor, mode))
                except ValueError as error:
                    print(f"earlystop tune: skipped {name}: {error}", file=sys.stderr)
        result = cross_validate(
            outcomes,
            args.max_regret,
            args.folds,
            args.max_fail_rate,
            seed=args.seed,
            group_depth=args.group_depth,
        )
    except (ValueError, OSError) as error:
        print(f"earlystop tune: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(tune_to_dict(result), indent=2))
    else:
        print(format_tune(result))
    return 0
