"""The demo's training run: one seeded MLP training, with or without early stopping.

Both runs of a comparison call :func:`train_run` with the same :class:`TrainConfig`: the
initial weights, the mini-batch order and the dropout masks come from ``seed`` alone, and
early stopping consumes no random numbers, so the run with early stopping is exactly the
first epochs of the run without it. Nothing here prints; a caller watches the epochs
through ``on_epoch``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._core.decision import Decision
from .._core.stopper import Stopper

if TYPE_CHECKING:
    import torch

    from .data import DemoData

__all__ = [
    "CURVE_COLUMNS",
    "MONITORS",
    "RUN_EARLY_STOPPING",
    "RUN_FULL",
    "RunResult",
    "TrainConfig",
    "build_mlp",
    "train_run",
    "warm_up",
]

#: the columns of one epoch's record (and of ``curves.csv``), in order
CURVE_COLUMNS = ("run", "epoch", "train_loss", "val_loss", "val_acc", "test_loss", "test_acc", "lr")
#: monitored value -> the mode it defaults to
MONITORS: dict[str, str] = {"val_loss": "min", "val_acc": "max"}
RUN_FULL = "no_early_stopping"
RUN_EARLY_STOPPING = "early_stopping"

Record = dict[str, Any]
EpochCallback = Callable[[Record, Decision], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run.

    Attributes:
        seed: seeds the initial weights, the batch order and the dropout masks.
        epochs: the budget (the run without early stopping trains all of it).
        hidden: hidden layer widths of the MLP.
        dropout: dropout after each hidden layer.
        lr: Adam learning rate.
        batch_size: mini-batch size.
        monitor: ``"val_loss"`` or ``"val_acc"``, the value early stopping watches.
        mode: ``"min"`` or ``"max"``.
        patience: early-stopping patience in epochs.
        min_delta: the margin an improvement must exceed.
        lr_scheduler: ``None`` or ``"plateau"`` (ReduceLROnPlateau on the monitored value).
        lr_patience: the scheduler's patience; ``patience`` must exceed
            ``lr_patience + 1`` (the scheduler lowers the rate at the ``lr_patience + 1``-th
            epoch without improvement, early stopping stops at the ``patience``-th).
        lr_factor: the scheduler's factor.
    """

    seed: int
    epochs: int
    hidden: tuple[int, ...]
    dropout: float
    lr: float
    batch_size: int
    monitor: str = "val_loss"
    mode: str = "min"
    patience: int = 10
    min_delta: float = 0.0
    lr_scheduler: str | None = None
    lr_patience: int = 5
    lr_factor: float = 0.1

    def check(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent option."""
        if self.monitor not in MONITORS:
            raise ValueError(
                f"`monitor` must be one of {', '.join(MONITORS)}, got {self.monitor!r}"
            )
        if self.lr_scheduler not in (None, "plateau"):
            raise ValueError(f"`lr_scheduler` must be None or 'plateau', got {self.lr_scheduler!r}")
        if self.lr_scheduler is not None and self.patience <= self.lr_patience + 1:
            raise ValueError(
                f"`patience` ({self.patience}) must exceed the LR scheduler's patience + 1 "
                f"({self.lr_patience + 1}): the scheduler lowers the learning rate after "
                f"{self.lr_patience + 1} epochs without improvement, so training would stop "
                f"before it ever uses a lower rate; raise --patience or lower --lr-patience"
            )


@dataclass
class RunResult:
    """What one run did.

    Attributes:
        run: :data:`RUN_FULL` or :data:`RUN_EARLY_STOPPING`.
        records: one dict per epoch trained, keys :data:`CURVE_COLUMNS`.
        epochs_run: epochs trained.
        wall_time_s: seconds spent training and validating (model construction, epochs,
            early-stopping bookkeeping and the final restore), without the per-epoch
            test-set evaluation that only feeds the curves.
        best_epoch: the epoch with the best monitored value (same rule as the stopper).
        stopped_epoch: the epoch at which early stopping said stop, ``None`` otherwise.
        restored_epoch: the epoch whose weights the final model has, when they were
            restored; ``None`` when the final model is the last epoch's.
        final: ``val_loss, val_acc, test_loss, test_acc`` of the final model.
        stop_detail: the stopper's explanation of the last decision.
        epoch_times_s: seconds of each epoch (training, validation and the early-stopping
            call, without the test-set evaluation), for robust per-epoch figures.
        call_times_s: seconds of each epoch's early-stopping call (for the run without
            it, the call of the stopper that only tracks the best epoch).
    """

    run: str
    records: list[Record] = field(default_factory=list)
    epochs_run: int = 0
    wall_time_s: float = 0.0
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    restored_epoch: int | None = None
    final: dict[str, float] = field(default_factory=dict)
    stop_detail: str = ""
    epoch_times_s: list[float] = field(default_factory=list)
    call_times_s: list[float] = field(default_factory=list)


def build_mlp(n_features: int, hidden: tuple[int, ...], n_classes: int, dropout: float) -> Any:
    """An MLP: for each hidden width Linear, ReLU, then Dropout (when ``dropout > 0``)."""
    from torch import nn

    layers: list[nn.Module] = []
    width = n_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def _evaluate(model: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode."""
    import torch
    from torch.nn import functional

    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(y), 4096):
            logits = model(x[start : start + 4096])
            target = y[start : start + 4096]
            loss_sum += functional.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(1) == target).sum().item())
    n = max(len(y), 1)
    return loss_sum / n, correct / n


