"""The ``earlystop`` command line: one sub-command per module, imported on use.

Every command follows the conventions of :mod:`earlystop._cli.common`; this module turns
every error into one line on stderr with exit status 2: argparse's usage errors, a
:class:`~earlystop._cli.common.CliError`, a bad file or value (``OSError``,
``ValueError``) and a missing optional package (naming the extra that installs it).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from .._core.version import __version__
from .common import EXTRA_OF, CliError, missing_package_message

__all__ = ["main"]

# sub-command -> (module, one-line help); each module has add_arguments(parser) and run(args).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("earlystop._cli.demo", "train with and without early stopping and compare"),
    "replay": ("earlystop._cli.replay", "replay stopping policies on recorded learning curves"),
    "tune": ("earlystop._cli.tune", "recommend a stopping policy from curves, cross-validated"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (``PROG: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="earlystop", description="Early stopping for PyTorch: demo and tools.")
    parser.add_argument("--version", action="version", version=f"earlystop {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module_name).add_arguments(sub)
        sub.set_defaults(_module=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for any error, 130 on Ctrl-C)."""
    args = build_parser().parse_args(argv)
    prog = f"earlystop {args.command}"
    try:
        result: int = importlib.import_module(args._module).run(args)
    except CliError as error:
        return _fail(prog, str(error))
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] not in EXTRA_OF:
            raise  # not an optional package: a bug, keep its traceback
        return _fail(prog, missing_package_message(error.name, prog))
    except (ValueError, OSError) as error:
        return _fail(prog, str(error) or type(error).__name__)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return result


def _fail(prog: str, message: str) -> int:
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"{prog}: error: {line}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
