"""Hostile input at every public entry point: correct behaviour or a clear, documented error.

Each catalogue entry carries its oracle (``_hostile.py``): an accepted monitored value must
become exactly the expected float and decide as that float would; a rejected one raises
``TypeError``/``ValueError`` naming the argument and leaves the stopper untouched.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop import EarlyStopping, Mode, NonFinite, Stopper, to_float

from ._figures import record
from ._hostile import EARLY_STOPPING_OPTIONS, STOPPER_OPTIONS, monitored_values, option_values

VALUES = monitored_values()


def _same_float(got: float, expected: float) -> bool:
    return got == expected or (math.isnan(got) and math.isnan(expected))


def _outcome(call: Any) -> Any:
    try:
        return call()
    except Exception as exc:
        return exc


def test_catalogue_covers_python_numpy_and_torch() -> None:
    labels = " ".join(label for label, _, _ in VALUES)
    for family in ["int", "float", "Decimal", "Fraction", "numpy", "torch", "meta"]:
        assert family in labels
    assert len(VALUES) > 300


def test_every_hostile_monitored_value_at_every_entry_point() -> None:
    """to_float, Stopper.step (value and metric) and EarlyStopping.__call__."""
    failures = []
    tried = 0
    for label, value, expected in VALUES:
        stopper = Stopper(patience=2)
        stopper.step(1.0)
        early = EarlyStopping(patience=2, path=None, trace_func=None)
        before = (json.dumps(stopper.state_dict()), json.dumps(early.state_dict()))
        calls = {
            "to_float": (lambda v=value: to_float(v), "value"),
            "Stopper.step": (lambda v=value, s=stopper: s.step(v).value, "value"),
            "Stopper.step metric": (lambda v=value, s=stopper: s.step(0.5, lr=v).value, "lr"),
            "EarlyStopping": (lambda v=value, e=early: e(v).value, "value"),
        }
        for entry, (call, name) in calls.items():
            tried += 1
            got = _outcome(call)
            if isinstance(expected, float):
                want = 0.5 if entry == "Stopper.step metric" else expected
                if isinstance(got, Exception) or not _same_float(got, want):
                    failures.append(f"{label} via {entry}: expected {want!r}, got {got!r}")
                continue
            if not isinstance(got, expected) or f"`{name}`" not in str(got):
                failures.append(f"{label} via {entry}: expected {expected.__name__}, got {got!r}")
        if isinstance(expected, float):
            recorded = stopper.history.values[1]  # what the history (and criteria) will see
            if not _same_float(recorded, expected):
                failures.append(f"{label}: recorded {recorded!r} instead of {expected!r}")
            continue
        after = (json.dumps(stopper.state_dict()), json.dumps(early.state_dict()))
        if after != before:
            failures.append(f"{label}: a rejected value changed the state")
    record("hostile: monitored-value calls tried", tried)
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize("mode", ["min", "max"])
def test_accepted_values_decide_as_their_float(mode: str) -> None:
    """An accepted hostile type decides exactly as the plain float it stands for."""
    mismatches = []
    for label, value, expected in VALUES:
        if not isinstance(expected, float):
            continue
        for reference in [-1.0, 3.0, 5.0]:
            typed, plain = Stopper(mode=mode, patience=0), Stopper(mode=mode, patience=0)
            typed.step(reference)
            plain.step(reference)
            a, b = typed.step(value), plain.step(expected)
            if (a.improved, a.should_stop, a.reason, a.wait) != (
                b.improved,
                b.should_stop,
                b.reason,
                b.wait,
            ):
                mismatches.append(f"{label} after {reference}: {a} != {b}")
    record("hostile: typed-vs-float decisions compared", 3 * len(VALUES))
    assert not mismatches, "\n".join(mismatches[:20])


def _normalised(option: str, value: Any) -> Any:
    if option == "mode":
        return Mode(value)
    if option == "on_nonfinite":
        return NonFinite(value)
    if option in ("patience", "start_from_epoch") or value is None:
        return value
    return float(value)


@pytest.mark.parametrize("option", sorted(STOPPER_OPTIONS))
def test_stopper_option_accepts_exactly_the_documented_values(option: str) -> None:
    rule, error = STOPPER_OPTIONS[option]
    failures = []
    values = option_values()
    for label, value in values:
        got = _outcome(lambda v=value: Stopper(**{option: v}))
        if rule(value):
            if isinstance(got, Exception):
                failures.append(f"{option}={label}: valid but raised {got!r}")
            elif getattr(got, option) != _normalised(option, value):
                failures.append(f"{option}={label}: stored {getattr(got, option)!r}")
        elif not isinstance(got, error) or not re.search(f"`{option}` must be", str(got)):
            failures.append(f"{option}={label}: expected {error.__name__} naming it, got {got!r}")
    record("hostile: option values tried", len(values))
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize("option", sorted(EARLY_STOPPING_OPTIONS))
def test_early_stopping_option_accepts_exactly_the_documented_values(option: str) -> None:
    rule, error = EARLY_STOPPING_OPTIONS[option]
    failures = []
    values = option_values()
    for label, value in values:
        got = _outcome(lambda v=value: EarlyStopping(path=None, **{option: v}))
        if rule(value):
            if isinstance(got, Exception):
                failures.append(f"{option}={label}: valid but raised {got!r}")
        elif not isinstance(got, error) or not re.search(f"`{option}` must be", str(got)):
            failures.append(f"{option}={label}: expected {error.__name__} naming it, got {got!r}")
    record("hostile: option values tried", len(values))
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ("plateau", r"`criteria` must be a sequence of criteria, got str"),
        (b"x", r"`criteria` must be a sequence of criteria, got bytes"),
        (None, r"`criteria` must be a sequence of criteria, got NoneType"),
        (len, r"`criteria` must be a sequence of criteria, got builtin_function_or_method"),
        ({"a": len}, r"`criteria` must be a sequence of criteria, got dict"),
        ([len, 3], r"`criteria\[1\]` must be callable as criterion\(history\), got int"),
        ((None,), r"`criteria\[0\]` must be callable as criterion\(history\), got NoneType"),
    ],
)
def test_bad_criteria_are_named(criteria: Any, message: str) -> None:
    record("hostile: option values tried")
    with pytest.raises(TypeError, match=message):
        Stopper(criteria=criteria)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", r"`path` must be a file path or None, got ''"),
        (b"best.pt", r"`path` must be a file path \(str or PathLike\) or None, got b'best.pt'"),
        (3, r"`path` must be a file path \(str or PathLike\) or None, got 3"),
        (["best.pt"], r"`path` must be a file path \(str or PathLike\) or None, got \['best.pt'\]"),
    ],
)
def test_bad_paths_are_named(path: Any, message: str) -> None:
    record("hostile: option values tried")
    with pytest.raises(ValueError, match=message):
        EarlyStopping(path=path)


def test_delta_and_min_delta_disagreeing() -> None:
    with pytest.raises(ValueError, match=r"`delta` is an alias of `min_delta`: give one of them"):
        EarlyStopping(delta=0.1, min_delta=0.2)
    assert EarlyStopping(delta=0.1, min_delta=0.1, path=None).delta == 0.1


@pytest.mark.parametrize(
    ("model", "extra_state", "error", "message"),
    [
        ("model", None, TypeError, r"`model` must be a torch.nn.Module \(with state_dict\(\)\)"),
        ({"w": 1}, None, TypeError, r"`model` must be a torch.nn.Module .*got dict"),
        (object(), None, TypeError, r"`model` must be a torch.nn.Module .*got object"),
        (None, [1], TypeError, r"`extra_state` must be a mapping of names to state, got list"),
        (None, "opt", TypeError, r"`extra_state` must be a mapping of names to state, got str"),
    ],
)
def test_bad_call_arguments_are_rejected_before_anything_is_recorded(
    model: Any, extra_state: Any, error: type[Exception], message: str
) -> None:
    record("hostile: call arguments tried")
    stopper = EarlyStopping(path=None, trace_func=None)
    with pytest.raises(error, match=message):
        stopper(0.5, model, extra_state=extra_state)
    assert stopper.stopper.step_count == 0


def test_meta_model_is_refused_and_nothing_is_recorded() -> None:
    torch = pytest.importorskip("torch")
    record("hostile: call arguments tried")
    stopper = EarlyStopping(path=None, trace_func=None)
    with pytest.raises(ValueError, match=r"`model` has tensors on the meta device"):
        stopper(0.5, torch.nn.Linear(2, 2, device="meta"))
    # all or nothing (issue 11): the refused call is not recorded, so best_epoch cannot
    # name an evaluation whose weights were never kept
    assert stopper.stopper.step_count == 0
    assert stopper.best_epoch is None
    assert stopper.last_decision is None


# -- load_state_dict with mutated states ----------------------------------------------


def _genuine_states() -> list[dict[str, Any]]:
    states = []
    for values in [[1.0, 0.5, 0.7, math.nan, 0.4, 0.4], [3.0], [], [math.inf, 2.0, 2.5]]:
        stopper = Stopper(patience=None, on_nonfinite="count")
        for i, current in enumerate(values):
            stopper.step(current, lr=0.1 * i)
        states.append(stopper.state_dict())
    return states


GENUINE = _genuine_states()
REPLACEMENTS = st.sampled_from(
    [None, True, 0, -1, 1, 3, 2**70, 0.5, math.nan, "nan", "inf", "x", [], {}, [1.0], {"a": [1]}]
)


@st.composite
def mutated_states(draw: Any) -> dict[str, Any]:
    """A genuine state with one entry (at any depth) replaced, deleted or added."""
    state = json.loads(json.dumps(draw(st.sampled_from(GENUINE))))
    node = state
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            node[key] = draw(REPLACEMENTS)
        elif action == "delete" and isinstance(node, dict):
            del node[key]
        elif isinstance(node, dict):
            node["unexpected"] = draw(REPLACEMENTS)
        else:
            node.append(draw(REPLACEMENTS))
        break
    return state


@settings(max_examples=400, deadline=None)
@given(mutated_states())
def test_mutated_state_is_refused_cleanly_or_loads_consistently(state: dict[str, Any]) -> None:
    record("hostile: mutated states tried")
    check_mutated_state(state)


def check_mutated_state(state: dict[str, Any]) -> None:
    """Refused with ValueError and nothing changed, or loaded, consistent and usable."""
    stopper = Stopper(patience=2)
    stopper.step(2.0)
    before = json.dumps(stopper.state_dict())
    refused = _outcome(lambda: stopper.load_state_dict(state))
    if refused is not None:
        assert isinstance(refused, ValueError), repr(refused)
        assert "state" in str(refused)
        assert json.dumps(stopper.state_dict()) == before  # a refused state changes nothing
        return
    # Accepted: it must be self-consistent and usable.
    loaded = stopper.state_dict()
    assert loaded["step"] == len(stopper.history)
    if stopper.best_step is not None:
        assert stopper.history.values[stopper.best_step - 1] == stopper.best_value
    decision = stopper.step(0.0)
    assert decision.step == loaded["step"] + 1
