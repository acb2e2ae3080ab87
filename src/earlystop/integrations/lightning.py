"""Lightning's ``EarlyStopping``, decided by the earlystop core: change the import line only.

>>> from earlystop.integrations.lightning import EarlyStopping
>>> callback = EarlyStopping(monitor="val_loss", min_delta=0.01)
>>> callback.patience, callback.state_key
(3, "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .._core.decision import Decision, StopReason
from .._frontend.early_stopping import EarlyStopping as _FrontEnd
from ._support import build_early_stopping, require, restore_best

_pl = require("lightning.pytorch", "lightning")
_lightning_es = require("lightning.pytorch.callbacks.early_stopping", "lightning")

if TYPE_CHECKING:
    import lightning.pytorch as pl
    import torch

_LightningEarlyStopping: Any = _lightning_es.EarlyStopping
EarlyStoppingReason: Any = _lightning_es.EarlyStoppingReason

__all__ = ["EarlyStopping", "EarlyStoppingReason"]

_LIGHTNING_DEFAULTS = {"min_delta": 0.0, "patience": 3, "check_finite": True}
_REASONS = {
    StopReason.NON_FINITE: "NON_FINITE_METRIC",
    StopReason.DIVERGENCE_THRESHOLD: "DIVERGENCE_THRESHOLD",
    StopReason.STOPPING_THRESHOLD: "STOPPING_THRESHOLD",
    StopReason.PATIENCE: "PATIENCE_EXHAUSTED",
}


class EarlyStopping(_LightningEarlyStopping):  # type: ignore[misc]
    """A subclass of ``lightning.pytorch.callbacks.EarlyStopping`` whose decisions are earlystop's.

    It takes Lightning's whole constructor with Lightning's defaults and meanings, keeps
    Lightning's attributes up to date (``wait_count``, ``best_score``, ``stopped_epoch``:
    the 0-based ``trainer.current_epoch`` of the stop, ``stopping_reason``,
    ``stopping_reason_message``), checks at the same hooks (``check_on_train_epoch_end``,
    ``strict``, sanity checks and ``fast_dev_run`` skipped), logs Lightning's messages with
    ``verbose`` and is found by ``trainer.early_stopping_callback``. What differs on purpose
    is listed in docs/integrations.md (inclusive ``stopping_threshold``, negative
    ``min_delta`` refused, a value that reaches a threshold can also be the new best).

    Args:
        monitor, min_delta, patience, verbose, mode, strict, check_finite,
            stopping_threshold, divergence_threshold, check_on_train_epoch_end,
            log_rank_zero_only: as in Lightning. ``check_finite=False`` counts a
            non-finite value as not improving (``on_nonfinite="count"``).
        restore_best_weights: load the weights of the best evaluation into the module
            when ``fit`` ends (kept in host memory, or read from ``path``). With several
            such callbacks, the one whose decision stopped training restores (the first of
            them in ``trainer.callbacks`` when several stopped at once, or
            ``trainer.early_stopping_callback`` when none stopped).
        checkpoint_best_weights: also store the best weights in Lightning checkpoints
            (the callback's state), so a resumed ``fit`` can restore a best found before
            the checkpoint. Off by default: it adds a copy of the model to every checkpoint.
        path: write the best weights to this file on every improvement (rank 0); a resumed
            ``fit`` restores from it.
        policy, smoothing, min_rel_delta, on_nonfinite, distributed, **options: keyword
            options of :class:`earlystop.EarlyStopping` (``baseline``,
            ``start_from_epoch``, ``criteria``, ``scheduler``, ...). A ``policy``
            replaces ``patience`` and ``min_delta``, which must then stay at their defaults.

    Attributes:
        last_decision: the :class:`earlystop.Decision` of the latest check.
        best_epoch: earlystop's 1-based number of the best check, ``None`` before one.
        restored_step: the check whose weights were restored when ``fit`` ended.
        early_stopping: the wrapped :class:`earlystop.EarlyStopping`.
    """

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
        *,
        restore_best_weights: bool = False,
        checkpoint_best_weights: bool = False,
        path: str | os.PathLike[str] | None = None,
        policy: Any = None,
        smoothing: Any = None,
        min_rel_delta: float = 0.0,
        on_nonfinite: str | None = None,
        distributed: str = "mean",
        **options: Any,
    ) -> None:
        super().__init__(
            monitor=monitor,
            min_delta=min_delta,
            patience=patience,
            verbose=verbose,
            mode=mode,
            strict=strict,
            check_finite=check_finite,
            stopping_threshold=stopping_threshold,
            divergence_threshold=divergence_threshold,
            check_on_train_epoch_end=check_on_train_epoch_end,
            log_rank_zero_only=log_rank_zero_only,
        )
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"`monitor` must be a non-empty metric name, got {monitor!r}")
        for name, value in [
            ("restore_best_weights", restore_best_weights),
            ("checkpoint_best_weights", checkpoint_best_weights),
            ("check_finite", check_finite),
        ]:
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be a bool, got {value!r}")
        if on_nonfinite is None:
            on_nonfinite = "stop" if check_finite else "count"
        elif not check_finite and on_nonfinite == "stop":
            raise ValueError(
                "`check_finite=False` and `on_nonfinite='stop'` contradict each other: "
                "give one of them"
            )
        rules: dict[str, Any] = {
            "stopping_threshold": stopping_threshold,
            "divergence_threshold": divergence_threshold,
            "min_rel_delta": min_rel_delta,
            "on_nonfinite": on_nonfinite,
            "smoothing": smoothing,
        }
        if policy is None:
            rules.update(patience=patience, min_delta=min_delta)
        else:
            given: dict[str, Any] = {"min_delta": min_delta, "patience": patience}
            for name, value in given.items():
                if value != _LIGHTNING_DEFAULTS[name]:
                    raise ValueError(
                        f"`policy` replaces the rule options; got policy={str(policy)!r} and "
                        f"{name}={value!r}"
                    )
            rules.update(policy=policy)
            if on_nonfinite == "stop":
                del rules["on_nonfinite"]  # the policy's own (its default is "stop" too)
        self.restore_best_weights = restore_best_weights
        self.checkpoint_best_weights = checkpoint_best_weights
        self.early_stopping: _FrontEnd = build_early_stopping(
            {"mode": mode, "distributed": distributed, **rules, **options}, path
        )
        self.last_decision: Decision | None = None
        self.restored_step: int | None = None
        self._module: Any = None
        self._policy = policy

    @property
    def best_epoch(self) -> int | None:
        """earlystop's 1-based number of the best check, ``None`` before one improved."""
        return self.early_stopping.best_epoch

    def _keeps_weights(self) -> bool:
        return (
            self.restore_best_weights
            or self.checkpoint_best_weights
            or self.early_stopping.path is not None
        )

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        self._module = trainer.lightning_module if self._keeps_weights() else None
        try:
            super()._run_early_stopping_check(trainer)
        finally:
            self._module = None

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        """Lightning's decision hook, answered by the earlystop core."""
        decision = self.early_stopping(current, self._module)
        self.last_decision = decision
        message = self._improvement_message(current) if decision.improved else None
        best = self.early_stopping.stopper.best_value
        if best is not None:
            self.best_score = _torch().tensor(best, dtype=_float_dtype(current))
        self.wait_count = decision.wait
        if not decision.should_stop:
            return False, message
        self.stopping_reason = EarlyStoppingReason[
            _REASONS.get(decision.reason, "PATIENCE_EXHAUSTED")  # type: ignore[call-overload]
        ]
        return True, self._stop_message(decision, current)

    def _stop_message(self, decision: Decision, current: torch.Tensor) -> str:
        monitor, reason = self.monitor, decision.reason
        order = self.order_dict[self.mode]
        if reason == StopReason.NON_FINITE:
            return (
                f"Monitored metric {monitor} = {current} is not finite."
                f" Previous best value was {self.best_score:.3f}. Signaling Trainer to stop."
            )
        if reason == StopReason.STOPPING_THRESHOLD:
            reached = order if float(current) != self.stopping_threshold else f"{order}="
            return (
                f"Stopping threshold reached: {monitor} = {current} {reached}"
                f" {self.stopping_threshold}. Signaling Trainer to stop."
            )
        if reason == StopReason.DIVERGENCE_THRESHOLD:
            worse = {"<": ">", ">": "<"}[order]
            return (
                f"Divergence threshold reached: {monitor} = {current} {worse}"
                f" {self.divergence_threshold}. Signaling Trainer to stop."
            )
        if reason == StopReason.PATIENCE:
            return (
                f"Monitored metric {monitor} did not improve in the last {self.wait_count} "
                f"records. Best score: {self.best_score:.3f}. Signaling Trainer to stop."
            )
        return f"{decision.detail} (monitored metric {monitor}). Signaling Trainer to stop."

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.restore_best_weights and _restorer(trainer) is self:
            self.restored_step = restore_best(self.early_stopping, pl_module)

    def state_dict(self) -> dict[str, Any]:
        """Lightning's state plus earlystop's (``"earlystop"``); the best weights only with
        ``checkpoint_best_weights=True`` (``"best_weights"``)."""
        state: dict[str, Any] = super().state_dict()
        state["earlystop"] = self.early_stopping.state_dict()
        keeper = self.early_stopping.keeper
        if (
            self.checkpoint_best_weights
            and keeper.has_snapshot
            and keeper.step == self.early_stopping.best_epoch
        ):
            state["best_weights"] = {
                name: value.clone() for name, value in keeper.state_dict().items()
            }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`, or the state of Lightning's own ``EarlyStopping``
        (its ``wait_count`` and ``best_score`` become earlystop's wait and reference)."""
        missing = sorted({"wait_count", "best_score", "stopped_epoch"} - state_dict.keys())
        if missing:
            raise ValueError(
                f"checkpoint state of {self.state_key} is missing keys: {', '.join(missing)}"
            )
        saved = state_dict.get("earlystop")
        if saved is not None:
            self.early_stopping.load_state_dict(saved)
        else:  # a checkpoint written by Lightning's own callback
            self.early_stopping.best_val_loss = float(state_dict["best_score"])
            self.early_stopping.counter = int(state_dict["wait_count"])
        super().load_state_dict(state_dict)  # Lightning's attributes, `patience` included
        if self._policy is None:
            self.early_stopping.patience = self.patience  # as Lightning: the saved patience
        self.last_decision = self.early_stopping.last_decision
        weights = state_dict.get("best_weights")
        best_epoch = self.early_stopping.best_epoch
        if weights is not None and best_epoch is not None:
            self.early_stopping.keeper.snapshot(weights, best_epoch)


def _restorer(trainer: pl.Trainer) -> EarlyStopping | None:
    """The callback that restores: the first that stopped training, else the first one."""
    ours = [
        callback
        for callback in trainer.callbacks  # type: ignore[attr-defined]
        if isinstance(callback, EarlyStopping) and callback.restore_best_weights
    ]
    stopped = [c for c in ours if c.last_decision is not None and c.last_decision.should_stop]
    primary = trainer.early_stopping_callback
    if stopped:
        return stopped[0]
    return primary if primary in ours else (ours[0] if ours else None)


def _torch() -> Any:
    import torch

    return torch


def _float_dtype(current: Any) -> Any:
    torch = _torch()
    dtype = getattr(current, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32
