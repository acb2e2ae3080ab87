"""What the curve-reading commands share: the monitor/mode/--json options and loading."""

from __future__ import annotations

import argparse

from .._core.options import Mode
from .._replay.curves import Curve, CurvesError, read_curves

__all__ = ["add_common", "load_curves", "mode_of"]


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--monitor", default="val_loss", metavar="COL", help="column to monitor (val_loss)"
    )
    parser.add_argument(
        "--mode",
        choices=["min", "max"],
        help="direction of improvement (default: max for *acc* columns, else min)",
    )


def mode_of(args: argparse.Namespace) -> Mode:
    if args.mode is not None:
        return Mode(args.mode)
    return Mode.MAX if "acc" in args.monitor else Mode.MIN


def load_curves(args: argparse.Namespace) -> list[Curve]:
    curves = read_curves(args.curves)
    if not curves:
        raise CurvesError(f"{args.curves}: no runs")
    missing = [c.run for c in curves if args.monitor not in c.columns]
    if missing:
        known = ", ".join(sorted(curves[0].columns))
        raise CurvesError(f"{args.curves}: no column {args.monitor!r} to monitor; has {known}")
    return curves
