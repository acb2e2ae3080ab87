"""earlystop's Ignite ``EarlyStopping`` against Ignite's own, and on real ``Engine`` runs.

Imported under Ignite's name, our handler must behave as Ignite's (constructor, defaults,
errors, warnings, attributes, state) except for the differences docs/integrations.md lists,
which are tested here with both behaviours side by side.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch\\.jit\\.\\w+` is deprecated:DeprecationWarning"
)

torch = pytest.importorskip("torch")
ours_module = pytest.importorskip("earlystop.integrations.ignite", exc_type=ImportError)
EarlyStopping = ours_module.EarlyStopping
from ignite.engine import Engine, Events  # noqa: E402
from ignite.handlers import EarlyStopping as TheirEarlyStopping  # noqa: E402


def scripted(values: list[float]) -> tuple[Any, Iterator[float]]:
    stream = iter(values)
    return (lambda engine: next(stream)), stream


def step_both(values: list[float], **kwargs: Any) -> tuple[list[Any], list[Any]]:
    """Feed the same scores to both handlers directly; trace counter, best, terminate."""
    traces: tuple[list[Any], list[Any]] = ([], [])
    for cls, trace in zip((TheirEarlyStopping, EarlyStopping), traces, strict=True):
        trainer = Engine(lambda e, b: None)
        score, _ = scripted(values)
        rest = {name: value for name, value in kwargs.items() if name != "patience"}
        handler = cls(kwargs.get("patience", 2), score, trainer, **rest)
        for _ in values:
            handler(None)  # as Ignite's own tests call it
            best = handler.best_score
            trace.append((handler.counter, None if best is None else float(best),
                          trainer.should_terminate))  # fmt: skip
    return traces


# (scores, keyword arguments): cases no documented difference applies to
SHARED = [
    ("rising", [0.1, 0.2, 0.3, 0.4], {}),
    ("stalls", [0.5, 0.75, 0.7, 0.6, 0.8, 0.7, 0.7], {"patience": 2}),
    ("ties", [1.0, 1.0, 1.0], {"patience": 2}),
    ("patience-1", [1.0, 0.5, 2.0, 1.0], {"patience": 1}),
    ("min-mode", [1.0, 0.5, 0.75, 0.5, 0.25, 0.5, 0.5], {"mode": "min", "patience": 2}),
    ("negative-scores", [-3.0, -2.0, -2.5, -2.0, -1.0], {"patience": 2}),
    (
        "cumulative-threshold",
        [1.0, 1.125, 1.25, 1.375, 1.5, 1.5, 1.5],
        {"threshold": 0.25, "cumulative": True, "patience": 3},
    ),
    (
        "cumulative-threshold-min",
        [1.0, 0.875, 0.75, 0.625, 0.5],
        {"threshold": 0.25, "cumulative": True, "mode": "min", "patience": 2},
    ),
    (
        "threshold-boundary",
        [1.0, 1.25, 1.5, 1.5625],
        {"threshold": 0.25, "cumulative": True, "patience": 3},
    ),
    (
        "relative-positive",
        [2.0, 2.5, 3.0, 3.5, 4.0, 8.0],
        {"threshold": 0.5, "threshold_mode": "rel", "cumulative": True, "patience": 3},
    ),
]


@pytest.mark.parametrize(("values", "kwargs"), [c[1:] for c in SHARED], ids=[c[0] for c in SHARED])
def test_same_decisions_as_ignites_handler(values: list[float], kwargs: dict[str, Any]) -> None:
    theirs, ours = step_both(values, **kwargs)
    assert ours == theirs


def test_the_shared_table_is_not_trivial() -> None:
    theirs, _ = step_both([0.5, 0.75, 0.7, 0.6, 0.8, 0.7, 0.7], patience=2)
    assert theirs == [
        (0, 0.5, False),
        (0, 0.75, False),
        (1, 0.75, False),
        (2, 0.75, True),
        (0, 0.8, True),  # terminate() was already called
        (1, 0.8, True),
        (2, 0.8, True),
    ]


def train(cls: type, values: list[float], max_epochs: int = 10, **kwargs: Any) -> Any:
    """A real trainer/evaluator pair; the model's weight holds the epoch number."""
    model = torch.nn.Linear(1, 1, bias=False)
    trainer = Engine(lambda engine, batch: None)
    evaluator = Engine(lambda engine, batch: None)

    @trainer.on(Events.EPOCH_STARTED)
    def mark(engine: Engine) -> None:
        with torch.no_grad():
            model.weight.fill_(engine.state.epoch)

    @evaluator.on(Events.COMPLETED)
    def compute(engine: Engine) -> None:
        engine.state.metrics["acc"] = values[(trainer.state.epoch - 1) % len(values)]

    attach = kwargs.pop("attach", "add_event_handler")
    extra = {"model": model} if cls is EarlyStopping and "model" in kwargs else {}
    kwargs.pop("model", None)
    handler = cls(kwargs.pop("patience", 3), lambda e: e.state.metrics["acc"], trainer,
                  **kwargs, **extra)  # fmt: skip
    if attach == "add_event_handler":
        evaluator.add_event_handler(Events.COMPLETED, handler)
    else:
        handler.attach(evaluator, reset_engine=trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run([0]))
    trainer.run([0], max_epochs=max_epochs)
    return handler, trainer, model


