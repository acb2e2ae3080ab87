"""What the framework adapters share: import errors, metric lookup, the front end."""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from .._core.decision import Decision
from .._frontend.early_stopping import EarlyStopping
from .._weights.lost import LostWeightsWarning
from .._weights.sharded import is_sharded

__all__ = [
    "AdapterState",
    "build_early_stopping",
    "check_monitor",
    "pick_metric",
    "require",
    "restore_best",
]

logger = logging.getLogger("earlystop")


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError`` naming the earlystop extra that installs it."""
    try:
        with warnings.catch_warnings():
            # ignite 0.5 uses torch.jit.script and torch.jit.interface at import time, which
            # torch >= 2.10 reports as deprecated; the user cannot act on it.
            warnings.filterwarnings(
                "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
            )
            return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"earlystop.integrations.{extra} needs the `{module}` package: "
            f"pip install 'earlystop[{extra}]'"
        ) from exc


def check_monitor(monitor: Any) -> str:
    """Validate the name of the monitored metric."""
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"`monitor` must be a non-empty metric name, got {monitor!r}")
    return monitor


def pick_metric(metrics: Mapping[str, Any] | None, monitor: str, where: str) -> Any:
    """``metrics[monitor]``, or a ``KeyError`` that lists the keys that exist.

    Args:
        metrics: the metrics the framework logged for this evaluation.
        monitor: the key to read.
        where: how the user would call that mapping, for the message.
    """
    if metrics is not None and monitor in metrics:
        return metrics[monitor]
    known = ", ".join(sorted(map(str, metrics or {}))) or "none"
    raise KeyError(f"monitored metric {monitor!r} is not in {where}; logged keys: {known}")


def build_early_stopping(options: Mapping[str, Any], path: Any) -> EarlyStopping:
    """An :class:`EarlyStopping` for an adapter: silent unless asked, never restoring itself.

    Adapters restore the best weights when the framework's training ends, not at the
    stop decision (a framework may keep training past it, as Lightning's ``min_epochs``).
    """
    if "model" in options:
        raise TypeError(
            "'model' cannot be passed to an integration: it takes the model from the framework"
        )
    return EarlyStopping(**{"trace_func": None, **options}, path=path, restore_best_weights=False)


def restore_best(early_stopping: EarlyStopping, model: Any) -> int | None:
    """Load the best weights into ``model`` at the end of training; the step restored.

    Returns ``None`` instead of raising when nothing improved, or (with a
    ``LostWeightsWarning``) when the best weights were kept in the memory of an earlier
    process (a resumed run without ``path``): the end of a training run is no place to
    crash.
    """
    best = early_stopping.best_epoch
    if best is None:
        return None
    keeper, path = early_stopping.keeper, early_stopping._file
    if is_sharded(model):  # FSDP2/TP/FSDP1 (Lightning ModelParallel, Accelerate FSDP)
        available = early_stopping.sharded.available(best, path)
    else:
        available = keeper.step == best or (path is not None and path.is_file())
    if not available:
        message = (
            f"earlystop: the best weights (evaluation {best}) were kept by an earlier "
            "process; give `path=` to restore them after a resume"
        )
        logger.warning("%s", message)
        warnings.warn(message, LostWeightsWarning, stacklevel=2)
        return None
    early_stopping.restore(model)
    return best


class AdapterState:
    """What every framework adapter holds: the wrapped front end and its read-outs."""

    monitor: str
    restore_best_weights: bool
    early_stopping: EarlyStopping
    last_decision: Decision | None
    restored_step: int | None

    def _init_adapter(
        self, monitor: Any, restore_best_weights: Any, path: Any, options: Mapping[str, Any]
    ) -> None:
        self.monitor = check_monitor(monitor)
        if not isinstance(restore_best_weights, bool):
            raise ValueError(f"`restore_best_weights` must be a bool, got {restore_best_weights!r}")
        self.restore_best_weights = restore_best_weights
        self.early_stopping = build_early_stopping(options, path)
        self.last_decision = None
        self.restored_step = None

    @property
    def best_epoch(self) -> int | None:
        """1-based number of the best evaluation, ``None`` before one improved."""
        return self.early_stopping.best_epoch

    @property
    def stopped_epoch(self) -> int | None:
        """1-based number of the evaluation that said stop, ``None`` if none did."""
        return self.early_stopping.stopped_epoch
