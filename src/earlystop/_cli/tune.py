"""``earlystop tune``: recommend a stopping policy from curves, cross-validated."""

from __future__ import annotations

import argparse
import json

from .._replay.curves import Curve
from .._replay.report import format_tune, tune_to_dict
from .._replay.tune import (
    DEFAULT_CANDIDATES,
    GUIDANCE_MEASURED_UP_TO,
    cross_validate,
    outcomes_for,
    patience_guidance,
)
from .common import (
    CliError,
    add_common,
    expansion_lines,
    load_curves,
    mode_of,
    named_policies,
    plot_target,
    warn,
)

__all__ = ["FEW_RUNS", "add_arguments", "run"]

#: below this many runs (or groups of runs), a recommendation comes with a warning
FEW_RUNS = 20


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
        help="without CURVES: a starting patience for N training samples, from the corpus",
    )
    add_common(parser)
    parser.add_argument(
        "--plot", metavar="FILE", help="save the candidates' cost-vs-regret figure (PNG)"
    )


def _guidance(args: argparse.Namespace) -> int:
    low, high = patience_guidance(args.samples)
    measured = args.samples < GUIDANCE_MEASURED_UP_TO
    if args.json:
        print(json.dumps({"samples": args.samples, "patience": [low, high], "measured": measured}))
    elif args.quiet:
        print(f"{low}-{high}")
    elif measured:
        print(
            f"{args.samples} training samples: try patience {low}-{high}. On the committed "
            "corpus (400 runs of 98-2,200 training samples, docs/stopping.md) patience 3-5 "
            "lost more than 0.5 accuracy point on 3-8% of the runs, 7-10 on 0.3-0.6% at "
            "34-38% of the budget. Record your curves with earlystop.CurveRecorder and run "
            "`earlystop tune CURVES` for evidence on your own runs."
        )
    else:
        print(
            f"{args.samples} training samples: try patience {low}-{high}, a patient guess: "
            "the committed corpus holds no run over 10k samples, so this is not measured. "
            "Record your curves with earlystop.CurveRecorder and run `earlystop tune CURVES`."
        )
    return 0


def run(args: argparse.Namespace) -> int:
    """``earlystop tune``."""
    if args.curves is None:
        if args.samples is None:
            raise CliError("give CURVES, or --samples N for guidance")
        return _guidance(args)
    if args.samples is not None:
        raise CliError("give CURVES or --samples N, not both")
    if not 0 <= args.max_regret <= 1:
        raise CliError(f"`--max-regret` must be a fraction in [0, 1], got {args.max_regret}")
    if not 0 <= args.max_fail_rate <= 1:
        raise CliError(f"`--max-fail-rate` must be a fraction in [0, 1], got {args.max_fail_rate}")
    if args.folds < 2:
        raise CliError(f"`--folds` must be an int >= 2, got {args.folds}")
    plot = plot_target(args.plot) if args.plot else None
    policies, expansions = named_policies(args.policy or list(DEFAULT_CANDIDATES))
    curves = load_curves(args)
    mode = mode_of(args)
    if args.policy:
        outcomes = outcomes_for(policies, curves, args.monitor, mode)
    else:  # a built-in candidate that does not apply (GL on a score) is skipped
        outcomes = {}
        for name, policy in policies:
            try:
                outcomes.update(outcomes_for([(name, policy)], curves, args.monitor, mode))
            except ValueError as error:
                warn("tune", f"skipped {name}: {error}")
    warnings = _evidence_warnings(len(curves), _groups(curves, args.group_depth), args.folds)
    for message in warnings:
        warn("tune", message)
    result = cross_validate(
        outcomes,
        args.max_regret,
        args.folds,
        args.max_fail_rate,
        seed=args.seed,
        group_depth=args.group_depth,
    )
    if args.json:
        data = tune_to_dict(result)
        data["expansions"] = {name: spec for name, spec in expansions.items() if name in outcomes}
        data["warnings"] = warnings
        print(json.dumps(data, indent=2))
    elif args.quiet:
        print(result.recommended)
    else:
        print(format_tune(result))
        for line in expansion_lines({k: v for k, v in expansions.items() if k in outcomes}):
            print(line)
    if plot is not None:
        from .._replay.plot import plot_summaries

        try:
            plot_summaries(result.candidates, plot, highlight=[result.recommended])
        except OSError as error:
            raise CliError(f"--plot {plot}: cannot write the figure ({error})") from None
        if not args.json and not args.quiet:
            print(f"figure saved to {plot}")
    return 0


def _groups(curves: list[Curve], depth: int) -> int:
    if depth <= 0:
        return len(curves)
    return len({"/".join(c.run.split("/")[:depth]) for c in curves})


def _evidence_warnings(runs: int, groups: int, folds: int) -> list[str]:
    """What the user must know about how much the recommendation rests on."""
    messages = []
    if groups < FEW_RUNS:
        unit = "runs" if groups == runs else f"groups of runs ({runs} runs)"
        messages.append(
            f"only {groups} {unit}: a policy chosen on fewer than {FEW_RUNS} is weak "
            "evidence; record more curves before trusting it"
        )
    if groups < folds:
        messages.append(
            f"--folds {folds} but only {groups} {'runs' if groups == runs else 'groups'}: "
            f"cross-validating with {groups} folds (one per {'run' if groups == runs else 'group'})"
        )
    return messages
