"""Background checkpoints: latest wins, buffers never torn, errors never lost."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop import CheckpointError, EarlyStopping, load_checkpoint
from earlystop._weights import background as _background
from earlystop._weights.background import BackgroundWriter


def sentinel_model() -> torch.nn.Module:
    """Tied weights included: the embedding and the output share one tensor."""
    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5))
    model[1].weight = model[0].weight
    return model


def mark(model: torch.nn.Module, epoch: int) -> None:
    """Every weight encodes the epoch."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(epoch))


def epoch_of(state: dict[str, torch.Tensor]) -> int:
    values = {float(v.flatten()[0]) for v in state.values()}
    assert len(values) == 1, f"torn state: {values}"
    assert all(bool((v == v.flatten()[0]).all()) for v in state.values()), "torn tensor"
    return int(values.pop())


class Gate:
    """Holds the writer inside ``save_checkpoint`` until released, to make timing exact."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.saved: list[int] = []
        real = _background.save_checkpoint

        def gated(path: Any, state: Any, **kwargs: Any) -> Path:
            self.entered.set()
            assert self.release.wait(10), "test never released the writer"
            self.saved.append(epoch_of(state))
            return real(path, state, **kwargs)

        monkeypatch.setattr(_background, "save_checkpoint", gated)


@pytest.fixture
def writer() -> Iterator[BackgroundWriter]:
    w = BackgroundWriter()
    yield w
    w.close()


def test_writes_the_latest_snapshot(tmp_path: Path, writer: BackgroundWriter) -> None:
    model, path = sentinel_model(), tmp_path / "best.pt"
    for epoch in range(1, 6):
        mark(model, epoch)
        writer.submit(path, model.state_dict(), step=epoch)
    writer.flush()
    assert epoch_of(load_checkpoint(path).state_dict) == 5
    assert writer.latest is not None
    assert writer.latest.step == 5
    assert 1 <= writer.writes <= 5
    assert writer.writes + writer.superseded == 5


def test_newer_snapshot_supersedes_pending_and_never_tears_the_one_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: BackgroundWriter
) -> None:
    gate = Gate(monkeypatch)
    model, path = sentinel_model(), tmp_path / "best.pt"
    mark(model, 1)
    writer.submit(path, model.state_dict(), step=1)
    assert gate.entered.wait(10)  # the writer holds snapshot 1 and is blocked
    for epoch in (2, 3, 4):  # 2 and 3 are superseded while pending; 4 waits
        mark(model, epoch)
        writer.submit(path, model.state_dict(), step=epoch)
    gate.release.set()
    writer.flush()
    assert gate.saved == [1, 4]  # snapshot 1 was not overwritten while being written
    assert (writer.writes, writer.superseded) == (2, 2)
    assert epoch_of(load_checkpoint(path).state_dict) == 4
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    tied = model[0].weight.numel() * 4
    assert writer.nbytes == 2 * (state_bytes - tied)  # two slots at most, tied stored once


def test_a_snapshot_for_another_file_never_supersedes_the_pending_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: BackgroundWriter
) -> None:
    gate = Gate(monkeypatch)
    model = sentinel_model()
    first, second = tmp_path / "fold0.pt", tmp_path / "fold1.pt"
    for epoch, path in [(1, first), (2, first)]:
        mark(model, epoch)
        writer.submit(path, model.state_dict(), step=epoch)
        assert gate.entered.wait(10)  # epoch 1 is being written, epoch 2 is pending
    release = threading.Timer(0.2, gate.release.set)
    release.start()
    mark(model, 3)
    writer.submit(second, model.state_dict(), step=1)  # waits for epoch 2 to start writing
    writer.flush()
    release.join()
    assert gate.saved == [1, 2, 3]
    assert writer.superseded == 0
    assert epoch_of(load_checkpoint(first).state_dict) == 2
    assert epoch_of(load_checkpoint(second).state_dict) == 3


def test_one_buffer_while_the_writer_keeps_up(tmp_path: Path, writer: BackgroundWriter) -> None:
    model = sentinel_model()
    for epoch in (1, 2, 3):
        mark(model, epoch)
        writer.submit(tmp_path / "best.pt", model.state_dict(), step=epoch)
        writer.flush()
    assert writer.latest is not None
    assert writer.nbytes == writer.latest.nbytes  # one slot, reused
    assert writer.writes == 3


def test_file_on_disk_is_always_a_complete_earlier_or_latest_best(
    tmp_path: Path, writer: BackgroundWriter
) -> None:
    model, path = sentinel_model(), tmp_path / "best.safetensors"
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            if path.is_file():
                seen.append(epoch_of(load_checkpoint(path).state_dict))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for epoch in range(1, 41):
            mark(model, epoch)
            writer.submit(path, model.state_dict(), step=epoch)
        writer.flush()
    finally:
        done.set()
        reader.join(10)
    seen.append(epoch_of(load_checkpoint(path).state_dict))
    assert seen == sorted(seen)
    assert seen[-1] == 40


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["submit", "flush", "check"]), min_size=1, max_size=12))
def test_any_sequence_of_calls_ends_with_the_latest_on_disk(calls: list[str]) -> None:
    model, submitted = sentinel_model(), 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best.pt"
        writer = BackgroundWriter()
        try:
            for call in calls:
                if call == "submit":
                    submitted += 1
                    mark(model, submitted)
                    writer.submit(path, model.state_dict(), step=submitted)
                else:
                    getattr(writer, call)()
                if call == "flush" and submitted:
                    assert epoch_of(load_checkpoint(path).state_dict) == submitted
        finally:
            writer.close()
        assert writer.writes + writer.superseded == submitted
        assert path.is_file() == bool(submitted)
        if submitted:
            assert epoch_of(load_checkpoint(path).state_dict) == submitted
            assert writer.latest is not None
            assert writer.latest.step == submitted
            assert writer.nbytes in (writer.latest.nbytes, 2 * writer.latest.nbytes)


def test_extra_state_is_frozen_at_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: BackgroundWriter
) -> None:
    gate = Gate(monkeypatch)
    model, path = sentinel_model(), tmp_path / "best.pt"
    counter = {"n": torch.tensor([1.0])}
    mark(model, 1)
    writer.submit(path, model.state_dict(), step=1, extra={"counter": counter, "epoch": 1})
    counter["n"].fill_(99.0)  # the training loop keeps changing its state
    gate.release.set()
    writer.flush()
    saved = load_checkpoint(path).extra
    assert saved["epoch"] == 1
    assert float(saved["counter"]["n"]) == 1.0


def test_unsavable_extra_state_is_refused_at_submit(
    tmp_path: Path, writer: BackgroundWriter
) -> None:
    with pytest.raises(CheckpointError, match=r"extra\['bad'\].*object is not a tensor"):
        writer.submit(tmp_path / "x.pt", sentinel_model().state_dict(), 1, extra={"bad": object()})
    assert writer.latest is None


def blocked_path(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("not a directory")
    return tmp_path / "file" / "best.pt"


def test_write_error_is_raised_once_by_the_next_call(
    tmp_path: Path, writer: BackgroundWriter
) -> None:
    model = sentinel_model()
    good = tmp_path / "best.pt"
    mark(model, 1)
    writer.submit(good, model.state_dict(), step=1)
    writer.flush()
    mark(model, 2)
    writer.submit(blocked_path(tmp_path), model.state_dict(), step=2)
    writer._shared.wait_idle()
    with pytest.raises(
        CheckpointError, match=r"background write of evaluation 2 failed: cannot create"
    ) as info:
        writer.submit(good, model.state_dict(), step=3)
    assert info.value.path == tmp_path / "file" / "best.pt"
    writer.flush()  # reported once, not again
    assert epoch_of(load_checkpoint(good).state_dict) == 1  # the earlier best is intact


@pytest.mark.parametrize("reporter", ["check", "flush", "close"])
def test_every_entry_point_reports_the_error(
    tmp_path: Path, writer: BackgroundWriter, reporter: str
) -> None:
    writer.submit(blocked_path(tmp_path), sentinel_model().state_dict(), step=7)
    writer._shared.wait_idle()
    with pytest.raises(CheckpointError, match="background write of evaluation 7 failed"):
        getattr(writer, reporter)()


def test_later_failures_before_the_report_are_counted_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: BackgroundWriter
) -> None:
    gate = Gate(monkeypatch)
    model, path = sentinel_model(), blocked_path(tmp_path)
    mark(model, 1)
    writer.submit(path, model.state_dict(), step=1)
    assert gate.entered.wait(10)
    mark(model, 2)
    writer.submit(path, model.state_dict(), step=2)  # waits behind the blocked write
    gate.release.set()
    writer._shared.wait_idle()  # both fail before anything reports
    assert gate.saved == [1, 2]
    with pytest.raises(
        CheckpointError,
        match=r"evaluation 1 failed: .*\(and 1 later background write\(s\) failed too\)$",
    ):
        writer.check()
    writer.check()  # reported once


def test_unexpected_exception_in_the_writer_becomes_a_checkpoint_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: BackgroundWriter
) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("out of memory")

    monkeypatch.setattr(_background, "save_checkpoint", boom)
    writer.submit(tmp_path / "best.pt", sentinel_model().state_dict(), step=4)
    with pytest.raises(CheckpointError, match=r"evaluation 4 to .*best.pt failed: MemoryError"):
        writer.flush()


def test_an_error_never_reported_warns_when_the_writer_is_collected(tmp_path: Path) -> None:
    holder = [BackgroundWriter()]
    holder[0].submit(blocked_path(tmp_path), sentinel_model().state_dict(), step=2)
    holder[0]._shared.wait_idle()
    with pytest.warns(RuntimeWarning, match="background checkpoint error was never reported"):
        holder.clear()  # the last reference: the writer is collected here


def test_close_ends_the_thread_and_a_later_submit_restarts_it(
    tmp_path: Path, writer: BackgroundWriter
) -> None:
    model = sentinel_model()
    writer.submit(tmp_path / "a.pt", model.state_dict(), step=1)
    thread = writer._shared.thread
    writer.close()
    assert thread is not None
    assert not thread.is_alive()
    assert (tmp_path / "a.pt").is_file()
    mark(model, 2)
    writer.submit(tmp_path / "b.pt", model.state_dict(), step=2)
    writer.flush()
    assert epoch_of(load_checkpoint(tmp_path / "b.pt").state_dict) == 2


# -- EarlyStopping(background=True) -------------------------------------------------------

LOSSES = [5.0, 4.0, 4.5, 3.0, 3.5, 3.6, 3.7]  # best at epoch 4, stop at 7 with patience 3


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("restore_best_weights", [False, True])
def test_early_stopping_background_matches_synchronous(
    tmp_path: Path, suffix: str, restore_best_weights: bool
) -> None:
    paths = {mode: tmp_path / f"{mode}{suffix}" for mode in ("sync", "background")}
    models = {mode: sentinel_model() for mode in paths}
    decisions = {}
    for mode, path in paths.items():
        with EarlyStopping(
            patience=3,
            path=path,
            trace_func=None,
            restore_best_weights=restore_best_weights,
            background=mode == "background",
        ) as es:
            for epoch, loss in enumerate(LOSSES, start=1):
                mark(models[mode], epoch)
                if es(loss, models[mode]):
                    break
            decisions[mode] = (es.best_epoch, es.stopped_epoch, es.counter)
            assert es.keeper.allocations == int(restore_best_weights and mode == "sync")
        assert epoch_of(load_checkpoint(path).state_dict) == 4
        assert epoch_of(models[mode].state_dict()) == (4 if restore_best_weights else 7)
    assert decisions["sync"] == decisions["background"] == (4, 7, 3)


def test_early_stopping_restore_after_resume_reads_the_flushed_file(tmp_path: Path) -> None:
    model, path = sentinel_model(), tmp_path / "best.pt"
    with EarlyStopping(patience=5, path=path, trace_func=None, background=True) as es:
        for epoch, loss in enumerate([3.0, 2.0, 2.5], start=1):
            mark(model, epoch)
            es(loss, model)
        state = es.state_dict()
    with EarlyStopping(patience=5, path=path, trace_func=None, background=True) as resumed:
        resumed.load_state_dict(state)
        resumed.restore(model)
    assert epoch_of(model.state_dict()) == 2


def test_early_stopping_raises_a_failed_write_before_recording(tmp_path: Path) -> None:
    model = sentinel_model()
    es = EarlyStopping(path=blocked_path(tmp_path), trace_func=None, background=True)
    es(1.0, model)
    es._writer._shared.wait_idle()  # type: ignore[union-attr]
    with pytest.raises(CheckpointError, match="background write of evaluation 1 failed"):
        es(0.5, model)
    assert es.stopper.step_count == 1  # the failed call recorded nothing: call again
    es.path_template = tmp_path / "ok.pt"
    assert es(0.5, model).improved
    es.close()
    assert (tmp_path / "ok.pt").is_file()


def test_early_stopping_reset_forgets_the_in_memory_best(tmp_path: Path) -> None:
    model = sentinel_model()
    with EarlyStopping(path=tmp_path / "f{fold}.pt", trace_func=None, background=True) as es:
        es(1.0, model)
        es.reset()
        with pytest.raises(RuntimeError, match="no best weights to restore"):
            es.restore(model)
    assert (tmp_path / "f0.pt").is_file()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"background": "yes"}, r"`background` must be a bool, got 'yes'"),
        ({"background": True, "path": None}, r"`background=True` .* needs a `path`, got None"),
    ],
)
def test_early_stopping_background_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**kwargs)


def test_flush_and_close_are_no_ops_without_background(tmp_path: Path) -> None:
    with EarlyStopping(path=tmp_path / "best.pt", trace_func=None) as es:
        es(1.0, sentinel_model())
        es.flush()
    assert (tmp_path / "best.pt").is_file()


EXIT_SCRIPT = """
import sys, time, torch
from earlystop import EarlyStopping
from earlystop._weights import background as _background
real = _background.save_checkpoint
def slow(*args, **kwargs):
    time.sleep(0.5)  # the interpreter is exiting by now
    return real(*args, **kwargs)
