"""Every bad option and every bad saved state is refused with a message naming it."""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from earlystop import EarlyStopping, Mode, NonFinite, Stopper


def _gen() -> Any:
    return (c for c in [print])


COUNT = "`{}` must be an int >= 0{}, got {}"
DELTA = "`{}` must be a finite float >= 0, got {}"
LEVEL = "`{}` must be a finite float or None, got {}"

# (argument, bad value, exact message) shared by Stopper and EarlyStopping
CORE_BAD: list[tuple[str, Any, str]] = [
    ("mode", "minimum", "`mode` must be 'min' or 'max', got 'minimum'"),
    ("mode", "MIN", "`mode` must be 'min' or 'max', got 'MIN'"),
    ("mode", None, "`mode` must be 'min' or 'max', got None"),
    ("mode", NonFinite.STOP, "`mode` must be 'min' or 'max', got <NonFinite.STOP: 'stop'>"),
    ("patience", -1, COUNT.format("patience", " or None", "-1")),
    ("patience", 1.5, COUNT.format("patience", " or None", "1.5")),
    ("patience", 2.0, COUNT.format("patience", " or None", "2.0")),
    ("patience", True, COUNT.format("patience", " or None", "True")),
    ("patience", "7", COUNT.format("patience", " or None", "'7'")),
    ("min_delta", -0.1, DELTA.format("min_delta", "-0.1")),
    ("min_delta", math.nan, DELTA.format("min_delta", "nan")),
    ("min_delta", math.inf, DELTA.format("min_delta", "inf")),
    ("min_delta", "0.1", DELTA.format("min_delta", "'0.1'")),
    ("min_delta", True, DELTA.format("min_delta", "True")),
    ("min_rel_delta", -0.5, DELTA.format("min_rel_delta", "-0.5")),
    ("min_rel_delta", math.nan, DELTA.format("min_rel_delta", "nan")),
    ("min_rel_delta", None, DELTA.format("min_rel_delta", "None")),
    ("baseline", math.nan, LEVEL.format("baseline", "nan")),
    ("baseline", -math.inf, LEVEL.format("baseline", "-inf")),
    ("baseline", "1.0", LEVEL.format("baseline", "'1.0'")),
    ("baseline", False, LEVEL.format("baseline", "False")),
    ("start_from_epoch", -1, COUNT.format("start_from_epoch", "", "-1")),
    ("start_from_epoch", None, COUNT.format("start_from_epoch", "", "None")),
    ("start_from_epoch", 2.0, COUNT.format("start_from_epoch", "", "2.0")),
    ("stopping_threshold", math.nan, LEVEL.format("stopping_threshold", "nan")),
    ("stopping_threshold", [0.5], LEVEL.format("stopping_threshold", "[0.5]")),
    ("divergence_threshold", math.inf, LEVEL.format("divergence_threshold", "inf")),
    ("divergence_threshold", "10", LEVEL.format("divergence_threshold", "'10'")),
    (
        "on_nonfinite",
        "skip",
        "`on_nonfinite` must be 'stop' or 'count' or 'raise', got 'skip'",
    ),
    ("on_nonfinite", None, "`on_nonfinite` must be 'stop' or 'count' or 'raise', got None"),
]

CORE_TYPE_BAD: list[tuple[str, Any, str]] = [
    ("criteria", "patience", "`criteria` must be a sequence of criteria, got str"),
    ("criteria", 5, "`criteria` must be a sequence of criteria, got int"),
    ("criteria", _gen(), "`criteria` must be a sequence of criteria, got generator"),
    ("criteria", [print, 1], "`criteria[1]` must be callable as criterion(history), got int"),
]


def _ids(rows: list[tuple[str, Any, str]]) -> list[str]:
    return [f"{name}={value!r}" for name, value, _ in rows]


@pytest.mark.parametrize(("name", "value", "message"), CORE_BAD, ids=_ids(CORE_BAD))
@pytest.mark.parametrize("front", ["Stopper", "EarlyStopping"])
def test_bad_core_option(front: str, name: str, value: Any, message: str) -> None:
    make: Any = Stopper if front == "Stopper" else EarlyStopping
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make(**{name: value})


@pytest.mark.parametrize(("name", "value", "message"), CORE_TYPE_BAD, ids=_ids(CORE_TYPE_BAD))
@pytest.mark.parametrize("front", ["Stopper", "EarlyStopping"])
def test_bad_criteria(front: str, name: str, value: Any, message: str) -> None:
    make: Any = Stopper if front == "Stopper" else EarlyStopping
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        make(**{name: value})


