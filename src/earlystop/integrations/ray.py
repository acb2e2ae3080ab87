"""A Ray Tune ``Stopper`` that applies any earlystop policy to each trial.

>>> from earlystop.integrations.ray import EarlyStoppingStopper
>>> stopper = EarlyStoppingStopper("loss", patience=2)
>>> [stopper("trial_1", {"loss": loss}) for loss in [1.0, 0.5, 0.6, 0.7]]
[False, False, False, True]
>>> str(stopper.decisions["trial_1"].reason), stopper.decisions["trial_1"].best_step
('patience', 2)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._core.decision import Decision
from .._core.options import Mode, check_count, parse_enum
from .._core.stopper import Stopper
from .._rules.policy import Policy, parse_policy
from ._support import check_monitor, pick_metric, require

_tune_stopper = require("ray.tune.stopper", "ray")

_RayStopper: Any = _tune_stopper.Stopper

__all__ = ["EarlyStoppingStopper"]


class EarlyStoppingStopper(_RayStopper):  # type: ignore[misc]
    """Stop each Ray Tune trial when earlystop would stop its training.

    Pass it as ``tune.RunConfig(stop=EarlyStoppingStopper("val_loss", patience=5))``.
    Every result a trial reports is one evaluation of that trial's own
    :class:`earlystop.Stopper`, built from ``policy`` or the keyword options; the trial
    stops when the decision says so. ``decisions[trial_id]`` holds each trial's latest
    :class:`earlystop.Decision` (``best_value``, ``best_step``, ``reason``).

    **Stopping the whole experiment** (``experiment_patience=K``, off by default): each
    trial that ends (stopped here, or its result says ``done``) contributes its best value
    to an experiment-level rule with the same ``mode`` and ``min_delta``/``min_rel_delta``
    margin: when ``K`` trials in a row end without beating the best value of every trial
    that ended before them, :meth:`stop_all` turns true and Ray stops all trials. It only
    sees trials that end while it watches: trials stopped by a scheduler or by another
    stopper do not count. The first trial to end always sets the reference.

    Args:
        metric: the key of the reported results to read.
        mode: ``"min"`` (default) or ``"max"``.
        policy: a policy SPEC (``"auto"``, ``"ema=0.3,patience=5"``, ``"gl=2"``) or a
            :class:`earlystop.Policy`, instead of the options.
        experiment_patience: see above; ``None`` never stops the experiment.
        **options: the keyword options of :class:`earlystop.Stopper` (``patience``
            (default 7), ``min_delta``, ``min_rel_delta``, ``baseline``,
            ``start_from_epoch``, thresholds, ``on_nonfinite``, ``criteria``,
            ``smoothing``, ``scheduler``).

    Raises:
        KeyError: at a result without ``metric`` (the message lists the keys reported).
    """

    def __init__(
        self,
        metric: str,
        mode: str | Mode = "min",
        *,
        policy: str | Policy | None = None,
        experiment_patience: int | None = None,
        **options: Any,
    ) -> None:
        if policy is not None and options:
            raise ValueError(
                "give either `policy` or stopper options, not both: got policy="
                f"{policy!r} and {', '.join(sorted(options))}"
            )
        self.metric = check_monitor(metric)
        self.mode = parse_enum("mode", mode, Mode)
        self.policy = None if policy is None else parse_policy(policy)
        self.options = options
        self.experiment_patience: int | None = check_count(
            "experiment_patience", experiment_patience, allow_none=True
        )
        template = self._new_stopper()  # validates the options now
        self._experiment = Stopper(
            mode=self.mode,
            patience=self.experiment_patience,
            min_delta=template.min_delta,
            min_rel_delta=template.min_rel_delta,
            on_nonfinite="count",
        )
        self.trials: dict[str, Stopper] = {}
        self.decisions: dict[str, Decision] = {}
        self.ended: list[str] = []

    def _new_stopper(self) -> Stopper:
        if self.policy is not None:
            return self.policy.build(mode=self.mode.value)
        return Stopper(mode=self.mode, **self.options)

    def __call__(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Record ``result[metric]`` for ``trial_id``; whether the trial should stop."""
        if trial_id in self.ended:  # Ray may report a result already in flight
            return True
        stopper = self.trials.get(trial_id)
        if stopper is None:
            stopper = self.trials[trial_id] = self._new_stopper()
        value = pick_metric(result, self.metric, f"the results of trial {trial_id}")
        decision = stopper.step(value)
        self.decisions[trial_id] = decision
        if decision.should_stop or result.get("done") is True:
            self._end(trial_id, stopper)
        return decision.should_stop

    def _end(self, trial_id: str, stopper: Stopper) -> None:
        self.ended.append(trial_id)
        best = stopper.kept_value
        if self.experiment_patience is not None:
            self._experiment.step(float("nan") if best is None else best)

    def stop_all(self) -> bool:
        """Whether ``experiment_patience`` ended trials in a row beat no earlier trial."""
        last = self._experiment.last
        return last is not None and last.should_stop

    @property
    def best_trial(self) -> str | None:
        """The trial with the best value so far (by the improvement rule's direction)."""
        sign = self.mode.sign
        ranked = [
            (sign * stopper.kept_value, trial_id)
            for trial_id, stopper in self.trials.items()
            if stopper.kept_value is not None
        ]
        return min(ranked)[1] if ranked else None
