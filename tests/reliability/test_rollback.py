"""Every call commits or rolls back (issue 11): no exception leaves ``best_epoch`` naming an
evaluation whose weights were never kept.

Each case of the issue is a row: the first two evaluations improve and are kept, the third
improves but fails at one point of the call. Afterwards the stopper must be exactly as
before the third call, the exception must be the original one (``KeyboardInterrupt`` is
never a ``CheckpointError``), and :meth:`restore` must give evaluation 2's weights. The
same call made again without the fault then commits evaluation 3.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from earlystop import (
    GL,
    PQ,
    CheckpointError,
    EarlyStopping,
    History,
    LostWeightsWarning,
    SchedulerAware,
    load_checkpoint,
)
from earlystop._weights import checkpoint as _checkpoint
from earlystop._weights.background import BackgroundWriter

from ._figures import record
from ._sentinel import held_index, sentinel_model

VALUES = [3.0, 2.0]  # kept before the failing third call


class _OnceCriterion:
    """A user criterion that fails once, at the third evaluation."""

    def __init__(self) -> None:
        self.failed = False

    def __call__(self, history: History) -> str | None:
        if len(history) == 3 and not self.failed:
            self.failed = True
            raise ZeroDivisionError("a user criterion failed")
        return None


class _OnceTrace:
    """A ``trace_func`` that fails once, at the third improvement's message."""

    def __init__(self) -> None:
        self.failed = False

    def __call__(self, message: str) -> None:
        if "--> 1.000000" in message and not self.failed:
            self.failed = True
            raise BrokenPipeError("the log pipe is closed")