def warm_up(config: TrainConfig, data: DemoData) -> None:
    """One untimed training step and evaluation on a throwaway model.

    The first run of a process pays one-time costs (allocator, kernel selection) that the
    second does not; warming up first keeps them out of the wall-time comparison. The
    global torch random state is left as it was.
    """
    import torch
    from torch.nn import functional

    with torch.random.fork_rng(devices=[]):
        model = build_mlp(data.n_features, config.hidden, data.n_classes, config.dropout)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        batch = slice(0, config.batch_size)
        x, y = torch.from_numpy(data.x_train[batch]), torch.from_numpy(data.y_train[batch])
        model.train()
        functional.cross_entropy(model(x), y).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        _evaluate(model, torch.from_numpy(data.x_val), torch.from_numpy(data.y_val))


def train_run(
    config: TrainConfig,
    data: DemoData,
    *,
    early_stopping: bool,
    on_epoch: EpochCallback | None = None,
) -> RunResult:
    """Train one seeded run and return its per-epoch records and final metrics.

    Args:
        config: the run's setup; the same config gives the same trajectory.
        data: the train/validation/test arrays.
        early_stopping: stop with :class:`earlystop.EarlyStopping` (weights kept in
            memory and restored: ``path=None, restore_best_weights=True``); the best
            weights are also restored when the budget ends first. ``False`` trains the
            whole budget and keeps the last weights.
        on_epoch: called after each epoch with its record and the stopper's decision
            (for the run without early stopping, a stopper without patience that only
            tracks the best epoch).

    The global torch random state is left as it was.
    """
    import torch
    from torch.nn import functional

    from .._frontend.early_stopping import EarlyStopping

    config.check()
    result = RunResult(run=RUN_EARLY_STOPPING if early_stopping else RUN_FULL)
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_val, y_val = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        start = time.perf_counter()
        test_time = 0.0
        model = build_mlp(data.n_features, config.hidden, data.n_classes, config.dropout)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        scheduler = None
        if config.lr_scheduler == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="max" if config.mode == "max" else "min",
                factor=config.lr_factor,
                patience=config.lr_patience,
                # the stopper's rule: an improvement beats the best by more than min_delta
                threshold=config.min_delta,
                threshold_mode="abs",
            )
        order = torch.Generator().manual_seed(config.seed)
        stopper: EarlyStopping | None = None
        tracker: Stopper
        if early_stopping:
            stopper = EarlyStopping(
                patience=config.patience,
                path=None,
                trace_func=None,
                mode=config.mode,
                min_delta=config.min_delta,
                restore_best_weights=True,
            )
            tracker = stopper.stopper
        else:
            tracker = Stopper(
                mode=config.mode, patience=None, min_delta=config.min_delta, on_nonfinite="count"
            )

        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            lr = float(optimizer.param_groups[0]["lr"])
            model.train()
            total = torch.zeros(())
            permutation = torch.randperm(len(y_train), generator=order)
            for batch in torch.split(permutation, config.batch_size):
                optimizer.zero_grad(set_to_none=True)
                loss = functional.cross_entropy(model(x_train[batch]), y_train[batch])
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                total += loss.detach() * len(batch)
            train_loss = float(total) / len(y_train)
            val_loss, val_acc = _evaluate(model, x_val, y_val)
            test_start = time.perf_counter()
            test_loss, test_acc = _evaluate(model, x_test, y_test)
            test_elapsed = time.perf_counter() - test_start
            test_time += test_elapsed
            record: Record = {
                "run": result.run,
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "lr": lr,
            }
            result.records.append(record)
            monitored = record[config.monitor]
            call_start = time.perf_counter()
            decision = stopper(monitored, model) if stopper is not None else tracker.step(monitored)
            result.call_times_s.append(time.perf_counter() - call_start)
            if scheduler is not None:
                scheduler.step(monitored)
            if on_epoch is not None:
                on_epoch(record, decision)
            result.stop_detail = decision.detail
            result.epoch_times_s.append(time.perf_counter() - epoch_start - test_elapsed)
            if stopper is not None and decision.should_stop:
                result.stopped_epoch = epoch
                break

        if stopper is not None and stopper.best_epoch is not None:
            if result.stopped_epoch is None:  # the budget ended first: restore anyway
                stopper.finish(model)
            result.restored_epoch = stopper.best_epoch
        result.wall_time_s = time.perf_counter() - start - test_time

    result.epochs_run = len(result.records)
    result.best_epoch = tracker.best_step
    val_loss, val_acc = _evaluate(model, x_val, y_val)
    test_loss, test_acc = _evaluate(model, x_test, y_test)
    result.final = {
        "val_loss": val_loss,
        "val_acc": val_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
    }
    return result
