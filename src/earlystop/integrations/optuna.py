"""An Optuna pruner that applies any earlystop policy to each trial's reported values.

The pruner is a pure function of ``trial.intermediate_values``: each call replays the
reported values, in step order, through a fresh :class:`earlystop.Stopper` and prunes
when the latest one says stop. Nothing is kept between calls, so distributed or resumed
studies need no extra state, exactly like Optuna's own pruners.

>>> import optuna
>>> from earlystop.integrations.optuna import EarlyStoppingPruner
>>> optuna.logging.set_verbosity(optuna.logging.WARNING)
>>> def objective(trial: optuna.Trial) -> float:
...     for step, loss in enumerate([1.0, 0.5, 0.6, 0.7, 0.8, 0.9]):
...         trial.report(loss, step)
...         if trial.should_prune():
...             trial.set_user_attr("pruned_at", step)
...             raise optuna.TrialPruned()
...     return loss
>>> study = optuna.create_study(pruner=EarlyStoppingPruner(patience=2))
>>> study.optimize(objective, n_trials=1)
>>> study.trials[0].user_attrs["pruned_at"], study.trials[0].state.name
(3, 'PRUNED')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._core.decision import Decision
from .._core.options import Mode, parse_enum
from .._core.stopper import Stopper
from .._rules.policy import Policy, parse_policy
from ._support import require

_optuna = require("optuna", "optuna")

if TYPE_CHECKING:
    import optuna

_BasePruner: Any = _optuna.pruners.BasePruner

__all__ = ["EarlyStoppingPruner"]


class EarlyStoppingPruner(_BasePruner):  # type: ignore[misc]
    """Prune a trial when earlystop would stop its training.

    Args:
        mode: ``"min"`` or ``"max"``; ``None`` (default) follows the study's direction.
        policy: a policy SPEC (``"auto"``, ``"ema=0.3,patience=5"``, ``"gl=2"``) or a
            :class:`earlystop.Policy`, instead of the options below.
        **options: the keyword options of :class:`earlystop.Stopper` (``patience`` (default
            7), ``min_delta``, ``min_rel_delta``, ``baseline``, ``start_from_epoch``,
            thresholds, ``on_nonfinite``, ``criteria``, ``smoothing``, ``scheduler``). With
            the default ``on_nonfinite="stop"`` a NaN report prunes the trial at once.

    Every reported value counts as one evaluation, whatever its ``step`` number.
    Multi-objective studies are refused (``ValueError``): trials report one value.
    """

    def __init__(
        self,
        *,
        mode: str | Mode | None = None,
        policy: str | Policy | None = None,
        **options: Any,
    ) -> None:
        if policy is not None and options:
            raise ValueError(
                "give either `policy` or stopper options, not both: got policy="
                f"{policy!r} and {', '.join(sorted(options))}"
            )
        self.mode = mode
        self.policy = None if policy is None else parse_policy(policy)
        self.options: dict[str, Any] = {"patience": 7, **options}
        self._stopper("min" if mode is None else mode)  # validate now

    def _stopper(self, mode: str | Mode) -> Stopper:
        if self.policy is not None:
            return self.policy.build(mode=parse_enum("mode", mode, Mode).value)
        return Stopper(mode=mode, **self.options)

    def replay(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> Decision | None:
        """The decision on the latest reported value, ``None`` before the first report."""
        reports = trial.intermediate_values
        if not reports:
            return None
        stopper = self._stopper(self._mode(study))
        decision = None
        for step in sorted(reports):
            decision = stopper.step(reports[step])
        return decision

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        decision = self.replay(study, trial)
        return decision is not None and decision.should_stop

    def _mode(self, study: optuna.study.Study) -> str | Mode:
        if self.mode is not None:
            return self.mode
        if len(study.directions) != 1:
            raise ValueError(
                "EarlyStoppingPruner needs a single-objective study, got "
                f"{len(study.directions)} directions"
            )
        maximize = study.direction == _optuna.study.StudyDirection.MAXIMIZE
        return "max" if maximize else "min"