ACCURACY = [0.5, 0.6, 0.55, 0.58, 0.59, 0.61, 0.6, 0.6, 0.6, 0.6]


@pytest.mark.parametrize("attach", ["add_event_handler", "attach"])
def test_same_stop_on_a_real_run(attach: str) -> None:
    runs = []
    for cls in (TheirEarlyStopping, EarlyStopping):
        handler, trainer, _ = train(cls, ACCURACY, attach=attach)
        runs.append((trainer.state.epoch, handler.counter, handler.best_score))
    assert runs[1] == runs[0] == (5, 3, 0.6)


def test_a_new_trainer_run_starts_afresh() -> None:
    handler, trainer, _ = train(EarlyStopping, ACCURACY)
    assert trainer.state.epoch == 5
    trainer.state.max_epochs = None  # the next run() starts a new run from epoch 0
    trainer.run([0], max_epochs=10)
    assert (trainer.state.epoch, handler.counter, handler.best_score) == (5, 3, 0.6)


def test_a_continued_run_keeps_the_state() -> None:
    handler, trainer, _ = train(EarlyStopping, ACCURACY)
    trainer.run([0], max_epochs=10)  # continues after terminate(), from epoch 6
    assert (trainer.state.epoch, handler.best_score, handler.stopped_epoch) == (9, 0.61, 9)
    assert handler.best_epoch == 6  # the 6th evaluation: the count went on


def test_reset_forgets() -> None:
    handler, _, _ = train(EarlyStopping, ACCURACY)
    handler.reset()
    assert (handler.counter, handler.best_score, handler.last_decision) == (0, None, None)


def test_restores_the_best_weights_when_the_trainer_completes() -> None:
    handler, trainer, model = train(EarlyStopping, ACCURACY, model=True)
    assert (trainer.state.epoch, handler.best_epoch, handler.stopped_epoch) == (5, 2, 5)
    assert model.weight.item() == 2.0
    handler, trainer, model = train(EarlyStopping, [0.1, 0.2, 0.3], max_epochs=3, model=True)
    assert model.weight.item() == 3.0  # no stop: the best is the last


def test_writable_attributes() -> None:
    trainer = Engine(lambda e, b: None)
    score, _ = scripted([0.5, 0.6, 0.7])
    handler = EarlyStopping(2, score, trainer)
    handler.best_score = 0.55
    handler.counter = 1
    handler(Engine(lambda e, b: None))  # 0.5 does not beat 0.55: wait 2 -> stop
    assert trainer.should_terminate
    handler.patience = 5
    assert handler.early_stopping.patience == 5


def test_constructor_is_ignites() -> None:
    trainer = Engine(lambda e, b: None)
    theirs = TheirEarlyStopping(3, lambda e: 0.0, trainer)
    ours = EarlyStopping(3, lambda e: 0.0, trainer)
    assert isinstance(ours, TheirEarlyStopping)
    names = ["patience", "threshold", "threshold_mode", "cumulative", "mode", "counter"]
    assert [getattr(ours, n) for n in names] == [getattr(theirs, n) for n in names]
    assert ours.best_score is theirs.best_score is None
    positional = EarlyStopping(2, lambda e: 0.0, trainer, 0.1, True, "rel", "min")
    assert positional.early_stopping.stopper.min_rel_delta == 0.1


ERRORS = [
    ({"score_function": 1}, TypeError, r"^Argument score_function should be a function\.$"),
    ({"patience": 0}, ValueError, r"^Argument patience should be positive integer\.$"),
    ({"trainer": None}, TypeError, r"^Argument trainer should be an instance of Engine\.$"),
    ({"threshold": -1.0}, ValueError, r"^Argument threshold should not be a negative number\.$"),
    ({"threshold_mode": "x"}, ValueError, r"^Argument threshold_mode should be either 'abs'"),
    ({"mode": "up"}, ValueError, r"^Argument mode should be either 'min' or 'max'\.$"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), ERRORS)
def test_ignites_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    arguments = {"patience": 2, "score_function": lambda e: 0.0, "trainer": Engine(print)}
    for cls in (TheirEarlyStopping, EarlyStopping):
        with pytest.raises(error, match=match):
            cls(**{**arguments, **kwargs})


