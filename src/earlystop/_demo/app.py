"""The demo application: the same seeded training with and without early stopping, compared.

Trains an MLP twice from the same initial weights and batch order: once for the whole
budget, once with :class:`earlystop.EarlyStopping` (best weights kept in memory and
restored). Prints a comparison table and writes, into ``out``:

- ``loss.png``: the losses and the validation accuracy per epoch (the monitored one says
  so), the best (restored) epoch, the stop marker, the epochs where the learning rate was
  lowered, and the run without early stopping beyond the stop in a lighter style;
- ``curves.csv``: the run without early stopping, one row per epoch (``run, epoch,
  train_loss, val_loss, val_acc, test_loss, test_acc, lr``): a full-budget run is what
  ``earlystop replay`` measures policies on, and the run with early stopping is its first
  epochs;
- ``summary.json`` and ``summary.md``: the comparison.

The headline is the epochs saved. Time saved is estimated from the median epoch time of
each run (see :func:`earlystop._demo.report.time_saved_pct`), not from the two wall
times, which a loaded machine makes noisy.

Progress bars (stderr) show the live losses and the patience counter; ``quiet`` turns them
and the file list off, leaving only the table on stdout; ``as_json`` prints
``summary.json``'s content instead of the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._core.decision import Decision
from .data import load_data
from .idx import IdxError
from .train import RUN_EARLY_STOPPING, RUN_FULL, RunResult, TrainConfig, warm_up

__all__ = ["DemoError", "run_demo"]


class DemoError(ValueError):
    """A problem with the demo's arguments or data files, reported on one line."""


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` torch CPU threads inside the block, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Progress:
    """A tqdm bar per run showing the live losses and the patience counter."""

    def __init__(self, config: TrainConfig, run: str, *, quiet: bool) -> None:
        from tqdm.auto import tqdm

        self.config = config
        self.early = run == RUN_EARLY_STOPPING
        label = "with early stopping" if self.early else "without early stopping"
        self.bar = tqdm(
            total=config.epochs, desc=f"{label:>22}", unit="epoch", disable=quiet, leave=True
        )

    def __call__(self, record: dict[str, Any], decision: Decision) -> None:
        parts = [
            f"train {record['train_loss']:.4f}",
            f"val {record['val_loss']:.4f}",
            f"acc {100 * record['val_acc']:.1f}%",
            f"best@{decision.best_step}",
        ]
        if self.early:
            parts.append(f"wait {decision.wait}/{self.config.patience}")
        self.bar.set_postfix_str("  ".join(parts), refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _train(config: TrainConfig, data: Any, *, early_stopping: bool, quiet: bool) -> RunResult:
    from .train import train_run

    run = RUN_EARLY_STOPPING if early_stopping else RUN_FULL
    progress = _Progress(config, run, quiet=quiet)
    try:
        return train_run(config, data, early_stopping=early_stopping, on_epoch=progress)
    finally:
        progress.close()


def run_demo(
    config: TrainConfig,
    *,
    dataset: str,
    out: Path,
    data_dir: Path | None = None,
    threads: int | None = None,
    quiet: bool = False,
    as_json: bool = False,
) -> int:
    """Run the comparison and write its files; returns 0.

    Raises:
        DemoError: for bad settings, an output folder that cannot be made, or bad data files.
    """
    from .plot import loss_figure, save_figure
    from .report import summary, table_markdown, write_curves, write_summary

    try:
        config.check()
    except ValueError as exc:
        raise DemoError(str(exc)) from None
    if dataset == "mnist" and data_dir is None:
        raise DemoError(
            "--data-dir is required with --dataset mnist (the folder of the 4 IDX files)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    try:
        data = load_data(dataset, seed=config.seed, data_dir=data_dir)
    except IdxError as exc:
        raise DemoError(str(exc)) from None

    quiet = quiet or as_json
    if not quiet:
        sizes = ", ".join(f"{k} {v}" for k, v in data.sizes().items())
        print(
            f"{data.name} ({sizes}); MLP {data.n_features}-"
            f"{'-'.join(map(str, config.hidden))}-{data.n_classes}, dropout {config.dropout}, "
            f"Adam lr {config.lr:g}, batch {config.batch_size}; budget {config.epochs} epochs, "
            f"patience {config.patience} on {config.monitor} ({config.mode}), seed {config.seed}",
            flush=True,
        )
    if threads is None:
        threads = 1 if dataset == "digits" else None
    with _torch_threads(threads):
        warm_up(config, data)
        full = _train(config, data, early_stopping=False, quiet=quiet)
        early = _train(config, data, early_stopping=True, quiet=quiet)

    table = table_markdown(full, early, monitor=config.monitor)
    figure = loss_figure(full, early, dataset=data.name, monitor=config.monitor)
    try:
        png = save_figure(figure, out / "loss.png")
        curves = write_curves(out / "curves.csv", full)
        facts = summary(full, early, config=config, dataset=data.name, sizes=data.sizes())
        json_path, md_path = write_summary(out, facts, table)
    except OSError as exc:
        raise DemoError(f"--out {out}: cannot write the results ({exc.strerror or exc})") from None
    if as_json:
        print(json_path.read_text(encoding="utf-8"), end="")
        return 0
    print(table)
    if not quiet:
        print(f"early stopping: {early.stop_detail}")
        for path in (png, curves, json_path, md_path):
            print(f"wrote {path}")
    return 0
