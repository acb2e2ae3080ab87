"""Paths that are not regular files, concurrent writers, interrupted close (issue 11)."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from earlystop import (
    CheckpointError,
    EarlyStopping,
    LostWeightsWarning,
    load_checkpoint,
    save_checkpoint,
)
from earlystop._weights import background as _background
from earlystop._weights.paths import TMP_SUFFIX, remove_stale_temporaries

from ._figures import record
from ._sentinel import held_index, sentinel_model

SRC = Path(__file__).resolve().parents[2] / "src"


def _weights(index: float) -> dict[str, Any]:
    return dict(sentinel_model(index).state_dict())


# -- paths that are not regular files ------------------------------------------------


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.pt"
    os.mkfifo(path)
    return path


def _directory(tmp_path: Path) -> Path:
    path = tmp_path / "folder.pt"
    path.mkdir()
    return path


def _link_to_fifo(tmp_path: Path) -> Path:
    link = tmp_path / "link.pt"
    link.symlink_to(_fifo(tmp_path))
    return link


SPECIAL = [
    ("a character device", lambda tmp: Path("/dev/null"), "a character device"),
    ("a FIFO", _fifo, r"a FIFO \(named pipe\)"),
    ("a directory", _directory, "a directory"),
    ("a symlink to a FIFO", _link_to_fifo, r"a FIFO \(named pipe\)"),
]


@pytest.mark.parametrize(("make", "kind"), [c[1:] for c in SPECIAL], ids=[c[0] for c in SPECIAL])
def test_special_files_are_refused_at_construction_and_never_replaced(
    tmp_path: Path, make: Any, kind: str
) -> None:
    if not Path("/dev/null").exists():  # pragma: no cover - not a POSIX machine
        pytest.skip("no /dev/null here")
    record("faults injected")
    path = make(tmp_path)
    mode = os.stat(path).st_mode
    with pytest.raises(
        ValueError, match=rf"^`path` must name a regular file, got .*: it is {kind}"
    ):
        EarlyStopping(path=path, trace_func=None)
    with pytest.raises(CheckpointError, match=rf"^cannot write checkpoint .*: it is {kind}, which"):
        save_checkpoint(path, _weights(1))
    assert os.stat(path).st_mode == mode  # still what it was


def test_a_fifo_appearing_after_construction_is_refused_at_the_write(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    es = EarlyStopping(path=path, trace_func=None)
    os.mkfifo(path)
    with pytest.raises(CheckpointError, match=r"it is a FIFO \(named pipe\), which a checkpoint"):
        es(1.0, sentinel_model(1))
    assert stat.S_ISFIFO(os.stat(path).st_mode)


@pytest.mark.parametrize("name", ["runs/", "runs" + os.sep + os.sep])
def test_a_trailing_separator_is_refused(tmp_path: Path, name: str) -> None:
    path = f"{tmp_path}{os.sep}{name}"
    with pytest.raises(ValueError, match=r"it ends with a path separator, so it names a dir"):
        EarlyStopping(path=path, trace_func=None)
    with pytest.raises(CheckpointError, match=r"ends with a path separator"):
        save_checkpoint(path, _weights(1))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["best.pt", "best.safetensors"])
def test_a_symlink_path_updates_its_target_atomically(tmp_path: Path, name: str) -> None:
    pytest.importorskip("safetensors")
    target = tmp_path / "store" / name
    target.parent.mkdir()
    link = tmp_path / "link" / name
    link.parent.mkdir()
    link.symlink_to(target)
    es = EarlyStopping(path=link, trace_func=None)
    for epoch, value in enumerate([3.0, 2.0, 1.0], start=1):
        es(value, sentinel_model(epoch))
    assert link.is_symlink()  # never replaced by a regular file
    assert load_checkpoint(target).step == 3
    model = sentinel_model(0)
    model.load_state_dict(load_checkpoint(link).state_dict)
    assert held_index(model) == 3
    assert sorted(p.name for p in link.parent.iterdir()) == [name]  # no temporary there
    assert sorted(p.name for p in target.parent.iterdir()) == [name]


# -- concurrent writers ----------------------------------------------------------------


def test_two_threads_saving_one_path_never_fail_each_other(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    failures: list[BaseException] = []

    def save(index: float) -> None:
        for _ in range(30):
            try:
                save_checkpoint(path, _weights(index), step=int(index))
            except CheckpointError as exc:  # the bug: the other's clean-up removed our temp
                failures.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in (1.0, 2.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    record("faults injected")
    assert failures == []
    assert load_checkpoint(path).step in (1, 2)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(TMP_SUFFIX)]


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import torch
    from earlystop import CheckpointError, save_checkpoint
    path, index = Path(sys.argv[1]), int(sys.argv[2])
    failed = 0
    for _ in range(30):
        try:
            save_checkpoint(path, {"w": torch.full((64,), float(index))}, step=index)
        except CheckpointError:
            failed += 1
    print(failed)
    """
)


