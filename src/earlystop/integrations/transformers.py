"""Hugging Face ``Trainer`` callback driven by the earlystop core.

>>> from earlystop.integrations.transformers import EarlyStoppingCallback
>>> callback = EarlyStoppingCallback(monitor="eval_loss", patience=2)
>>> callback.state_name
'earlystop:eval_loss'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._support import AdapterState, pick_metric, require, restore_best

_transformers = require("transformers", "transformers")

_TrainerCallback: Any = _transformers.TrainerCallback

__all__ = ["EarlyStoppingCallback"]


class EarlyStoppingCallback(AdapterState, _TrainerCallback):  # type: ignore[misc]
    """Stop a ``Trainer`` with earlystop's rules, keeping the best weights in memory.

    Each evaluation (``on_evaluate``) feeds ``metrics[monitor]`` to an
    :class:`earlystop.EarlyStopping`; a stop decision sets
    ``control.should_training_stop``. At the end of training the weights of the best
    evaluation are loaded back into the model from memory: no ``load_best_model_at_end``,
    no ``metric_for_best_model``, no checkpoint on disk is needed.

    Resuming: after every evaluation the state is written to
    ``state.stateful_callbacks[state_name]``, which the ``Trainer`` saves in
    ``trainer_state.json`` with each checkpoint; ``train(resume_from_checkpoint=...)``
    restores it at ``on_train_begin`` into this very callback (with its criteria), so
    decisions continue as in the uninterrupted run. Best weights kept in memory do not
    survive a restart: give ``path=`` (written on rank 0) to restore them after one.

    Args:
        monitor: the metric key, with the Trainer's ``eval_`` prefix (``"eval_loss"``).
        restore_best_weights: load the best weights into the model when training ends.
        path: also write the best weights to this file on every improvement.
        **options: any keyword option of :class:`earlystop.EarlyStopping`.

    Raises:
        KeyError: at the first evaluation, when ``monitor`` is not among the metrics.
    """

    def __init__(
        self,
        monitor: str = "eval_loss",
        *,
        restore_best_weights: bool = True,
        path: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> None:
        self._init_adapter(monitor, restore_best_weights, path, options)

    @property
    def state_name(self) -> str:
        """The key of this callback's state in ``TrainerState.stateful_callbacks``."""
        return f"earlystop:{self.monitor}"

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        strategy = getattr(args, "eval_strategy", getattr(args, "evaluation_strategy", None))
        if str(getattr(strategy, "value", strategy)) == "no":
            raise ValueError(
                "EarlyStoppingCallback needs evaluations to decide, but "
                "TrainingArguments(eval_strategy='no') never evaluates, so training would run "
                "its whole budget: set eval_strategy='epoch' or 'steps'"
            )
        saved = (state.stateful_callbacks or {}).get(self.state_name)
        if isinstance(saved, Mapping):
            self.early_stopping.load_state_dict(dict(saved))
            self.last_decision = self.early_stopping.last_decision

    def on_evaluate(
        self,
        args: Any,
        state: Any,
        control: Any,
        metrics: Mapping[str, Any] | None = None,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        value = pick_metric(metrics, self.monitor, "the evaluation metrics")
        decision = self.early_stopping(value, model)
        self.last_decision = decision
        if state.stateful_callbacks is None:
            state.stateful_callbacks = {}
        state.stateful_callbacks[self.state_name] = self.early_stopping.state_dict()
        if decision.should_stop:
            control.should_training_stop = True

    def on_train_end(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        if self.restore_best_weights and model is not None:
            self.restored_step = restore_best(self.early_stopping, model)
