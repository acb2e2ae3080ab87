"""The framework-agnostic decision core."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from .decision import Decision, StopReason
from .history import Criterion, History, check_criterion
from .options import (
    Mode,
    NonFinite,
    check_count,
    check_delta,
    check_threshold,
    parse_enum,
)
from .protocols import ScheduleRule, Smoother
from .smoothed import SmoothedHistory
from .values import decode_float, encode_float, to_float


class PolicyBuilder(Protocol):
    """Builds a stopper from a policy SPEC; the policy layer registers one at import."""

    def __call__(self, policy: Any, *, mode: str, max_epochs: int | None = None) -> Stopper: ...


_policy_builder: list[PolicyBuilder] = []


def register_policy_builder(builder: PolicyBuilder) -> None:
    """Install the function :meth:`Stopper.from_policy` delegates to (the SPEC language
    lives in ``earlystop._rules.policy``, above this module, which calls this once)."""
    _policy_builder[:] = [builder]


__all__ = ["STATE_VERSION", "PolicyBuilder", "Stopper", "register_policy_builder"]

STATE_VERSION = 1
_STATE_FORMAT = "earlystop.Stopper"
_STATE_KEYS = frozenset(
    {"format", "version", "mode", "step", "best_value", "best_step", "wait", "reason", "history"}
)


class Stopper:
    """Decides, one evaluation at a time, whether training should stop.

    It never touches a model, never prints and never stops anything itself: :meth:`step`
    returns a :class:`Decision` that a front end acts on.

    An evaluation *improves* when its value is finite and beats the best so far by more
    than ``max(min_delta, min_rel_delta * |best|)`` (ties never improve). The first finite
    value improves unconditionally unless a ``baseline`` is given, in which case it must
    beat the baseline in the same way. The reference moves only on an improvement, so
    gains smaller than the delta accumulate until together they exceed it.

    Args:
        mode: ``"min"`` when lower is better, ``"max"`` when higher is better.
        patience: stop when this many consecutive counted evaluations have not improved
            (``0`` and ``1`` both stop at the first one that does not improve); ``None``
            disables the rule, leaving thresholds and criteria.
        min_delta: absolute margin an improvement must exceed (``>= 0``).
        min_rel_delta: margin as a fraction of ``|best|`` (``>= 0``); with a best of 0 only
            ``min_delta`` applies.
        baseline: a value that must be beaten before anything counts as an improvement.
        start_from_epoch: number of leading warm-up evaluations that are recorded but
            neither improve, count, nor stop.
        stopping_threshold: stop as soon as a value reaches it (``<=`` for min, ``>=`` for max).
        divergence_threshold: stop as soon as a value is strictly worse than it.
        on_nonfinite: what a NaN or infinite value does: ``"stop"`` (default) stops at once,
            ``"count"`` counts it as not improving, ``"raise"`` raises ``ValueError``. It
            never becomes the best.
        criteria: extra stopping rules (see :class:`Criterion`), checked in order after the
            built-in ones on every counted evaluation.
        smoothing: a :class:`Smoother` (``EMA``, ``MovingMean``, ``MovingMedian``): the
            improvement and patience rules and the criteria read the smoothed series
            (:attr:`rules_history`), while ``history``, ``Decision.value`` and the
            thresholds stay raw. :attr:`kept_step` follows raw improvements.
        scheduler: a :class:`SchedulerAware` that holds patience and criteria while the
            learning rate can still be reduced and/or restarts patience at a reduction.

    The table shows ``patience=2, min_delta=0.1`` in mode ``min``:

    >>> stopper = Stopper(patience=2, min_delta=0.1)
    >>> for loss in [1.0, 0.8, 0.75, 0.72, 0.69]:
    ...     d = stopper.step(loss)
    ...     print(d.step, d.value, d.improved, d.wait, d.best_step, d.should_stop)
    1 1.0 True 0 1 False
    2 0.8 True 0 2 False
    3 0.75 False 1 2 False
    4 0.72 False 2 2 True
    5 0.69 True 0 5 False
    """

    def __init__(
        self,
        *,
        mode: str | Mode = "min",
        patience: int | None = 7,
        min_delta: float = 0.0,
        min_rel_delta: float = 0.0,
        baseline: float | None = None,
        start_from_epoch: int = 0,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        on_nonfinite: str | NonFinite = "stop",
        criteria: Sequence[Criterion] = (),
        smoothing: Smoother | None = None,
        scheduler: ScheduleRule | None = None,
    ) -> None:
        self.mode: Mode = parse_enum("mode", mode, Mode)
        self.patience: int | None = check_count("patience", patience, allow_none=True)
        self.min_delta = check_delta("min_delta", min_delta)
        self.min_rel_delta = check_delta("min_rel_delta", min_rel_delta)
        self.baseline = check_threshold("baseline", baseline)
        self.start_from_epoch: int = check_count("start_from_epoch", start_from_epoch)
        self.stopping_threshold = check_threshold("stopping_threshold", stopping_threshold)
        self.divergence_threshold = check_threshold("divergence_threshold", divergence_threshold)
        self.on_nonfinite: NonFinite = parse_enum("on_nonfinite", on_nonfinite, NonFinite)
        self.criteria: tuple[Criterion, ...] = _check_criteria(criteria)
        if smoothing is not None and not callable(smoothing):
            raise TypeError(f"`smoothing` must be a Smoother or None, got {smoothing!r}")
        if scheduler is not None and not isinstance(scheduler, ScheduleRule):
            raise TypeError(f"`scheduler` must be a SchedulerAware or None, got {scheduler!r}")
        self.smoothing = smoothing
        self.scheduler = scheduler
        self._sign = self.mode.sign
        self.reset()

    @classmethod
    def from_policy(
        cls, policy: Any, *, mode: str | Mode = "min", max_epochs: int | None = None
    ) -> Stopper:
        """A stopper configured by a policy SPEC or :class:`earlystop.Policy`.

        The same as ``parse_policy(policy).build(mode=mode, max_epochs=max_epochs)`` (see
        :func:`earlystop.parse_policy`). ``max_epochs`` is the planned number of
        evaluations; budget-aware rules (``budget=...``) need it, the others ignore it.

        >>> Stopper.from_policy("gl=2").criteria
        (GL(alpha=2.0),)
        """
        parsed = parse_enum("mode", mode, Mode).value
        if not _policy_builder:  # pragma: no cover (earlystop/__init__ imports the policy layer)
            raise RuntimeError("no policy builder registered: import earlystop first")
        return _policy_builder[0](policy, mode=parsed, max_epochs=max_epochs)

    # -- state -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every evaluation (for a new cross-validation fold); options stay."""
        self.history = History(mode=self.mode, start_from=self.start_from_epoch)
        self._smoothed = (
            None if self.smoothing is None else SmoothedHistory(self.smoothing, self.history)
        )
        self._kept: tuple[float, int] | None = None
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.wait = 0
        self.last: Decision | None = None

    @property
    def rules_history(self) -> History:
        """The history that patience and criteria read: ``history`` smoothed, if smoothing."""
        return self.history if self._smoothed is None else self._smoothed.view

    @property
    def kept_step(self) -> int | None:
        """Step whose weights a front end keeps: the best raw value by the improvement rule.

        Without smoothing it is :attr:`best_step`; with smoothing, the evaluation with the
        best raw value (same delta and baseline rule), which may differ from the best
        smoothed one.
        """
        if self._smoothed is None:
            return self.best_step
        return None if self._kept is None else self._kept[1]

    @property
    def kept_value(self) -> float | None:
        """Raw value at :attr:`kept_step`."""
        if self._smoothed is None:
            return self.best_value
        return None if self._kept is None else self._kept[0]

    @property
    def step_count(self) -> int:
        """Number of evaluations recorded so far."""
        return len(self.history.values)

    def state_dict(self) -> dict[str, Any]:
        """A versioned, JSON-serializable snapshot of the state (not of the options)."""
        history = self.history
        return {
            "format": _STATE_FORMAT,
            "version": STATE_VERSION,
            "mode": self.mode.value,
            "step": len(history),
            "best_value": encode_float(self.best_value),
            "best_step": self.best_step,
            "wait": self.wait,
            "reason": None
            if self.last is None or self.last.reason is None
            else str(self.last.reason),
            "history": {
                "values": [encode_float(v) for v in history.values],
                "metrics": {
                    name: [encode_float(v) for v in series]
                    for name, series in history.metrics.items()
                },
            },
        }

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`; later decisions are those of the original run.

        Raises:
            ValueError: when the format, version or mode does not match, or keys are missing.
        """
        _check_state(state, self.mode)
        values = [decode_float(v, "history.values") for v in state["history"]["values"]]
        metrics = {
            str(name): [decode_float(v, f"history.metrics.{name}") for v in series]
            for name, series in state["history"]["metrics"].items()
        }
        if len(values) != state["step"] or any(len(s) != len(values) for s in metrics.values()):
            raise ValueError("state `history` does not have one entry per step")
        best_value = (
            None if state["best_value"] is None else decode_float(state["best_value"], "best_value")
        )
        best_step = state["best_step"]
        # with smoothing the best is a smoothed value, so only its finiteness is checkable
        recorded = values[best_step - 1] if best_value is not None else None
        if best_value is not None and not (
            math.isfinite(best_value) and (self.smoothing is not None or recorded == best_value)
        ):
            raise ValueError(
                f"state entry `best_value` must be the finite value recorded at `best_step` "
                f"{best_step} ({values[best_step - 1]!r}), got {state['best_value']!r}"
            )
        reason = _parse_reason(state["reason"])  # validated before anything is replaced
        self.reset()
        self.history.values = values
        self.history.metrics = metrics
        if self._smoothed is not None:
            self._smoothed.update()
            for index in range(self.start_from_epoch, len(values)):
                self._track_kept(values[index], index + 1)
        self.best_value = best_value
        self.best_step = best_step
        self.wait = int(state["wait"])
        if values:
            self.last = self._decision(values[-1], reason is not None, False, reason, "restored")

    # -- decisions ---------------------------------------------------------------------

    def improves(self, value: float) -> bool:
        """Whether ``value`` would be an improvement over the current reference."""
        return self._beats(value, self.best_value if self.best_step is not None else None)

    def _beats(self, value: float, best: float | None) -> bool:
        if not math.isfinite(value):
            return False
        reference = best if best is not None else self.baseline
        if reference is None:
            return True
        margin = max(self.min_delta, self.min_rel_delta * abs(reference))
        return bool(self._sign * (reference - value) > margin)

    def step(self, value: Any, **metrics: Any) -> Decision:
        """Record one evaluation and decide.

        Args:
            value: the monitored value (see :func:`to_float` for what is accepted).
            **metrics: other values of this evaluation that criteria may read
                (``train_loss=...``, ``lr=...``).

        Raises:
            TypeError: when a value is not a real number or a one-element array/tensor.
            ValueError: when the value is not finite and ``on_nonfinite="raise"``.
        """
        current = to_float(value)
        extra = {name: to_float(metric, name) for name, metric in metrics.items()}
        finite = math.isfinite(current)
        counted = len(self.history.values) >= self.start_from_epoch
        if counted and not finite and self.on_nonfinite is NonFinite.RAISE:
            raise ValueError(
                f"monitored value is {current} at evaluation {len(self.history.values) + 1} "
                "(on_nonfinite='raise')"
            )
        self.history.append(current, extra)
        monitored = current if self._smoothed is None else self._smoothed.update()
        if not counted:
            decision = self._decision(current, False, False, None, "warm-up evaluation")
        else:
            self._track_kept(current, len(self.history.values))
            decision = self._counted_step(current, finite, monitored)
        self.last = decision
        return decision

    def _track_kept(self, raw: float, step: int) -> None:
        if self._smoothed is not None and self._beats(
            raw, None if self._kept is None else self._kept[0]
        ):
            self._kept = (raw, step)

    def _counted_step(self, current: float, finite: bool, monitored: float) -> Decision:
        improved = self.improves(monitored)
        if improved:
            self.best_value, self.best_step, self.wait = monitored, len(self.history.values), 0
        elif self.scheduler is not None and self.scheduler.restarts(self.rules_history):
            self.wait = 1
        else:
            self.wait += 1
        reason, detail = self._stop_reason(current, finite, improved)
        if reason is None:
            progress = self._progress_detail(monitored, improved)
            detail = f"{progress}; {detail}" if detail else progress
        return self._decision(current, reason is not None, improved, reason, detail)

    def _stop_reason(self, current: float, finite: bool, improved: bool) -> tuple[str | None, str]:
        sign = self._sign
        if not finite and self.on_nonfinite is NonFinite.STOP:
            return StopReason.NON_FINITE, f"monitored value is {current}"
        div = self.divergence_threshold
        if finite and div is not None and sign * (current - div) > 0:
            return StopReason.DIVERGENCE_THRESHOLD, (
                f"{current:.6g} is worse than divergence_threshold {div:.6g}"
            )
        target = self.stopping_threshold
        if finite and target is not None and sign * (target - current) >= 0:
            return StopReason.STOPPING_THRESHOLD, (
                f"{current:.6g} reached stopping_threshold {target:.6g}"
            )
        if self.scheduler is not None and self.scheduler.holds(self.rules_history):
            return None, "held: the learning rate can still be reduced"
        if not improved and self.patience is not None and self.wait >= self.patience:
            return StopReason.PATIENCE, (
                f"no improvement for {self.wait} evaluations (patience {self.patience}); "
                f"best {_fmt(self.best_value)} at evaluation {self.best_step}"
            )
        for criterion in self.criteria:
            reason = criterion(self.rules_history)
            if reason:
                return str(reason), f"criterion {reason}"
        return None, ""

    def _progress_detail(self, current: float, improved: bool) -> str:
        if improved:
            return f"improved to {current:.6g}"
        limit = "no patience" if self.patience is None else f"{self.wait} of {self.patience}"
        return f"no improvement ({limit}); best {_fmt(self.best_value)}"

    def _decision(
        self, current: float, stop: bool, improved: bool, reason: str | None, detail: str
    ) -> Decision:
        # positional: this runs on every evaluation (field order of Decision)
        return Decision(
            len(self.history.values),
            current,
            stop,
            improved,
            reason,
            self.best_value,
            self.best_step,
            self.wait,
            detail,
        )

    def __repr__(self) -> str:
        return (
            f"Stopper(mode={self.mode.value!r}, patience={self.patience}, "
            f"min_delta={self.min_delta}, min_rel_delta={self.min_rel_delta}, "
            f"step={len(self.history.values)}, best_step={self.best_step}, wait={self.wait})"
        )


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def _check_criteria(criteria: Any) -> tuple[Criterion, ...]:
    if isinstance(criteria, (str, bytes)) or not isinstance(criteria, Sequence):
        raise TypeError(f"`criteria` must be a sequence of criteria, got {type(criteria).__name__}")
    return tuple(
        check_criterion(criterion, f"`criteria[{index}]`")
        for index, criterion in enumerate(criteria)
    )


def _parse_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise ValueError(f"state entry `reason` must be a string or None, got {reason!r}")
    try:
        return StopReason(reason)
    except ValueError:
        return reason


def _check_state(state: Any, mode: Mode) -> None:
    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict from state_dict(), got {type(state).__name__}")
    missing = sorted(_STATE_KEYS - state.keys())
    if missing:
        raise ValueError(f"state is missing keys: {', '.join(missing)}")
    if state["format"] != _STATE_FORMAT:
        raise ValueError(f"state format must be {_STATE_FORMAT!r}, got {state['format']!r}")
    if state["version"] != STATE_VERSION:
        raise ValueError(
            f"state version {state['version']!r} is not supported (expected {STATE_VERSION})"
        )
    if state["mode"] != mode.value:
        raise ValueError(
            f"state was recorded with mode={state['mode']!r} but this stopper has "
            f"mode={mode.value!r}"
        )
    step, best_step, wait = state["step"], state["best_step"], state["wait"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"state entry `step` must be an int >= 0, got {step!r}")
    if best_step is not None and (
        isinstance(best_step, bool) or not isinstance(best_step, int) or not 1 <= best_step <= step
    ):
        raise ValueError(
            f"state entry `best_step` must be None or an int in 1..{step}, got {best_step!r}"
        )
    if isinstance(wait, bool) or not isinstance(wait, int) or wait < 0:
        raise ValueError(f"state entry `wait` must be an int >= 0, got {wait!r}")
    if (best_step is None) != (state["best_value"] is None):
        raise ValueError("state entries `best_value` and `best_step` must both be set or both None")
    if wait > step - (best_step or 0):
        raise ValueError(
            f"state entry `wait` must be <= {step - (best_step or 0)} (the evaluations after "
            f"`best_step`, or `step` before any improvement), got {wait!r}"
        )
    history = state["history"]
    if not isinstance(history, dict) or {"values", "metrics"} - history.keys():
        raise ValueError("state `history` must be a dict with keys 'metrics' and 'values'")
    values, metrics = history["values"], history["metrics"]
    if not isinstance(values, list):
        raise ValueError(f"state `history.values` must be a list, got {type(values).__name__}")
    if not isinstance(metrics, dict):
        raise ValueError("state `history.metrics` must be a dict of name -> list of numbers")
    for name, series in metrics.items():
        if not isinstance(name, str) or not isinstance(series, list):
            raise ValueError(
                f"state `history.metrics` must map names to lists, got {name!r}: "
                f"{type(series).__name__}"
            )
