"""The ``earlystop`` command line: one sub-command per module, imported on use."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# sub-command -> (module, one-line help); each module has add_arguments(parser) and run(args).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("earlystop._cli.demo", "train with and without early stopping and compare"),
    "replay": ("earlystop._cli.replay", "replay stopping policies on recorded learning curves"),
    "tune": ("earlystop._cli.tune", "recommend a stopping policy from curves, cross-validated"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earlystop", description="Early stopping for PyTorch: demo and tools."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module_name).add_arguments(sub)
        sub.set_defaults(_module=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    result: int = importlib.import_module(args._module).run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