_background.save_checkpoint = slow
model = torch.nn.Linear(8, 8)
with torch.no_grad():
    model.weight.fill_(7.0)
es = EarlyStopping(path=sys.argv[1], trace_func=None, background=True)
es(1.0, model)
print(es._writer.writes)
"""  # exits without flush() or close()


def test_interpreter_exit_waits_for_the_pending_write(tmp_path: Path) -> None:
    path = tmp_path / "best.safetensors"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"  # nothing written when the script ended
    assert float(load_checkpoint(path).state_dict["weight"][0, 0]) == 7.0


def test_early_stopping_background_saves_the_optimizer_of_the_best_evaluation(
    tmp_path: Path,
) -> None:
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    path = tmp_path / "best.pt"
    with EarlyStopping(patience=5, path=path, trace_func=None, background=True) as es:
        for epoch, loss in enumerate([2.0, 1.0, 1.5], start=1):
            optimizer.zero_grad()
            model(torch.ones(4, 3)).sum().backward()
            optimizer.step()
            es(loss, model, extra_state={"optimizer": optimizer, "epoch": epoch})
            if epoch == 2:
                best_steps = float(optimizer.state_dict()["state"][0]["step"])
    saved = load_checkpoint(path).extra
    assert saved["epoch"] == 2
    assert float(saved["optimizer"]["state"][0]["step"]) == best_steps == 2.0
    torch.optim.Adam(model.parameters()).load_state_dict(saved["optimizer"])
