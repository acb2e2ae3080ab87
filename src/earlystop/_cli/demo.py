"""``earlystop demo``: the argparse front end of the demo application (``earlystop._demo``).

Problems with the arguments or the data files are reported on one line with exit status 2,
before any training; so is a missing package of the ``demo`` extra. Options that are
accepted but cannot do what they say (a patience the budget never reaches, scheduler
options without a scheduler) get a one-line warning.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._demo.data import DATASETS, PRESETS
from .._demo.train import MONITORS, TrainConfig
from .common import CliError, add_output, require, warn

__all__ = ["add_arguments", "config_from_args", "inconsistencies", "run"]


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an int >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an int >= {minimum}, got {value}")
        return value

    return parse


def _float_in(low: float, high: float | None, *, open_low: bool = False) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        bad_low = value <= low if open_low else value < low
        if value != value or bad_low or (high is not None and value >= high):
            bound = f"> {low}" if open_low else f">= {low}"
            if high is not None:
                bound += f" and < {high}"
            raise argparse.ArgumentTypeError(f"expected a float {bound}, got {text!r}")
        return value

    return parse


def _preset(name: str) -> str:
    """The presets' values of ``name`` for the help text, such as ``digits 100, mnist 100``."""
    return ", ".join(f"{dataset} {getattr(preset, name):g}" for dataset, preset in PRESETS.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``demo`` options on ``parser``."""
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="digits",
        help="digits: scikit-learn's bundled 8x8 digits (default); mnist: the IDX files in "
        "--data-dir, with the MNIST notebook's setup",
    )
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="folder of the 4 MNIST IDX files (raw or .gz)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("demo-out"), metavar="DIR", help="output folder (demo-out)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds the split, weights and batch order (0)"
    )
    parser.add_argument("--epochs", type=_int_at_least(1), help=f"budget ({_preset('epochs')})")
    parser.add_argument(
        "--patience", type=_int_at_least(0), help=f"early-stopping patience ({_preset('patience')})"
    )
    parser.add_argument(
        "--min-delta", type=_float_in(0.0, None), default=0.0, help="improvement margin (0)"
    )
    parser.add_argument(
        "--monitor", choices=tuple(MONITORS), default="val_loss", help="watched value (val_loss)"
    )
    parser.add_argument(
        "--mode", choices=("min", "max"), help="default: min for val_loss, max for val_acc"
    )
    parser.add_argument(
        "--lr",
        type=_float_in(0.0, None, open_low=True),
        help=f"Adam learning rate ({_preset('lr')})",
    )
    parser.add_argument(
        "--batch-size", type=_int_at_least(1), help=f"mini-batch size ({_preset('batch_size')})"
    )
    parser.add_argument(
        "--lr-scheduler",
        choices=("none", "plateau"),
        default="none",
        help="plateau: torch's ReduceLROnPlateau on the monitored value",
    )
    parser.add_argument(
        "--lr-patience",
        type=_int_at_least(0),
        help="the scheduler's patience (default: half the early-stopping patience)",
    )
    parser.add_argument(
        "--lr-factor", type=_float_in(0.0, 1.0, open_low=True), default=0.1, help="LR factor (0.1)"
    )
    parser.add_argument(
        "--threads",
        type=_int_at_least(1),
        help="torch CPU threads (default: 1 for digits, torch's default for mnist)",
    )
    add_output(parser)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of the parsed arguments (preset values fill the gaps)."""
    preset = PRESETS[args.dataset]
    patience = preset.patience if args.patience is None else args.patience
    lr_patience = patience // 2 if args.lr_patience is None else args.lr_patience
    return TrainConfig(
        seed=args.seed,
        epochs=preset.epochs if args.epochs is None else args.epochs,
        hidden=preset.hidden,
        dropout=preset.dropout,
        lr=preset.lr if args.lr is None else args.lr,
        batch_size=preset.batch_size if args.batch_size is None else args.batch_size,
        monitor=args.monitor,
        mode=args.mode or MONITORS[args.monitor],
        patience=patience,
        min_delta=args.min_delta,
        lr_scheduler=None if args.lr_scheduler == "none" else args.lr_scheduler,
        lr_patience=lr_patience,
        lr_factor=args.lr_factor,
    )


def inconsistencies(args: argparse.Namespace, config: TrainConfig) -> list[str]:
    """Options that are accepted but cannot act as written, one message each."""
    found = []
    if config.patience >= config.epochs:
        found.append(
            f"--patience {config.patience} >= the budget of {config.epochs} epochs: early "
            "stopping cannot stop before the budget ends, so both runs train every epoch "
            "(lower --patience or raise --epochs)"
        )
    if config.lr_scheduler is None:
        given = [flag for flag, value in (("--lr-patience", args.lr_patience),) if value]
        if args.lr_factor != 0.1:
            given.append("--lr-factor")
        if given:
            found.append(f"{' and '.join(given)} ignored without --lr-scheduler plateau")
    if args.data_dir is not None and args.dataset != "mnist":
        found.append(f"--data-dir ignored with --dataset {args.dataset} (only mnist reads it)")
    if args.mode is not None and args.mode != MONITORS[args.monitor]:
        found.append(
            f"--mode {args.mode} on {args.monitor}: early stopping will treat a "
            f"{'higher' if args.mode == 'max' else 'lower'} {args.monitor} as better"
        )
    return found


def run(args: argparse.Namespace) -> int:
    """Run the comparison; returns the exit status (2 for bad arguments or data files)."""
    config = config_from_args(args)
    for module in ("torch", "tqdm", "matplotlib"):
        require(module, "earlystop demo", "demo")
    if args.dataset == "digits":
        require("sklearn", "earlystop demo --dataset digits (scikit-learn's digits)", "demo")
    from .._demo.app import DemoError, run_demo

    try:
        config.check()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for message in inconsistencies(args, config):
        warn("demo", message)
    try:
        return run_demo(
            config,
            dataset=args.dataset,
            out=args.out,
            data_dir=args.data_dir,
            threads=args.threads,
            quiet=bool(args.quiet),
            as_json=bool(args.json),
        )
    except DemoError as exc:
        raise CliError(str(exc)) from None
