"""Hugging Face ``Trainer`` callback driven by the earlystop core, under HF's name.

It takes HF's arguments (``early_stopping_patience``, ``early_stopping_threshold``) and
reads ``metric_for_best_model`` / ``greater_is_better`` from the training arguments:

>>> from earlystop.integrations.transformers import EarlyStoppingCallback
>>> callback = EarlyStoppingCallback(early_stopping_patience=3, early_stopping_threshold=0.01)
>>> callback.early_stopping_patience, callback.early_stopping_threshold
(3, 0.01)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._core.options import check_count, check_delta
from ._support import AdapterState, build_early_stopping, pick_metric, require, restore_best

_transformers = require("transformers", "transformers")

_TrainerCallback: Any = _transformers.TrainerCallback

__all__ = ["EarlyStoppingCallback", "check_training_arguments"]


def check_training_arguments(args: Any, state: Any = None) -> None:
    """Refuse ``TrainingArguments`` under which an early-stopping callback can never act.

    Args:
        args: the ``TrainingArguments``.
        state: the ``TrainerState`` at ``on_train_begin`` (its ``max_steps``), if known.

    Raises:
        ValueError: ``eval_strategy`` is ``"no"``: ``on_evaluate`` never runs during
            training, so nothing would ever be checked or stopped; or it is ``"steps"``
            with ``eval_steps`` (a step count) beyond the run's ``max_steps``.
    """
    strategy = getattr(args, "eval_strategy", None)
    strategy = str(getattr(strategy, "value", strategy))
    if strategy == "no":
        raise ValueError(
            "EarlyStoppingCallback needs evaluations during training, but the "
            "TrainingArguments have eval_strategy='no': set eval_strategy='epoch' or "
            "'steps' (with eval_steps)"
        )
    steps = getattr(args, "eval_steps", None)
    total = getattr(state, "max_steps", None)
    if (
        strategy == "steps"
        and isinstance(steps, (int, float))
        and steps >= 1
        and isinstance(total, int)
        and 0 < total < steps
    ):
        raise ValueError(
            f"EarlyStoppingCallback needs evaluations during training, but eval_steps={steps!r} "
            f"is beyond the {total} training steps: no evaluation would run"
        )


def metric_key(name: str) -> str:
    """``metric_for_best_model`` as the key of the evaluation metrics (HF adds ``eval_``)."""
    return name if name.startswith("eval_") else f"eval_{name}"


class EarlyStoppingCallback(AdapterState, _TrainerCallback):  # type: ignore[misc]
    """Stop a ``Trainer`` with earlystop's rules, keeping the best weights in memory.

    Change the import line of HF's callback: ``early_stopping_patience`` (default 1) and
    ``early_stopping_threshold`` (default 0.0, an absolute margin) mean what they mean in
    HF, and without ``monitor`` the metric and its direction come from the training
    arguments' ``metric_for_best_model`` (with HF's ``eval_`` prefix; ``"eval_loss"``
    when unset) and ``greater_is_better``. Unlike HF's callback it needs neither
    ``load_best_model_at_end`` nor checkpoints: at the end of training the weights of the
    best evaluation are loaded back from memory (``restore_best_weights=True``).

    Each evaluation (``on_evaluate``) feeds ``metrics[monitor]`` to an
    :class:`earlystop.EarlyStopping`; a stop decision sets ``control.should_training_stop``.
    Training arguments under which it could never act are refused at ``on_train_begin``
    (see :func:`check_training_arguments`).

    Resuming: after every evaluation the state is written to
    ``state.stateful_callbacks[state_name]``, which the ``Trainer`` saves in
    ``trainer_state.json`` with each checkpoint; ``train(resume_from_checkpoint=...)``
    restores it at ``on_train_begin`` into this very callback (with its criteria), so
    decisions continue as in the uninterrupted run. Best weights kept in memory do not
    survive a restart: give ``path=`` (written on rank 0) to restore them after one.

    Args:
        early_stopping_patience: evaluations without improvement before stopping (HF's
            name; ``patience=`` is earlystop's, give one of them).
        early_stopping_threshold: an improvement must beat the best by more than this
            (HF's name; ``min_delta=`` is earlystop's, give one of them).
        monitor: the metric key (``"eval_loss"``); default: from the training arguments.
        mode: ``"min"`` or ``"max"``; default: ``greater_is_better`` of the training
            arguments when the monitored metric is theirs, else ``"min"``.
        restore_best_weights: load the best weights into the model when training ends.
        path: also write the best weights to this file on every improvement.
        **options: any keyword option of :class:`earlystop.EarlyStopping`.

    Raises:
        KeyError: at the first evaluation, when ``monitor`` is not among the metrics.
    """

    def __init__(
        self,
        early_stopping_patience: int | None = None,
        early_stopping_threshold: float | None = None,
        *,
        monitor: str | None = None,
        mode: str | None = None,
        restore_best_weights: bool = True,
        path: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> None:
        patience = _one_of("early_stopping_patience", early_stopping_patience, "patience", options)
        threshold = _one_of(
            "early_stopping_threshold", early_stopping_threshold, "min_delta", options
        )
        policy = options.get("policy")
        if policy is None:
            options["patience"] = 1 if patience is None else patience
            options["min_delta"] = 0.0 if threshold is None else threshold
        else:
            for name, value in [("patience", patience), ("min_delta", threshold)]:
                if value is not None:
                    raise ValueError(
                        f"`policy` replaces the rule options; got policy={str(policy)!r} and "
                        f"{name}={value!r}"
                    )
        self._options = options
        self._path = path
        self._mode = mode
        self._init_adapter(
            "eval_loss" if monitor is None else monitor,
            restore_best_weights,
            path,
            {**options, "mode": "min" if mode is None else mode},  # validated now
        )
        self._monitor_given = monitor is not None

    # -- HF's attributes -------------------------------------------------------------------

    @property
    def early_stopping_patience(self) -> int | None:
        """Evaluations without improvement before stopping (HF's name); writable."""
        return self.early_stopping.patience

    @early_stopping_patience.setter
    def early_stopping_patience(self, value: int | None) -> None:
        checked = check_count("early_stopping_patience", value)
        self.early_stopping.patience = checked
        self._options["patience"] = checked

    @property
    def early_stopping_threshold(self) -> float:
        """The margin an improvement must exceed (HF's name); writable."""
        return self.early_stopping.stopper.min_delta

    @early_stopping_threshold.setter
    def early_stopping_threshold(self, value: float) -> None:
        self.early_stopping.stopper.min_delta = check_delta("early_stopping_threshold", value)
        self._options["min_delta"] = self.early_stopping.stopper.min_delta

    @property
    def early_stopping_patience_counter(self) -> int:
        """Evaluations without improvement in a row (HF's name); writable."""
        return self.early_stopping.counter

    @early_stopping_patience_counter.setter
    def early_stopping_patience_counter(self, value: int) -> None:
        self.early_stopping.counter = value

    @property
    def state_name(self) -> str:
        """The key of this callback's state in ``TrainerState.stateful_callbacks``."""
        return f"earlystop:{self.monitor}"

    # -- Trainer events ---------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        check_training_arguments(args, state)
        self._follow_the_arguments(args)
        saved = (state.stateful_callbacks or {}).get(self.state_name)
        if isinstance(saved, Mapping):
            self.early_stopping.load_state_dict(dict(saved))
            self.last_decision = self.early_stopping.last_decision

    def _follow_the_arguments(self, args: Any) -> None:
        """Take the monitored metric and its direction from the training arguments."""
        named = getattr(args, "metric_for_best_model", None)
        if not self._monitor_given and named:
            self.monitor = metric_key(str(named))
        mode = self._mode
        if mode is None and named and metric_key(str(named)) == self.monitor:
            greater = getattr(args, "greater_is_better", None)
            if greater is None:  # as TrainingArguments decides it
                greater = not self.monitor.endswith("loss")
            mode = "max" if greater else "min"
        mode = "min" if mode is None else mode
        if (
            mode != self.early_stopping.stopper.mode.value
            and self.early_stopping.stopper.step_count
        ):
            raise ValueError(
                f"the training arguments make {self.monitor!r} a {mode!r} metric, but this "
                f"callback already decided in mode {self.early_stopping.stopper.mode.value!r}"
            )
        if mode != self.early_stopping.stopper.mode.value:
            self.early_stopping = build_early_stopping({**self._options, "mode": mode}, self._path)

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


def _one_of(hf_name: str, hf_value: Any, our_name: str, options: dict[str, Any]) -> Any:
    """The value given under HF's name or under earlystop's (popped from ``options``)."""
    ours = options.pop(our_name, None)
    if hf_value is not None and ours is not None and hf_value != ours:
        raise ValueError(
            f"`{our_name}` is earlystop's name for `{hf_name}`: give one of them, got "
            f"{hf_name}={hf_value!r} and {our_name}={ours!r}"
        )
    if hf_value is not None:
        if hf_name == "early_stopping_patience":
            return check_count(hf_name, hf_value)
        return check_delta(hf_name, hf_value)
    return ours
