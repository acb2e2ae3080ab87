"""The Ray Tune stopper: its per-trial and experiment rules, and a real ``Tuner`` run."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")

from earlystop import Stopper  # noqa: E402
from earlystop.integrations.ray import EarlyStoppingStopper  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ray_tune.py"


def feed(stopper: EarlyStoppingStopper, trial: str, values: list[float]) -> list[bool]:
    return [stopper(trial, {"val_loss": value, "training_iteration": i}) for i, value in
            enumerate(values, start=1)]  # fmt: skip


CURVES = [
    ([1.0, 0.5, 0.6, 0.7, 0.4], {"patience": 2}, 4),
    ([1.0, 0.5, 0.6, 0.7, 0.4], {"patience": 3}, None),
    ([1.0, math.nan, 0.5], {}, 2),
    ([1.0, 0.9, 0.86, 0.87], {"min_delta": 0.05, "patience": 2}, 4),
    ([5.0, 4.0, 3.0, 2.0], {"stopping_threshold": 2.5}, 4),
]


@pytest.mark.parametrize(("values", "options", "stop_at"), CURVES)
def test_a_trial_stops_where_a_stopper_would(
    values: list[float], options: dict[str, Any], stop_at: int | None
) -> None:
    stopper = EarlyStoppingStopper("val_loss", **options)
    flags = feed(stopper, "t1", values)
    reference = Stopper(**options)
    expected = [reference.step(v).should_stop for v in values]
    first = next((i for i, stop in enumerate(expected, start=1) if stop), None)
    assert first == stop_at
    assert flags[: first or len(flags)] == expected[: first or len(flags)]
    if first is not None:
        assert flags[first - 1 :] == [True] * (len(values) - first + 1)  # ended: stays stopped


def test_trials_are_independent_and_policies_apply() -> None:
    stopper = EarlyStoppingStopper("val_loss", mode="max", policy="patience=1")
    assert feed(stopper, "a", [0.1, 0.2, 0.3]) == [False, False, False]
    assert feed(stopper, "b", [0.5, 0.4]) == [False, True]
    assert stopper("a", {"val_loss": 0.25}) is True
    assert (stopper.best_trial, stopper.ended) == ("b", ["b", "a"])
    assert stopper.decisions["a"].best_value == 0.3


def test_done_ends_a_trial_for_the_experiment_rule() -> None:
    stopper = EarlyStoppingStopper("val_loss", patience=5, experiment_patience=1)
    assert stopper("a", {"val_loss": 1.0, "done": True}) is False
    assert not stopper.stop_all()
    feed(stopper, "b", [2.0, 2.0, 2.0, 2.0, 2.0, 2.0])  # ends by patience, never beat 1.0
    assert stopper.stop_all()


EXPERIMENTS = [  # trial best values in the order the trials end, patience, first stop_all
    ([1.0, 2.0, 3.0], 2, 3),
    ([3.0, 2.0, 1.0, 1.5, 0.5], 2, None),
    ([1.0, 1.0, 1.0], 1, 2),  # a tie does not beat the best
    ([1.0, 0.99, 0.98], 2, 3),  # within min_delta=0.05
]


@pytest.mark.parametrize(("bests", "patience", "stop_at"), EXPERIMENTS)
def test_the_experiment_rule(bests: list[float], patience: int, stop_at: int | None) -> None:
    stopper = EarlyStoppingStopper(
        "val_loss", patience=1, min_delta=0.05, experiment_patience=patience
    )
    states = []
    for index, best in enumerate(bests):
        feed(stopper, f"t{index}", [best, best + 1.0])  # best first, then patience 1 stops
        states.append(stopper.stop_all())
    first = next((i for i, s in enumerate(states, start=1) if s), None)
    assert first == stop_at


def test_without_experiment_patience_the_experiment_runs_on() -> None:
    stopper = EarlyStoppingStopper("val_loss", patience=1)
    for index in range(5):
        feed(stopper, f"t{index}", [1.0, 2.0])
    assert not stopper.stop_all()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"metric": ""}, ValueError, r"^`monitor` must be a non-empty metric name, got ''$"),
        ({"mode": "up"}, ValueError, r"^`mode` must be 'min' or 'max', got 'up'$"),
        ({"patience": -1}, ValueError, r"^`patience` must be an int >= 0 or None, got -1$"),
        ({"experiment_patience": -1}, ValueError, r"^`experiment_patience` must be an int >= 0"),
        ({"policy": "auto", "patience": 3}, ValueError, r"^give either `policy` or stopper"),
        ({"policy": "nonsense=1"}, ValueError, r"nonsense"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        EarlyStoppingStopper(**{"metric": "val_loss", **kwargs})


def test_a_missing_metric_lists_the_reported_keys() -> None:
    with pytest.raises(
        KeyError, match=r"monitored metric 'val_loss' is not in the results of trial t1; "
        r"logged keys: loss, training_iteration"
    ):  # fmt: skip
        EarlyStoppingStopper("val_loss")("t1", {"loss": 1.0, "training_iteration": 1})


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    monkeypatch.undo()


@pytest.mark.timeout(240)
def test_a_real_tuner_run(local_ray: None, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("ray_tune_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example
    spec.loader.exec_module(example)
    ray.cloudpickle.register_pickle_by_value(example)  # the workers cannot import it
    stopper, grid = example.run_experiment(str(tmp_path))
    assert example.report(stopper, grid) == [
        "rate 0.1: stopped after 12 evaluations (patience), best 0.1111 at evaluation 9",
        "rate 0.5: stopped after 10 evaluations (patience), best 0.3429 at evaluation 7",
        "rate 0.7: stopped after 10 evaluations (patience), best 0.5829 at evaluation 7",
        "3 of 4 trials ran; experiment stopped early: True",
    ]
    assert [r.metrics["training_iteration"] for r in grid] == [12, 10, 10]