class _Faults:
    """Monkeypatches that fail once, at the third call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.armed = False

    def fail(self, owner: Any, name: str, error: BaseException, after: int = 0) -> None:
        real = getattr(owner, name)
        calls = [0]

        def failing(*args: Any, **kwargs: Any) -> Any:
            if self.armed:
                calls[0] += 1
                if calls[0] > after:
                    self.armed = False
                    raise error
            return real(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, failing)


Setup = Callable[[_Faults], None]


def _none(faults: _Faults) -> None:
    return None


def _interrupt_creating_temp(faults: _Faults) -> None:
    faults.fail(tempfile, "mkstemp", KeyboardInterrupt())


class _InterruptedFile:
    """The temporary file, interrupted (Ctrl-C) inside its third ``write``."""

    def __init__(self, handle: Any, faults: _Faults) -> None:
        self.handle, self.faults, self.writes = handle, faults, 0

    def write(self, data: Any) -> int:
        if self.faults.armed:
            self.writes += 1
            if self.writes > 2:
                self.faults.armed = False
                raise KeyboardInterrupt
        written: int = self.handle.write(data)
        return written

    def flush(self) -> None:
        self.handle.flush()


def _interrupt_mid_write(faults: _Faults) -> None:
    real = _checkpoint._ErrorKeepingWriter.__init__

    def init(self: Any, handle: Any) -> None:
        real(self, _InterruptedFile(handle, faults))

    faults.monkeypatch.setattr(_checkpoint._ErrorKeepingWriter, "__init__", init)


def _exit_at_rename(faults: _Faults) -> None:
    faults.fail(_checkpoint.os, "replace", SystemExit(143))


def _background_write_fails_during_call(faults: _Faults) -> None:
    error = CheckpointError("background write of evaluation 2 failed: disk full", "x.pt")
    faults.fail(BackgroundWriter, "submit", error)


# id, EarlyStopping options, third value, its call keywords, fault, error, match, the
# keywords of the call that then commits it (None: it fails by nature, nothing to retry)
CASES: list[
    tuple[
        str,
        Callable[[], dict[str, Any]],
        float,
        dict[str, Any],
        Setup,
        type[BaseException],
        str,
        dict[str, Any] | None,
    ]
] = [
    (
        "user criterion raises",
        lambda: {"criteria": [_OnceCriterion()]},
        1.0,
        {},
        _none,
        ZeroDivisionError,
        "a user criterion failed",
        {},
    ),
    (
        "trace_func raises",
        lambda: {"verbose": True, "trace_func": _OnceTrace()},
        1.0,
        {},
        _none,
        BrokenPipeError,
        "the log pipe is closed",
        {},
    ),
    (
        "GL on a negative loss",
        lambda: {"criteria": [GL(2)]},
        -1.0,
        {},
        _none,
        ValueError,
        "`GL` needs losses >= 0",
        None,
    ),
    (
        "PQ without train_loss",
        lambda: {"criteria": [PQ(0.1, strip=3)]},
        1.0,
        {},
        _none,
        KeyError,
        "no series named 'train_loss'",
        {"train_loss": 0.5},
    ),
    (
        "background: refused extra_state",
        lambda: {"background": True},
        1.0,
        {"extra_state": {"epoch": np.int64(3)}},
        _none,
        CheckpointError,
        r"cannot save extra\['epoch'\]",
        {"extra_state": {"epoch": 3}},
    ),
    (
        "background: a write fails during the call",
        lambda: {"background": True},
        1.0,
        {},
        _background_write_fails_during_call,
        CheckpointError,
        "disk full",
        {},
    ),
    (
        "KeyboardInterrupt before the temporary file",
        dict,
        1.0,
        {},
        _interrupt_creating_temp,
        KeyboardInterrupt,
        "^$",
        {},
    ),
    (
        "KeyboardInterrupt during the data write",
        dict,
        1.0,
        {},
        _interrupt_mid_write,
        KeyboardInterrupt,
        "^$",
        {},
    ),
    (
        "KeyboardInterrupt during the data write, weights also in memory",
        lambda: {"restore_best_weights": True},
        1.0,
        {},
        _interrupt_mid_write,
        KeyboardInterrupt,
        "^$",
        {},
    ),
    ("SystemExit at the rename", dict, 1.0, {}, _exit_at_rename, SystemExit, "143", {}),
]


@pytest.mark.parametrize(
    ("options", "value", "call", "setup", "error", "match", "retry"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_failing_call_leaves_everything_as_before(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: Callable[[], dict[str, Any]],
    value: float,
    call: dict[str, Any],
    setup: Setup,
    error: type[BaseException],
    match: str,
    retry: dict[str, Any] | None,
) -> None:
    record("faults injected")
    path = tmp_path / "best.pt"
    es = EarlyStopping(patience=5, path=path, **{"trace_func": None, **options()})
    faults = _Faults(monkeypatch)
    setup(faults)
    for epoch, kept in enumerate(VALUES, start=1):
        es(kept, sentinel_model(epoch))
    before = (es.state_dict(), es.best_epoch, es.counter, es.last_decision)
    faults.armed = True
    with pytest.raises(error, match=match) as info:
        es(value, sentinel_model(3), **call)
    assert type(info.value) is error  # never wrapped (Ctrl-C is no CheckpointError)
    assert (es.state_dict(), es.best_epoch, es.counter, es.last_decision) == before
    probe = sentinel_model(0)
    es.restore(probe)
    assert held_index(probe) == 2
    es.flush()
    assert load_checkpoint(path).step == 2
    if retry is not None:
        faults.armed = False
        es(value, sentinel_model(3), **retry)  # the same call again commits
        es.restore(probe)
        assert (es.best_epoch, held_index(probe)) == (3, 3)
    es.close()


def test_scheduler_aware_without_lr_records_nothing() -> None:
    es = EarlyStopping(path=None, trace_func=None, scheduler=SchedulerAware(min_lr=1e-3))
    with pytest.raises(KeyError, match="no series named 'lr'"):
        es(1.0, sentinel_model(1))
    assert es.stopper.step_count == 0
    assert es.best_epoch is None
    assert not es.keeper.has_snapshot


def test_a_sparse_buffer_is_kept_and_restored() -> None:
    model = sentinel_model(1)
    model.register_buffer("mask", torch.eye(3).to_sparse())
    es = EarlyStopping(path=None, trace_func=None)
    es(1.0, model)
    with torch.no_grad():
        model.weight.fill_(9.0)
    model.mask = torch.zeros(3, 3).to_sparse()
    es.restore(model)
    assert es.best_epoch == 1
    assert float(model.weight.detach()[0, 0]) == 1.0
    assert torch.equal(model.mask.to_dense(), torch.eye(3))


def test_interrupted_copy_in_memory_says_the_best_weights_are_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Memory is the only copy: an interrupted overwrite loses it, and restore says so."""
    es = EarlyStopping(patience=5, path=None, trace_func=None)
    es(2.0, sentinel_model(1))
    real = torch._foreach_copy_

    def half_then_interrupt(buffers: Any, sources: Any, **kwargs: Any) -> None:
        real(buffers[:1], sources[:1], **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "_foreach_copy_", half_then_interrupt)
    lost = r"the best weights \(evaluation 1\) are lost: keeping the weights of evaluation 2 "
    with (
        pytest.warns(LostWeightsWarning, match="^earlystop: " + lost),
        pytest.raises(KeyboardInterrupt),
    ):
        es(1.0, sentinel_model(2))
    assert es.best_epoch == 1
    with pytest.raises(RuntimeError, match="^" + lost + "was interrupted by KeyboardInterrupt"):
        es.restore(sentinel_model(0))
    monkeypatch.undo()
    es(1.0, sentinel_model(2))  # the next improvement keeps weights again
    probe = sentinel_model(0)
    es.restore(probe)
    assert held_index(probe) == 2


def test_lost_warning_does_not_replace_the_interrupt_when_warnings_are_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    es = EarlyStopping(patience=5, path=None, trace_func=None)
    es(2.0, sentinel_model(1))

    def interrupt(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "_foreach_copy_", interrupt)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LostWeightsWarning)
        with pytest.raises(KeyboardInterrupt) as info:
            es(1.0, sentinel_model(2))
    if sys.version_info >= (3, 11):  # the warning's text travels as a note
        assert any("are lost" in note for note in info.value.__notes__)


def test_an_adapter_restoring_weights_of_an_earlier_process_warns() -> None:
    from earlystop.integrations._support import restore_best

    es = EarlyStopping(patience=5, path=None, trace_func=None)
    es(1.0, sentinel_model(1))
    resumed = EarlyStopping(patience=5, path=None, trace_func=None)
    resumed.load_state_dict(es.state_dict())
    model = sentinel_model(4)
    with pytest.warns(
        LostWeightsWarning,
        match=r"^earlystop: the best weights \(evaluation 1\) were kept by an earlier process; "
        r"give `path=` to restore them after a resume$",
    ):
        assert restore_best(resumed, model) is None
    assert held_index(model) == 4
