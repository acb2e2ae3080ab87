"""Ignite's ``EarlyStopping``, decided by the earlystop core: change the import line only.

>>> from ignite.engine import Engine
>>> from earlystop.integrations.ignite import EarlyStopping
>>> trainer = Engine(lambda engine, batch: None)
>>> handler = EarlyStopping(patience=3, score_function=lambda e: 0.5, trainer=trainer)
>>> handler.patience, handler.mode, handler.counter, handler.best_score
(3, 'max', 0, None)
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._core.decision import Decision
from .._frontend.early_stopping import EarlyStopping as _FrontEnd
from ._support import build_early_stopping, require, restore_best

_ignite_engine = require("ignite.engine", "ignite")
_ignite_handlers = require("ignite.handlers.early_stopping", "ignite")
_ignite_utils = require("ignite.utils", "ignite")

if TYPE_CHECKING:
    import torch
    from ignite.engine import Engine

_IgniteEarlyStopping: Any = _ignite_handlers.EarlyStopping

__all__ = ["EarlyStopping"]


class EarlyStopping(_IgniteEarlyStopping):  # type: ignore[misc]
    """A subclass of ``ignite.handlers.EarlyStopping`` whose decisions are earlystop's.

    It takes Ignite 0.5's constructor with Ignite's defaults (``mode="max"``), meanings,
    error messages and deprecation warnings (``min_delta``, ``min_delta_mode``,
    ``cumulative_delta``), and is attached as Ignite documents:
    ``evaluator.add_event_handler(Events.COMPLETED, handler)`` or ``handler.attach(evaluator)``.
    After each evaluation it calls ``score_function(evaluator)``; on a stop decision it
    calls ``trainer.terminate()``. ``counter`` and ``best_score`` (writable, as in Ignite),
    ``reset()``, ``state_dict()`` / ``load_state_dict()`` (for Ignite's ``Checkpoint``,
    also from a checkpoint of Ignite's own handler) keep Ignite's meanings.

    The state is reset when the trainer starts a new run (``trainer.state.iteration ==
    0`` at ``Events.STARTED``); a run that continues (resumed from a checkpoint, or run
    again after ``terminate()``) keeps it. What differs on purpose (a NaN never becomes the
    best; the reference moves only on an improvement, as ``cumulative=True``; a relative
    threshold is measured against ``|best|``) is listed in docs/integrations.md.

    Args:
        patience, score_function, trainer, threshold, cumulative, threshold_mode, mode,
            min_delta, min_delta_mode, cumulative_delta: as in Ignite 0.5.
            ``threshold_mode="rel"`` becomes earlystop's ``min_rel_delta``.
        model: keep the weights of the best evaluation of this model (in memory, or in
            ``path``) ...
        restore_best_weights: ... and load them into it when the trainer completes,
            stopped or not (only with ``model``).
        path: write the best weights to this file on every improvement.
        policy, **options: keyword options of :class:`earlystop.EarlyStopping`
            (``on_nonfinite``, ``smoothing``, ``baseline``, ``criteria``, ...). A
            ``policy`` replaces ``patience`` and ``threshold``.

    Attributes:
        last_decision: the :class:`earlystop.Decision` of the latest evaluation.
        best_epoch: earlystop's 1-based number of the best evaluation.
        stopped_epoch: earlystop's 1-based number of the evaluation that said stop.
        early_stopping: the wrapped :class:`earlystop.EarlyStopping`.
    """

    def __init__(
        self,
        patience: int,
        score_function: Callable[[Engine], Any],
        trainer: Engine,
        threshold: float = 0.0,
        cumulative: bool = False,
        threshold_mode: str = "abs",
        mode: str = "max",
        min_delta: float | None = None,
        min_delta_mode: str | None = None,
        cumulative_delta: bool | None = None,
        *,
        model: torch.nn.Module | None = None,
        restore_best_weights: bool = True,
        path: str | os.PathLike[str] | None = None,
        policy: Any = None,
        **options: Any,
    ) -> None:
        self._ready = False  # Ignite's constructor writes counter and best_score first
        super().__init__(
            patience,
            score_function,
            trainer,
            threshold,
            cumulative,
            threshold_mode,
            mode,
            min_delta,
            min_delta_mode,
            cumulative_delta,
        )
        if not isinstance(restore_best_weights, bool):
            raise ValueError(f"`restore_best_weights` must be a bool, got {restore_best_weights!r}")
        if model is not None and not callable(getattr(model, "state_dict", None)):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
        # super() resolved the deprecated aliases into these attributes
        self.threshold_mode: str
        delta = "min_rel_delta" if self.threshold_mode == "rel" else "min_delta"
        if policy is None:
            rules: dict[str, Any] = {"patience": patience, delta: self.threshold}
        elif self.threshold != 0.0:
            raise ValueError(
                f"`policy` replaces the rule options; got policy={str(policy)!r} and "
                f"threshold={self.threshold!r}"
            )
        else:
            rules = {"policy": policy}
        self.early_stopping: _FrontEnd = build_early_stopping(
            {"mode": mode, **rules, **options}, path
        )
        self.model = model
        self.restore_best_weights = restore_best_weights
        self.logger = _ignite_utils.setup_logger(f"{__name__}.{type(self).__name__}")
        self.last_decision: Decision | None = None
        self.restored_step: int | None = None
        self._ready = True

    # -- Ignite's attributes, backed by the core ------------------------------------------

    @property
    def counter(self) -> int:
        """Evaluations without improvement in a row; writing it sets the wait."""
        return self.early_stopping.counter if self._ready else 0

    @counter.setter
    def counter(self, value: int) -> None:
        if self._ready:
            self.early_stopping.counter = value

    @property
    def best_score(self) -> float | None:
        """The score to beat (the best so far), ``None`` before the first; writable."""
        return self.early_stopping.best_val_loss if self._ready else None

    @best_score.setter
    def best_score(self, value: float | None) -> None:
        if self._ready:
            self.early_stopping.best_val_loss = value

    @property
    def patience(self) -> int | None:
        """Evaluations without improvement before stopping; writable."""
        return self.early_stopping.patience if self._ready else self._patience

    @patience.setter
    def patience(self, value: int | None) -> None:
        if self._ready:
            self.early_stopping.patience = value
        else:
            self._patience = value

    @property
    def best_epoch(self) -> int | None:
        return self.early_stopping.best_epoch

    @property
    def stopped_epoch(self) -> int | None:
        return self.early_stopping.stopped_epoch

    # -- events -----------------------------------------------------------------------------

    def __call__(self, engine: Engine) -> None:
        self._follow_the_trainer()
        score = self.score_function(engine)
        keep = self.model is not None and (
            self.restore_best_weights or self.early_stopping.path is not None
        )
        decision = self.early_stopping(score, self.model if keep else None)
        self.last_decision = decision
        if not decision.improved and decision.step > self.early_stopping.stopper.start_from_epoch:
            self.logger.debug("EarlyStopping: %i / %s", decision.wait, self.patience)
        if decision.should_stop:
            self.logger.info("EarlyStopping: Stop training")
            self.trainer.terminate()

    def _follow_the_trainer(self) -> None:
        """Reset on the trainer's new runs and restore when it completes (registered once)."""
        events = _ignite_engine.Events
        if not self.trainer.has_event_handler(self._on_trainer_started, events.STARTED):
            self.trainer.add_event_handler(events.STARTED, self._on_trainer_started)
        if not self.trainer.has_event_handler(self.restore, events.COMPLETED):
            self.trainer.add_event_handler(events.COMPLETED, self.restore)

    def _on_trainer_started(self, trainer: Engine) -> None:
        if trainer.state.iteration == 0:  # a new run, not one that continues
            self.reset()

    def reset(self) -> None:
        """Forget every evaluation and the kept weights (Ignite's ``reset``)."""
        self.early_stopping.reset()
        self.last_decision = None
        self.restored_step = None

    def attach(
        self,
        engine: Engine,
        event: Any = None,
        reset_engine: Engine | None = None,
        reset_event: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Run after each evaluation of ``engine`` (``Events.COMPLETED`` by default).

        The trainer's new runs reset the state and its completion restores the best
        weights (with ``model``). With ``reset_engine``, ``reset()`` also runs on its
        ``reset_event`` (``Events.STARTED`` by default), as in Ignite; unlike Ignite, no
        reset is registered on ``engine`` itself, which would reset before every
        evaluation and never stop.
        """
        events = _ignite_engine.Events
        engine.add_event_handler(events.COMPLETED if event is None else event, self)
        if reset_engine is not None:
            reset_engine.add_event_handler(
                events.STARTED if reset_event is None else reset_event, self.reset
            )
        self._follow_the_trainer()

    def restore(self, engine: Engine | None = None) -> None:
        """Load the best weights into ``model`` (the trainer's ``COMPLETED`` handler)."""
        if self.restore_best_weights and self.model is not None:
            self.restored_step = restore_best(self.early_stopping, self.model)

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> OrderedDict[str, Any]:
        """Ignite's ``counter``, ``best_score``, ``threshold_mode`` and earlystop's state
        (``"earlystop"``); JSON-safe, no weights."""
        state = super().state_dict()
        state["earlystop"] = self.early_stopping.state_dict()
        return state  # type: ignore[no-any-return]

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`, or the state of Ignite's own handler (its
        ``counter`` and ``best_score`` become the wait and the reference)."""
        _ignite_base_load(self, state_dict)  # Ignite's checks of type and keys
        saved = state_dict.get("earlystop")
        if saved is not None:
            self.early_stopping.load_state_dict(saved)
        else:
            self.early_stopping.reset()
            self.best_score = state_dict["best_score"]
            self.counter = state_dict["counter"]
        self.threshold_mode = state_dict.get("threshold_mode", self.threshold_mode)
        self.last_decision = self.early_stopping.last_decision


def _ignite_base_load(handler: Any, state_dict: Any) -> None:
    mixins = require("ignite.base.mixins", "ignite")
    mixins.Serializable.load_state_dict(handler, state_dict)
