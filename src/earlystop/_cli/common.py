"""What the commands share: the CLI conventions, the curve options and loading.

The conventions, the same for every command:

- results go to stdout: a table (default), JSON (``--json``) or the bare results
  (``--quiet``: no notes, footers or file lists);
- warnings and errors go to stderr, one line each, as ``earlystop COMMAND: warning: ...``
  and ``earlystop COMMAND: error: ...``; an error exits with status 2 and no traceback
  (:class:`CliError`, raised anywhere below a command, is turned into that line by
  :func:`earlystop._cli.main.main`);
- a missing optional package names the extra that installs it
  (``pip install 'earlystop[plot]'``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .._core.options import Mode
from .._replay.curves import Curve, CurvesError, read_curves
from .._replay.replay import Buildable
from .._replay.tune import load_policy

__all__ = [
    "EXTRA_OF",
    "CliError",
    "add_common",
    "add_output",
    "expansion_lines",
    "load_curves",
    "mode_of",
    "named_policies",
    "plot_target",
    "require",
    "warn",
]

#: the earlystop extra that installs each optional package a command may import
EXTRA_OF: dict[str, str] = {
    "torch": "demo",
    "sklearn": "demo",
    "tqdm": "demo",
    "matplotlib": "plot",
    "safetensors": "safetensors",
}


class CliError(Exception):
    """A problem the user can fix: printed as one ``error:`` line, exit status 2."""


def warn(command: str, message: str) -> None:
    """Print one ``earlystop COMMAND: warning: MESSAGE`` line on stderr."""
    print(f"earlystop {command}: warning: {message}", file=sys.stderr, flush=True)


def missing_package_message(module: str, purpose: str, extra: str | None = None) -> str:
    """The one-line message for an optional package that cannot be imported."""
    top = module.split(".")[0]
    extra = extra or EXTRA_OF.get(top, "all")
    package = {"sklearn": "scikit-learn"}.get(top, top)
    if top == "torch":
        return (
            f"{purpose} needs PyTorch (`torch`), which is not installed: install torch first "
            f"(the CPU or CUDA build, see the README), then pip install 'earlystop[{extra}]'"
        )
    return f"{purpose} needs `{package}`, which is not installed: pip install 'earlystop[{extra}]'"


def require(module: str, purpose: str, extra: str | None = None) -> None:
    """Import ``module`` now, or raise :class:`CliError` naming the extra that installs it."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise CliError(missing_package_message(module, purpose, extra)) from None


def plot_target(path: str, purpose: str = "--plot") -> Path:
    """Check a figure path before any work: matplotlib importable, a known format, a folder.

    The folder is created when missing (as ``demo --out`` does).

    Raises:
        CliError: naming the option and the problem.
    """
    require("matplotlib", f"{purpose} (the figure)", "plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    target = Path(path)
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    suffix = target.suffix.lower().lstrip(".")
    if target.is_dir():
        raise CliError(f"{purpose} {path}: is a folder; give a file name such as {path}/plot.png")
    if suffix not in formats:
        got = f"got {target.suffix!r}" if target.suffix else "it has no suffix"
        raise CliError(
            f"{purpose} {path}: the file name must end in one of "
            f"{', '.join('.' + name for name in sorted(formats))}; {got}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(
            f"{purpose} {path}: cannot create the folder {target.parent} ({exc.strerror or exc})"
        ) from None
    return target


def add_output(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--quiet``, the output options of every command that prints results."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print the results as JSON")
    group.add_argument(
        "--quiet", action="store_true", help="print only the results: no notes or footers"
    )


def add_common(parser: argparse.ArgumentParser) -> None:
    """The options of the commands that read curves: output, ``--monitor``, ``--mode``."""
    add_output(parser)
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
    """Read ``args.curves`` and check that every run has the monitored numeric column."""
    curves = read_curves(args.curves)
    if not curves:
        raise CurvesError(f"{args.curves}: no runs")
    labels = curves[0].labels
    if args.monitor in labels:
        raise CurvesError(
            f"{args.curves}: column {args.monitor!r} holds text (a label, such as "
            f"{_first_text(labels[args.monitor])!r}), so it cannot be monitored; "
            f"numeric columns: {', '.join(sorted(curves[0].columns))}"
        )
    missing = [c.run for c in curves if args.monitor not in c.columns]
    if missing:
        known = ", ".join(sorted(curves[0].columns))
        raise CurvesError(f"{args.curves}: no column {args.monitor!r} to monitor; has {known}")
    return curves


def _first_text(cells: list[str]) -> str:
    return next((cell for cell in cells if cell), "")


def named_policies(specs: list[str]) -> tuple[list[tuple[str, Buildable]], dict[str, str]]:
    """Parse ``--policy`` SPECs; each keeps the name the user wrote (``auto``).

    Returns:
        The ``(name, policy)`` pairs, a SPEC given twice only once, and the expansion of
        each name that differs from its policy's full SPEC (``{"auto": "ema=...,..."}``),
        for a footer.
    """
    named: list[tuple[str, Buildable]] = []
    expansions: dict[str, str] = {}
    for spec in specs:
        name = spec.strip()
        if any(name == seen for seen, _ in named):
            continue
        canonical, policy = load_policy(spec)
        named.append((name, policy))
        if canonical != "".join(name.split()):
            expansions[name] = canonical
    return named, expansions


def expansion_lines(expansions: dict[str, str]) -> list[str]:
    """The footer lines ``NAME = FULL SPEC`` (``auto``'s is printed by the table itself)."""
    return [f"{name} = {spec}" for name, spec in expansions.items() if name != "auto"]
