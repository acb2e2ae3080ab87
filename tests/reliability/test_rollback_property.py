"""The invariant of issue 11 under exceptions injected anywhere in a call (hypothesis).

Whenever ``best_epoch`` is k, ``restore()`` loads exactly evaluation k's weights (sentinel
weights say which) or raises an error saying they are lost; never another evaluation's.
A call that raises leaves the stopper exactly as before (same ``state_dict()``), except
for a failed file write, which is committed with the weights kept in memory and reported
as a ``CheckpointError``. The exception is the one injected, never wrapped, for every
kind: an ordinary error, ``KeyboardInterrupt``, ``SystemExit``. Each failed call is made
again without the fault, so the run ends exactly as an undisturbed one.
"""

from __future__ import annotations

import errno
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop import CheckpointError, EarlyStopping, History, LostWeightsWarning, Stopper
from earlystop._weights import background as _background
from earlystop._weights import checkpoint as _checkpoint
from earlystop._weights import keeper as _keeper

from ._figures import record
from ._sentinel import held_index, sentinel_model

POINTS = ["criterion", "smoother", "trace_func", "state_dict", "keeper", "writer", "file write"]
ERRORS: list[type[BaseException]] = [RuntimeError, KeyboardInterrupt, SystemExit, OSError]
MODES = ["memory", "file", "file+memory", "background"]


class Injector:
    """Raises the armed exception at the armed point, once."""

    def __init__(self) -> None:
        self.point: str | None = None
        self.error: BaseException | None = None

    def arm(self, point: str, error: BaseException) -> None:
        self.point, self.error = point, error

    def hit(self, point: str) -> None:
        if self.point == point and self.error is not None:
            error, self.point, self.error = self.error, None, None
            raise error


class Criterion:
    def __init__(self, injector: Injector) -> None:
        self.injector = injector

    def __call__(self, history: History) -> str | None:
        self.injector.hit("criterion")
        return None


class Smoother:
    """The raw value, unsmoothed (kept step = best step), with a point to fail at."""

    def __init__(self, injector: Injector) -> None:
        self.injector = injector

    def __call__(self, raw: Sequence[float], smoothed: Sequence[float]) -> float:
        self.injector.hit("smoother")
        return raw[-1]


class Model(torch.nn.Module):
    def __init__(self, injector: Injector, index: float) -> None:
        super().__init__()
        self.inner = sentinel_model(index)
        self.injector = injector

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self.injector.hit("state_dict")
        return super().state_dict(*args, **kwargs)


def _error(kind: type[BaseException]) -> BaseException:
    if kind is OSError:
        return OSError(errno.ENOSPC, "No space left on device (injected)")
    return kind("injected")


def _patch(monkeypatch: pytest.MonkeyPatch, injector: Injector) -> None:
    real_copy = torch._foreach_copy_

    def copy(buffers: Any, sources: Any, **kwargs: Any) -> None:
        real_copy(buffers[:1], sources[:1], **kwargs)  # half copied, then the fault
        injector.hit("keeper")
        real_copy(buffers, sources, **kwargs)

    monkeypatch.setattr(torch, "_foreach_copy_", copy)
    real_submit = _background.BackgroundWriter.submit

    def submit(self: Any, *args: Any, **kwargs: Any) -> None:
        injector.hit("writer")
        real_submit(self, *args, **kwargs)

    monkeypatch.setattr(_background.BackgroundWriter, "submit", submit)
    real_init = _checkpoint._ErrorKeepingWriter.__init__

    class File:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def write(self, data: Any) -> int:
            if injector.point == "file write" and not _is_writer_thread():
                injector.hit("file write")
            written: int = self.handle.write(data)
            return written

        def flush(self) -> None:
            self.handle.flush()

    def init(self: Any, handle: Any) -> None:
        real_init(self, File(handle))

    monkeypatch.setattr(_checkpoint._ErrorKeepingWriter, "__init__", init)
    assert _keeper  # the keeper copies through torch._foreach_copy_


def _is_writer_thread() -> bool:
    import threading

    return threading.current_thread().name == "earlystop-checkpoint-writer"


def _options(mode: str, injector: Injector, folder: Path) -> dict[str, Any]:
    options: dict[str, Any] = {
        "patience": None,
        "verbose": True,
        "trace_func": lambda message: injector.hit("trace_func"),
        "criteria": [Criterion(injector)],
        "smoothing": Smoother(injector),
        "path": None if mode == "memory" else folder / "best.pt",
    }
    options["restore_best_weights"] = mode == "file+memory"
    options["background"] = mode == "background"
    return options


def _check_invariant(es: EarlyStopping, lost: bool) -> None:
    best = es.best_epoch
    if best is None:
        return
    probe = Model(Injector(), -1.0)
    if not lost:
        es.restore(probe)
        assert held_index(probe) == best
        return
    with pytest.raises(RuntimeError, match=r"are lost|holds evaluation"):
        es.restore(probe)


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from(MODES),
    values=st.lists(st.sampled_from([5.0, 4.0, 3.0, 3.0, 2.0, 6.0, 1.0]), min_size=1, max_size=7),
    faults=st.lists(
        st.tuples(st.sampled_from(POINTS), st.sampled_from(ERRORS)) | st.none(),
        min_size=7,
        max_size=7,
    ),
)
def test_restore_gives_the_best_or_says_why_under_any_injected_exception(
    mode: str, values: list[float], faults: list[tuple[str, type[BaseException]] | None]
) -> None:
    injector = Injector()
    with tempfile.TemporaryDirectory() as name, pytest.MonkeyPatch.context() as monkeypatch:
        _patch(monkeypatch, injector)
        es = EarlyStopping(**_options(mode, injector, Path(name)))
        try:
            _run(es, injector, values, faults)
        finally:
            injector.point = None
            es.close()


def _run(
    es: EarlyStopping,
    injector: Injector,
    values: list[float],
    faults: list[tuple[str, type[BaseException]] | None],
) -> None:
    reference = Stopper(patience=None)
    lost = False
    for epoch, (value, fault) in enumerate(zip(values, faults, strict=False), start=1):
        before = es.stopper.state_dict()
        if fault is not None:
            injector.arm(fault[0], _error(fault[1]))
            record("faults injected")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                es(value, Model(injector, epoch))
            except BaseException as exc:
                # a write failing with an Exception is committed, kept in memory
                committed = isinstance(exc, CheckpointError) and fault is not None
                if committed and fault[0] == "file write" and issubclass(fault[1], Exception):
                    assert es.stopper.step_count == epoch  # committed, kept in memory
                else:
                    assert fault is not None, exc  # noqa: PT017 - pytest.raises can't
                    assert type(exc) is fault[1], exc  # noqa: PT017 - the original
                    assert es.stopper.state_dict() == before
                    _check_invariant(es, lost or _lost(caught))
                    es(value, Model(injector, epoch))  # again, without the fault
        injector.point = None
        lost = (lost or _lost(caught)) and es.best_epoch != epoch
        reference.step(value)
        _check_invariant(es, lost)
    assert es.stopper.state_dict() == reference.state_dict()


def _lost(caught: list[warnings.WarningMessage]) -> bool:
    return any(issubclass(w.category, LostWeightsWarning) for w in caught)
