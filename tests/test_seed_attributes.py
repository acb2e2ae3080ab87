"""The seed's attributes, ``save_checkpoint`` and messages, against the seed itself.

Code written for early-stopping-pytorch 1.0.10 writes its attributes to reset or resume a
run, overrides ``save_checkpoint`` to save differently, and parses its messages. Each case
runs the same script on the seed and on ``earlystop.EarlyStopping`` and compares.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from earlystop import EarlyStopping

seed_module = pytest.importorskip("early_stopping_pytorch")
SeedEarlyStopping = seed_module.EarlyStopping


class Sentinel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.epoch = nn.Parameter(torch.zeros(()), requires_grad=False)


def drive(es: Any, values: list[float], writes: dict[int, Callable[[Any], None]]) -> list[Any]:
    """Feed ``values``; before evaluation k (1-based) apply ``writes[k]``; trace the state."""
    model = Sentinel()
    trace = []
    for epoch, value in enumerate(values, start=1):
        if epoch in writes:
            writes[epoch](es)
        model.epoch.fill_(float(epoch))
        es(value, model)
        trace.append((es.counter, es.early_stop, float(es.val_loss_min), es.best_val_loss))
    return trace


def reset_like_the_seed(es: Any) -> None:
    es.counter = 0
    es.early_stop = False
    es.best_val_loss = None
    es.val_loss_min = np.inf


def resume(es: Any) -> None:  # numbers a user saved from an earlier run
    es.counter = 2
    es.best_val_loss = 0.5
    es.val_loss_min = 0.5


def clear_stop(es: Any) -> None:
    es.early_stop = False


def restart_patience(es: Any) -> None:
    es.counter = 0


def clear_and_restart(es: Any) -> None:
    clear_stop(es)
    restart_patience(es)


# The seed's early_stop stays True after a later improvement (a documented difference), so
# these scripts improve after a stop only once they have cleared it.
WRITE_CASES = [
    ("counter-0-restarts-patience", [1.0, 2.0, 2.0, 2.0, 2.0], {3: restart_patience}),
    ("clear-stop-then-improve", [1.0, 2.0, 2.0, 0.5, 0.6], {4: clear_stop}),
    ("clear-stop-keeps-counting", [1.0, 2.0, 2.0, 2.0], {4: clear_stop}),
    ("clear-stop-and-counter", [1.0, 2.0, 2.0, 2.0, 2.0, 3.0], {4: clear_and_restart}),
    ("reset-for-a-new-fold", [1.0, 0.5, 0.7, 3.0, 2.5, 2.6, 2.7], {4: reset_like_the_seed}),
    ("resume-from-saved-numbers", [0.4, 0.45, 0.5, 0.55], {1: resume}),
    ("resume-then-stop-at-once", [0.6, 0.7], {1: resume}),
]


@pytest.mark.parametrize(
    ("values", "writes"), [c[1:] for c in WRITE_CASES], ids=[c[0] for c in WRITE_CASES]
)
def test_writes_act_as_in_the_seed(
    values: list[float], writes: dict[int, Callable[[Any], None]], tmp_path: Path
) -> None:
    seed = SeedEarlyStopping(patience=2, path=str(tmp_path / "s.pt"), trace_func=lambda _: None)
    ours = EarlyStopping(patience=2, path=tmp_path / "o.pt", trace_func=None)
    assert drive(ours, values, writes) == drive(seed, values, writes)
    files = [tmp_path / "o.pt", tmp_path / "s.pt"]
    assert [torch.load(f) if f.exists() else None for f in files] == [
        torch.load(f) if f.exists() else None for f in reversed(files)
    ]  # the same epoch's weights, or none in either


def test_the_trace_of_a_resume() -> None:
    ours = EarlyStopping(patience=3, path=None)
    resume(ours)
    assert (ours.counter, ours.best_val_loss, ours.best_epoch) == (2, 0.5, None)
    decisions = [ours(v) for v in [0.6, 0.4, 0.45]]
    assert [(d.wait, d.improved, d.should_stop) for d in decisions] == [
        (3, False, True),
        (0, True, False),
        (1, False, False),
    ]
    assert (ours.best_epoch, ours.val_loss_min) == (2, 0.4)


@pytest.mark.parametrize(
    ("name", "value", "mode", "reference"),
    [
        ("val_loss_min", 0.25, "min", 0.25),
        ("best_val_loss", np.float32(0.5), "min", 0.5),
        ("best_score", -0.25, "min", 0.25),  # pytorchtools' score = -val_loss
        ("best_score", 0.75, "max", 0.75),
        ("val_loss_min", torch.tensor(2.0), "max", 2.0),
        ("val_loss_min", math.inf, "min", None),  # the seed's start value: nothing to beat
        ("best_score", -math.inf, "min", None),
        ("val_loss_min", -math.inf, "max", None),
        ("best_val_loss", None, "max", None),
    ],
)
def test_a_written_reference_is_what_the_next_value_must_beat(
    name: str, value: Any, mode: str, reference: float | None
) -> None:
    es = EarlyStopping(patience=1, path=None, mode=mode)
    es(5.0 if mode == "min" else -5.0)
    setattr(es, name, value)
    assert es.best_val_loss == reference
    assert es.best_epoch is None  # no evaluation holds a written value
    sign = 1 if mode == "min" else -1
    if reference is None:
        assert es(sign * 100.0).improved  # any finite value improves
    else:
        assert not es(reference).improved  # a tie does not beat it
        assert es(reference - sign * 0.125).improved


def test_writing_the_current_best_keeps_its_epoch() -> None:
    es = EarlyStopping(path=None)
    model = Sentinel()
    es(1.0, model)
    es.val_loss_min = 1.0  # what the seed's own save_checkpoint does
    assert (es.best_epoch, es.val_loss_min) == (1, 1.0)


def test_a_reference_survives_state_dict_and_reset() -> None:
    es = EarlyStopping(patience=3, path=None, baseline=0.9)
    es(2.0)
    es.val_loss_min = 0.5
    es.counter = 4  # beyond the one evaluation seen
    state = json.loads(json.dumps(es.state_dict()))
    resumed = EarlyStopping(patience=3, path=None, baseline=0.9)
    resumed.load_state_dict(state)
    assert (resumed.counter, resumed.val_loss_min) == (4, 0.5)
    assert resumed(0.6).should_stop  # 0.6 does not beat 0.5: wait 5 >= 3
    resumed.reset()
    assert (resumed.counter, resumed.best_val_loss) == (0, None)
    assert not resumed(1.0).improved  # the constructor's baseline 0.9 is back
    assert resumed(0.8).improved


def test_early_stop_true_asks_to_stop_until_the_next_call() -> None:
    es = EarlyStopping(patience=3, path=None)
    es(1.0)
    es.early_stop = True
    assert es.early_stop
    assert not es(0.5).should_stop
    assert es.early_stop is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("counter", -1, r"^`counter` must be an int >= 0, got -1$"),
        ("counter", 1.5, r"^`counter` must be an int >= 0, got 1\.5$"),
        ("early_stop", "no", r"^`early_stop` must be a bool, got 'no'$"),
        ("early_stop", 0, r"^`early_stop` must be a bool, got 0$"),
        ("patience", -2, r"^`patience` must be an int >= 0 or None, got -2$"),
        ("delta", -0.1, r"^`delta` must be a finite float >= 0, got -0\.1$"),
        ("path", 3, r"^`path` must be a file path \(str or PathLike\) or None, got 3$"),
        (
            "val_loss_min",
            math.nan,
            r"^`val_loss_min` must be a finite number, None, or inf \(nothing to beat\), got nan$",
        ),
        (
            "best_score",
            math.inf,
            r"^`best_score` must be a finite number, None, or -inf \(nothing to beat\), got inf$",
        ),
        ("best_val_loss", "0.5", r"best_val_loss"),
    ],
)
def test_bad_writes_name_the_attribute_and_change_nothing(
    name: str, value: Any, message: str
) -> None:
    es = EarlyStopping(patience=2, path="best.pt")
    before = (es.counter, es.early_stop, es.patience, es.delta, es.path, es.val_loss_min)
    with pytest.raises((ValueError, TypeError), match=message):
        setattr(es, name, value)
    assert (es.counter, es.early_stop, es.patience, es.delta, es.path, es.val_loss_min) == before


def test_written_options_take_effect(tmp_path: Path) -> None:
    es = EarlyStopping(patience=5, path=str(tmp_path / "a.pt"))
    es.patience, es.delta, es.path = 1, 0.5, str(tmp_path / "b.pt")
    model = Sentinel()
    es(1.0, model)
    assert es(0.75, model).should_stop  # a gain of 0.25 < delta, patience 1
    assert (tmp_path / "b.pt").is_file()
    assert not (tmp_path / "a.pt").exists()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("best.pt", "best.pt"),
        (Path("best.pt"), Path("best.pt")),
        ("fold{fold}.pt", "fold0.pt"),
        (Path("fold{fold}.pt"), Path("fold0.pt")),
        (None, None),
    ],
)
def test_path_keeps_the_type_given(given: Any, expected: Any) -> None:
    es = EarlyStopping(path=given)
    assert es.path == expected
    assert type(es.path) is type(expected)
    assert type(SeedEarlyStopping(path="best.pt").path) is str


# -- save_checkpoint ----------------------------------------------------------------------


def custom_saving(base: type) -> type:
    class Custom(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.saved: list[tuple[float, int]] = []

        def save_checkpoint(self, val_loss: Any, model: Any) -> None:
            self.saved.append((float(val_loss), int(model.epoch)))

    return Custom


def test_an_overriding_subclass_replaces_the_saving(tmp_path: Path) -> None:
    values = [1.0, 0.5, 0.75, 0.25, 0.3]
    runs = []
    for base, path in [
        (SeedEarlyStopping, str(tmp_path / "s.pt")),
        (EarlyStopping, tmp_path / "o.pt"),
    ]:
        lines: list[str] = []
        es = custom_saving(base)(patience=3, verbose=True, path=path, trace_func=lines.append)
        drive(es, values, {})
        runs.append((es.saved, es.counter, es.early_stop, lines))
        assert not Path(path).exists()  # the override saves nothing to the file
    assert runs[0] == runs[1]
    assert runs[1][0] == [(1.0, 1), (0.5, 2), (0.25, 4)]
    assert runs[1][3] == ["EarlyStopping counter: 1 out of 3", "EarlyStopping counter: 1 out of 3"]


def test_super_save_checkpoint_keeps_the_builtin_saving(tmp_path: Path) -> None:
    calls: list[float] = []

    class Logged(EarlyStopping):
        def save_checkpoint(self, val_loss: float, model: Any) -> None:
            calls.append(val_loss)
            super().save_checkpoint(val_loss, model)

    es = Logged(patience=3, path=tmp_path / "o.pt")
    drive(es, [1.0, 0.5, 0.75], {})
    assert calls == [1.0, 0.5]
    assert int(torch.load(tmp_path / "o.pt")["epoch"]) == 2


def test_patch_object_sees_every_improvement(tmp_path: Path) -> None:
    with mock.patch.object(EarlyStopping, "save_checkpoint") as patched:
        es = EarlyStopping(patience=3, path=tmp_path / "o.pt")
        model = Sentinel()
        for value in [1.0, 0.5, 0.75, 0.25]:
            es(value, model)
    assert [c.args for c in patched.call_args_list] == [(1.0, model), (0.5, model), (0.25, model)]
    assert not (tmp_path / "o.pt").exists()


def test_save_checkpoint_outside_an_evaluation_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"^save_checkpoint\(\) is called by EarlyStopping on"):
        EarlyStopping(path=None).save_checkpoint(0.5, Sentinel())


# -- messages ------------------------------------------------------------------------------

MESSAGE_CASES = [
    [1.0, 0.5, 0.75, 0.8, 0.25],
    [3.0, 2.0, 2.0, 1.0, 1.5, 1.5, 1.5, 1.5],
    [-1.0, -2.5, -2.25],
]


@pytest.mark.parametrize("values", MESSAGE_CASES)
def test_messages_word_for_word(values: list[float], tmp_path: Path) -> None:
    logs = []
    for base, path in [
        (SeedEarlyStopping, str(tmp_path / "s.pt")),
        (EarlyStopping, tmp_path / "o.pt"),
    ]:
        lines: list[str] = []
        es = base(patience=3, verbose=True, path=path, trace_func=lines.append)
        drive(es, values, {})
        logs.append(lines)
    new_events = [line for line in logs[1] if line.startswith("EarlyStopping: ")]
    assert [line for line in logs[1] if line not in new_events] == logs[0]
    assert all(line.startswith("EarlyStopping: stop at evaluation ") for line in new_events)


def test_the_seeds_improvement_line() -> None:
    lines: list[str] = []
    es = EarlyStopping(path=None, verbose=True, trace_func=lines.append)
    es(1.0, Sentinel())
    es(0.5)
    mode_max = EarlyStopping(path=None, verbose=True, trace_func=lines.append, mode="max")
    mode_max(0.5, Sentinel())
    assert lines == [
        "Validation loss decreased (inf --> 1.000000).  Saving model ...",
        "Validation loss decreased (1.000000 --> 0.500000).",
        "Validation metric increased (-inf --> 0.500000).  Saving model ...",
    ]


def _raise(message: str) -> None:
    raise RuntimeError(f"trace_func failed on {message!r}")


def test_a_failed_call_after_a_write_puts_back_the_written_state() -> None:
    """Rollback restores what the seed attributes set, not the last decision's figures."""
    es = EarlyStopping(patience=3, path=None)
    for value in (1.0, 1.1, 1.2):
        es(value)
    es.counter = 0
    es.verbose, es.trace_func = True, _raise
    with pytest.raises(RuntimeError, match="trace_func failed on 'EarlyStopping counter: 1"):
        es(1.3)
    assert (es.counter, es.stopper.step_count, es.best_epoch) == (0, 3, 1)
    es.val_loss_min = 0.5
    with pytest.raises(RuntimeError, match="trace_func failed on 'EarlyStopping counter: 1"):
        es(0.7)
    assert (es.val_loss_min, es.best_epoch, es.stopper.step_count) == (0.5, None, 3)
    es.verbose = False
    assert es(0.4).improved
    assert es.best_epoch == 4