FRONT_BAD: list[tuple[str, Any, str]] = [
    ("delta", -0.001, DELTA.format("delta", "-0.001")),
    ("delta", "0.1", DELTA.format("delta", "'0.1'")),
    ("delta", math.nan, DELTA.format("delta", "nan")),
    ("verbose", 1, "`verbose` must be a bool, got 1"),
    ("verbose", "yes", "`verbose` must be a bool, got 'yes'"),
    ("trace_func", "print", "`trace_func` must be callable or None, got 'print'"),
    ("restore_best_weights", 1, "`restore_best_weights` must be a bool, got 1"),
    ("restore_best_weights", None, "`restore_best_weights` must be a bool, got None"),
    ("path", "", "`path` must be a file path or None, got ''"),
    ("path", 3, "`path` must be a file path (str or PathLike) or None, got 3"),
    ("path", b"ckpt.pt", "`path` must be a file path (str or PathLike) or None, got b'ckpt.pt'"),
]


@pytest.mark.parametrize(("name", "value", "message"), FRONT_BAD, ids=_ids(FRONT_BAD))
def test_bad_early_stopping_option(name: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        EarlyStopping(**{name: value})


def test_positional_arguments_follow_the_seed() -> None:
    calls: list[str] = []
    es = EarlyStopping(3, True, 0.5, None, calls.append)
    assert (es.patience, es.verbose, es.delta, es.path) == (3, True, 0.5, None)
    es(1.0)
    assert calls == ["Validation loss decreased (inf --> 1.000000)."]


@pytest.mark.parametrize(
    ("delta", "min_delta", "expected"),
    [(None, None, 0.0), (0.25, None, 0.25), (None, 0.25, 0.25), (0.25, 0.25, 0.25), (0, 0.0, 0.0)],
)
def test_delta_is_an_alias_of_min_delta(
    delta: float | None, min_delta: float | None, expected: float
) -> None:
    es = EarlyStopping(delta=delta, min_delta=min_delta, path=None)
    assert es.delta == es.stopper.min_delta == expected


def test_delta_and_min_delta_conflict() -> None:
    with pytest.raises(
        ValueError,
        match=r"^`delta` is an alias of `min_delta`: give one of them, "
        r"got delta=0\.1 and min_delta=0\.2$",
    ):
        EarlyStopping(delta=0.1, min_delta=0.2)


def test_a_bad_alias_is_named_before_the_conflict() -> None:
    with pytest.raises(ValueError, match=r"^`delta` must be a finite float >= 0, got 'x'$"):
        EarlyStopping(delta="x", min_delta=0.1)


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        ("patience", np.int64(3), 3),
        ("start_from_epoch", np.uint8(2), 2),
        ("min_delta", np.float32(0.25), 0.25),
        ("min_rel_delta", Fraction(1, 8), 0.125),
        ("baseline", np.float64(-1.5), -1.5),
        ("stopping_threshold", 1, 1.0),
        ("divergence_threshold", np.int32(4), 4.0),
        ("mode", Mode.MAX, Mode.MAX),
        ("on_nonfinite", NonFinite.COUNT, NonFinite.COUNT),
    ],
)
def test_numpy_and_enum_options_are_normalised(name: str, value: Any, stored: Any) -> None:
    stopper = Stopper(**{name: value})
    attribute = getattr(stopper, name)
    assert attribute == stored
    assert type(attribute) is type(stored)
    json.dumps(stopper.state_dict())


# -- saved state -----------------------------------------------------------------------


def _state(**changes: Any) -> dict[str, Any]:
    stopper = Stopper(patience=3)
    for value in (1.0, 0.5, 0.75):
        stopper.step(value, lr=0.1)
    state = stopper.state_dict()
    state.update(changes)
    return state


def _history(values: Any = None, metrics: Any = None) -> dict[str, Any]:
    return {
        "values": [1.0, 0.5, 0.75] if values is None else values,
        "metrics": {"lr": [0.1] * 3} if metrics is None else metrics,
    }