@pytest.mark.parametrize(
    ("alias", "value", "attribute", "message"),
    [
        ("min_delta", 0.25, "threshold", r"'min_delta' is deprecated .* use 'threshold' instead"),
        ("min_delta_mode", "rel", "threshold_mode", r"'min_delta_mode' is deprecated"),
        ("cumulative_delta", True, "cumulative", r"'cumulative_delta' is deprecated"),
    ],
)
def test_deprecated_aliases_warn_as_ignite(
    alias: str, value: Any, attribute: str, message: str
) -> None:
    for cls in (TheirEarlyStopping, EarlyStopping):
        with pytest.warns(DeprecationWarning, match=message):
            handler = cls(2, lambda e: 0.0, Engine(print), **{alias: value})
        assert getattr(handler, attribute) == value
    with pytest.warns(DeprecationWarning, match="deprecated"):
        ours = EarlyStopping(2, lambda e: 0.0, Engine(print), min_delta=0.25, min_delta_mode="rel")
    assert ours.early_stopping.stopper.min_rel_delta == 0.25


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"restore_best_weights": 1}, r"^`restore_best_weights` must be a bool, got 1$"),
        ({"model": object()}, r"^`model` must be a torch\.nn\.Module, got object$"),
        ({"policy": "auto", "threshold": 0.1}, r"^`policy` replaces the rule options"),
    ],
)
def test_earlystop_options_are_validated(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        EarlyStopping(2, lambda e: 0.0, Engine(print), **kwargs)


def test_state_dict_round_trip_and_ignites_own_state() -> None:
    handler, _, _ = train(EarlyStopping, ACCURACY, max_epochs=4)
    state = handler.state_dict()
    assert list(state)[:3] == ["counter", "best_score", "threshold_mode"]
    assert (state["counter"], state["best_score"]) == (2, 0.6)
    json.dumps(state)
    for saved in [state, TheirEarlyStopping(3, print, Engine(print)).state_dict() | {
        "counter": 2, "best_score": 0.6
    }]:  # fmt: skip
        trainer = Engine(lambda e, b: None)
        score, _ = scripted([0.59])
        resumed = EarlyStopping(3, score, trainer)
        resumed.load_state_dict(saved)
        assert (resumed.counter, resumed.best_score) == (2, 0.6)
        resumed(Engine(print))
        assert trainer.should_terminate  # as the uninterrupted run
    with pytest.raises(ValueError, match=r"Required state attribute 'counter' is absent"):
        EarlyStopping(3, print, Engine(print)).load_state_dict({"best_score": 1.0})


# -- deliberate differences ----------------------------------------------------------------


def test_nan_never_becomes_the_best() -> None:
    theirs, ours = step_both([0.5, math.nan, 0.1, 0.2], patience=2)
    assert theirs[1][0] == 0
    assert math.isnan(theirs[1][1])  # Ignite: NaN is the best
    assert theirs[2] == (0, 0.1, False)  # ... and a worse 0.1 then "improves"
    assert ours[1] == (1, 0.5, True)  # earlystop: stops at once, 0.5 stays the best


def test_the_reference_moves_only_on_an_improvement() -> None:
    values = [1.0, 1.125, 1.25, 1.375]  # steady gains of 0.125 < threshold 0.25
    theirs, ours = step_both(values, threshold=0.25, patience=3)
    assert theirs[-1] == (3, 1.375, True)  # cumulative=False: each small gain moves the best
    assert ours[-1] == (0, 1.375, False)  # together they beat 1.0 by 0.375 and improve


def test_relative_threshold_on_negative_scores() -> None:
    theirs, ours = step_both([-2.0, -2.5], threshold=0.5, threshold_mode="rel", patience=1)
    assert theirs[-1] == (0, -2.5, False)  # Ignite: -2.5 > -2.0 * 1.5 is an "improvement"
    assert ours[-1] == (1, -2.0, True)


# -- random sequences: no documented difference applies -------------------------------------

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
grid = st.integers(-256, 256).map(lambda k: k / 16)  # dyadic: `best + t` is exact


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    values=st.lists(grid, min_size=1, max_size=20),
    patience=st.integers(1, 4),
    threshold=st.integers(0, 8).map(lambda k: k / 16),
    mode=st.sampled_from(["min", "max"]),
)
def test_same_decisions_on_random_sequences(
    values: list[float], patience: int, threshold: float, mode: str
) -> None:
    # with threshold > 0 only cumulative=True shares earlystop's reference rule
    options = {"threshold": threshold, "cumulative": threshold > 0, "mode": mode}
    theirs, ours = step_both(values, patience=patience, **options)
    assert ours == theirs