def test_two_processes_and_a_neighbour_file_never_fail_each_other(tmp_path: Path) -> None:
    """``best.pt`` twice and ``best.pt.x`` at once: none deletes another's temporary."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    targets = [tmp_path / "best.pt", tmp_path / "best.pt", tmp_path / "best.pt.x"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(index)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index, target in enumerate(targets, start=1)
    ]
    failed = [int(proc.communicate(timeout=240)[0]) for proc in procs]
    record("faults injected")
    assert failed == [0, 0, 0]
    assert load_checkpoint(tmp_path / "best.pt").step in (1, 2)
    assert load_checkpoint(tmp_path / "best.pt.x").step == 3


def test_clean_up_removes_only_provably_stale_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "best.pt"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    me = os.getpid()
    live = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
    live.start()
    names = {
        f".best.pt.{int(dead.stdout)}-1.abc{TMP_SUFFIX}": False,  # dead process: stale
        f".best.pt.{me}-{threading.get_native_id()}.abc{TMP_SUFFIX}": False,  # our own
        f".best.pt.{me}-{live.native_id}.abc{TMP_SUFFIX}": True,  # a live thread's
        f".best.pt.{os.getppid()}-1.abc{TMP_SUFFIX}": True,  # a live process's
        f".best.pt.x.{me}-1.abc{TMP_SUFFIX}": True,  # another file's
        f".best.pt.abc12345{TMP_SUFFIX}": False,  # an earlier version's, no writer
    }
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    remove_stale_temporaries(target)
    assert {p.name: True for p in tmp_path.iterdir()} == {n: True for n, k in names.items() if k}


# -- interrupted close and flush -------------------------------------------------------


def _writer_threads() -> int:
    return sum(t.name == "earlystop-checkpoint-writer" for t in threading.enumerate())


def test_interrupted_close_leaves_one_consistent_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real Ctrl-C (SIGINT) while close() waits for a busy writer."""
    path = tmp_path / "best.pt"
    es = EarlyStopping(path=path, trace_func=None, background=True)
    release = threading.Event()
    real = _background.save_checkpoint

    def held_save(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(_background, "save_checkpoint", held_save)
    monkeypatch.setattr(signal, "signal", signal.signal)  # restored after the test
    signal.signal(signal.SIGINT, signal.default_int_handler)
    es(4.0, sentinel_model(1))
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        es.close()  # waits: the writer is held
    release.set()
    for epoch, value in enumerate([3.0, 2.0, 1.0], start=2):
        es(value, sentinel_model(epoch))
        assert _writer_threads() <= 1
    es.flush()
    assert load_checkpoint(path).step == 4
    es.close()
    assert _writer_threads() == 0


SIGTERM_DURING_CLOSE = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import torch
    from earlystop import EarlyStopping
    from earlystop._weights import background

    real = background.save_checkpoint
    def slow_save(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)
    background.save_checkpoint = slow_save
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    es = EarlyStopping(path=sys.argv[1], trace_func=None, background=True)
    model = torch.nn.Linear(2, 1)
    for epoch, value in enumerate([4.0, 3.0, 2.0, 1.0], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        es(value, model)
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
    es.close()  # the SIGTERM handler's SystemExit lands in here
    """
)


def test_sigterm_during_close_still_writes_the_latest_best(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING_CLOSE, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(path).step == 4
    assert float(load_checkpoint(path).state_dict["weight"][0, 0]) == 4.0


# -- state ahead of the file -----------------------------------------------------------


def test_restore_after_a_resume_refuses_a_file_that_lags_the_best(tmp_path: Path) -> None:
    """The state says 3 is best, the file still holds 1 (a background write lost)."""
    path = tmp_path / "best.pt"
    es = EarlyStopping(patience=5, path=path, trace_func=None)
    for epoch, value in enumerate([3.0, 2.0, 1.0], start=1):
        es(value, sentinel_model(epoch))
    state = es.state_dict()
    assert state["weights"] == {"kept": "file", "path": str(path), "step": 3}
    save_checkpoint(path, _weights(1), step=1, fold=0)  # what a crash could leave
    resumed = EarlyStopping(patience=5, path=path, trace_func=None, restore_best_weights=True)
    resumed.load_state_dict(state)
    lag = "holds evaluation 1 of fold 0, not the best evaluation 3 of fold 0, so it is not loaded"
    model = sentinel_model(7)
    with pytest.raises(CheckpointError, match=re.escape(lag)):
        resumed.restore(model)
    assert held_index(model) == 7
    for value in [5.0] * 4:
        resumed(value, model)
    with pytest.warns(LostWeightsWarning, match=re.escape(lag)):
        resumed(5.0, model)  # patience 5 runs out: restore_best_weights cannot
    assert resumed.early_stop
    assert held_index(model) == 7  # kept its weights rather than loading evaluation 1


def test_a_file_of_another_fold_is_not_the_best(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    es = EarlyStopping(patience=5, path=path, trace_func=None)
    es(1.0, sentinel_model(1))
    es.reset()  # fold 1, same file: nothing better yet in this fold
    es.fold = 1
    save_checkpoint(path, _weights(1), step=1, fold=0)
    es.stopper.step(1.0)  # decided without a model: best is 1, its weights never kept
    with pytest.raises(CheckpointError, match=r"holds evaluation 1 of fold 0, not the best "):
        es.restore(sentinel_model(0))


# -- fork ------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_wait_for_the_parents_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = _background.save_checkpoint

    def held_save(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)  # the parent's writer is busy while the child runs
        return real(*args, **kwargs)

    monkeypatch.setattr(_background, "save_checkpoint", held_save)
    es = EarlyStopping(path=tmp_path / "parent.pt", trace_func=None, background=True)
    es(2.0, sentinel_model(1))
    child_path = tmp_path / "child.pt"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            monkeypatch.setattr(_background, "save_checkpoint", real)
            es.reset(path=child_path)
            es(1.0, sentinel_model(5))
            es.flush()
            code = 0 if load_checkpoint(child_path).step == 1 else 2
        finally:
            os._exit(code)
    deadline = 60.0
    waited, status = 0.0, 0
    while waited < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        threading.Event().wait(0.1)
        waited += 0.1
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    release.set()
    es.close()
    assert waited < deadline, "the child waited for the parent's writer"
    assert os.waitstatus_to_exitcode(status) == 0
    assert load_checkpoint(tmp_path / "parent.pt").step == 1
    assert torch.equal(load_checkpoint(child_path).state_dict["weight"], torch.full((2, 3), 5.0))