BAD_STATES: list[tuple[str, Any, str]] = [
    ("not-a-dict", [1], "state must be a dict from state_dict(), got list"),
    ("none", None, "state must be a dict from state_dict(), got NoneType"),
    (
        "missing-keys",
        {"format": "earlystop.Stopper", "version": 1, "mode": "min"},
        "state is missing keys: best_step, best_value, history, reason, step, wait",
    ),
    (
        "wrong-format",
        _state(format="earlystop.EarlyStopping"),
        "state format must be 'earlystop.Stopper', got 'earlystop.EarlyStopping'",
    ),
    ("wrong-version", _state(version=2), "state version 2 is not supported (expected 1)"),
    (
        "wrong-mode",
        _state(mode="max"),
        "state was recorded with mode='max' but this stopper has mode='min'",
    ),
    ("negative-step", _state(step=-1), "state entry `step` must be an int >= 0, got -1"),
    ("float-step", _state(step=3.0), "state entry `step` must be an int >= 0, got 3.0"),
    (
        "best-step-out-of-range",
        _state(best_step=4),
        "state entry `best_step` must be None or an int in 1..3, got 4",
    ),
    (
        "best-step-zero",
        _state(best_step=0),
        "state entry `best_step` must be None or an int in 1..3, got 0",
    ),
    ("bool-wait", _state(wait=True), "state entry `wait` must be an int >= 0, got True"),
    ("negative-wait", _state(wait=-2), "state entry `wait` must be an int >= 0, got -2"),
    (
        "best-value-without-step",
        _state(best_step=None),
        "state entries `best_value` and `best_step` must both be set or both None",
    ),
    (
        "bad-best-value",
        _state(best_value="NaN"),
        "state entry `best_value` must be a number, got 'NaN'",
    ),
    (
        "history-not-dict",
        _state(history=[1.0]),
        "state `history` must be a dict with keys 'metrics' and 'values'",
    ),
    (
        "history-missing-metrics",
        _state(history={"values": []}),
        "state `history` must be a dict with keys 'metrics' and 'values'",
    ),
    (
        "history-values-not-list",
        _state(history=_history(values=5)),
        "state `history.values` must be a list, got int",
    ),
    (
        "history-metrics-not-dict",
        _state(history=_history(metrics=[0.1])),
        "state `history.metrics` must be a dict of name -> list of numbers",
    ),
    (
        "history-metric-not-list",
        _state(history=_history(metrics={"lr": 0.1})),
        "state `history.metrics` must map names to lists, got 'lr': float",
    ),
    (
        "history-bad-value",
        _state(history=_history(values=[1.0, None, 0.75])),
        "state entry `history.values` must be a number, got None",
    ),
    (
        "history-bad-metric",
        _state(history=_history(metrics={"lr": [0.1, "x", 0.1]})),
        "state entry `history.metrics.lr` must be a number, got 'x'",
    ),
    (
        "history-too-short",
        _state(history=_history(values=[1.0, 0.5])),
        "state `history` does not have one entry per step",
    ),
    (
        "metric-too-short",
        _state(history=_history(metrics={"lr": [0.1]})),
        "state `history` does not have one entry per step",
    ),
    ("bad-reason", _state(reason=3), "state entry `reason` must be a string or None, got 3"),
]


@pytest.mark.parametrize(
    ("state", "message"), [r[1:] for r in BAD_STATES], ids=[r[0] for r in BAD_STATES]
)
def test_bad_stopper_state(state: Any, message: str) -> None:
    stopper = Stopper(patience=3)
    stopper.step(4.0)
    before = stopper.state_dict()
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        stopper.load_state_dict(state)
    assert stopper.state_dict() == before  # a refused state changes nothing


def test_good_state_loads() -> None:
    stopper = Stopper(patience=3)
    stopper.load_state_dict(_state())
    assert (stopper.step_count, stopper.best_step, stopper.wait) == (3, 2, 1)
    assert stopper.history.metrics == {"lr": [0.1, 0.1, 0.1]}


def _es_state(**changes: Any) -> dict[str, Any]:
    state = EarlyStopping(path=None).state_dict()
    state.update(changes)
    return state


BAD_ES_STATES: list[tuple[str, Any, str]] = [
    ("not-a-dict", "state", "state must be a dict from state_dict(), got str"),
    (
        "missing",
        {"format": "earlystop.EarlyStopping"},
        "state is missing keys: fold, stopper, version",
    ),
    (
        "stopper-state-given",
        Stopper().state_dict(),
        "state is missing keys: fold, stopper",
    ),
    (
        "wrong-format",
        _es_state(format="pytorchtools"),
        "state format must be 'earlystop.EarlyStopping', got 'pytorchtools'",
    ),
    ("wrong-version", _es_state(version=0), "state version 0 is not supported (expected 1)"),
    ("bad-fold", _es_state(fold=-1), "state entry `fold` must be an int >= 0, got -1"),
    ("bool-fold", _es_state(fold=False), "state entry `fold` must be an int >= 0, got False"),
    ("bad-stopper", _es_state(stopper=5), "state must be a dict from state_dict(), got int"),
    (
        "stopper-wrong-mode",
        EarlyStopping(path=None, mode="max").state_dict(),
        "state was recorded with mode='max' but this stopper has mode='min'",
    ),
]


@pytest.mark.parametrize(
    ("state", "message"), [r[1:] for r in BAD_ES_STATES], ids=[r[0] for r in BAD_ES_STATES]
)
def test_bad_early_stopping_state(state: Any, message: str) -> None:
    es = EarlyStopping(path=None)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        es.load_state_dict(state)
