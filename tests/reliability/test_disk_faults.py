"""Disk faults during a save: the previous checkpoint survives and training goes on.

Every fault is injected into a real ``EarlyStopping`` run between two improvements: the
first improvement is saved, the second one hits the fault. Then the error names the path
and the cause, the file holds the first improvement byte for byte, no temporary file is
left, the stopper still knows the second improvement is the best and :meth:`restore`
gives its weights (kept in memory), and the third improvement saves normally.

We run as root, so ``chmod`` cannot make a directory unwritable: permission and
read-only faults are injected where the operating system would raise them
(``tempfile.mkstemp``, ``os.replace``) with the errno it would use.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from earlystop import CheckpointError, EarlyStopping
from earlystop._weights import checkpoint as _checkpoint

from ._figures import record
from ._killer import stray_temporaries
from ._sentinel import held_index, sentinel_model

torch = pytest.importorskip("torch")

FILES = {"torch": "ckpt.pt", "safetensors": "ckpt.safetensors"}


def os_error(code: int, filename: str | None = None) -> OSError:
    return OSError(code, os.strerror(code), filename)


# -- the faults: each installs itself with monkeypatch and says what the error must name --


class PartialWriter:
    """A file whose disk fills up after ``budget`` bytes: a short write, then ENOSPC."""

    def __init__(self, handle: Any, budget: int) -> None:
        self._handle, self._left = handle, budget

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if len(chunk) > self._left:
            self._handle.write(chunk[: self._left])
            self._left = 0
            raise os_error(errno.ENOSPC)
        self._left -= len(chunk)
        written: int = self._handle.write(chunk)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> PartialWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def enospc_mid_file(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    if fmt == "torch":  # torch.save writes through the Python file object: cut it short
        real_open = open

        def full_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            return PartialWriter(real_open(file, mode, *args, **kwargs), budget=300)

        monkeypatch.setattr(_checkpoint, "open", full_open, raising=False)
    else:  # safetensors writes from Rust: write half of the real bytes, then fail
        import safetensors.torch

        real_save = safetensors.torch.save_file

        def full_save(tensors: Any, filename: str, metadata: Any = None) -> None:
            real_save(tensors, filename, metadata=metadata)
            data = Path(filename).read_bytes()
            Path(filename).write_bytes(data[: len(data) // 2])
            raise os_error(errno.ENOSPC)

        monkeypatch.setattr(safetensors.torch, "save_file", full_save)


def failing(exc: OSError) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return fail


def enospc_at_fsync(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setattr(os, "fsync", failing(os_error(errno.ENOSPC)))


def eio_at_fsync(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setattr(os, "fsync", failing(os_error(errno.EIO)))


def eacces_creating_temp(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setattr(tempfile, "mkstemp", failing(os_error(errno.EACCES)))


def erofs_creating_temp(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setattr(tempfile, "mkstemp", failing(os_error(errno.EROFS)))


def eacces_at_rename(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setattr(os, "replace", failing(os_error(errno.EACCES)))


def vanishes_mid_save(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """The directory is removed after the temporary file is created, before it is written."""
    real_mkstemp = tempfile.mkstemp

    def mkstemp_then_vanish(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)
        shutil.rmtree(Path(name).parent)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_vanish)


FAULTS: dict[str, tuple[Callable[[pytest.MonkeyPatch, str], None], str]] = {
    "ENOSPC mid-file": (enospc_mid_file, "No space left on device"),
    "ENOSPC at fsync": (enospc_at_fsync, "No space left on device"),
    "EIO at fsync": (eio_at_fsync, "Input/output error"),
    "EACCES creating the temporary file": (eacces_creating_temp, "Permission denied"),
    "EROFS (read-only directory)": (erofs_creating_temp, "Read-only file system"),
    "EACCES at rename": (eacces_at_rename, "Permission denied"),
    "directory vanishes mid-save": (vanishes_mid_save, "No such file or directory"),
}


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
@pytest.mark.parametrize("fmt", sorted(FILES))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_keeps_previous_checkpoint_and_training_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, fmt: str, background: bool
) -> None:
    install, cause = FAULTS[fault]
    path = tmp_path / "run" / FILES[fmt]
    stopper = EarlyStopping(patience=3, path=path, trace_func=None, background=background)
    stopper(1.0, sentinel_model(1))
    stopper.flush()
    before = path.read_bytes()

    with monkeypatch.context() as patch:
        install(patch, fmt)
        record("faults injected")
        with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*" + cause) as info:
            improve_and_flush(stopper, 0.5, sentinel_model(2))

    assert info.value.path == path
    if not background:
        assert info.value.decision.improved  # type: ignore[attr-defined]
    if fault != "directory vanishes mid-save":  # that one took the old file with it
        assert path.read_bytes() == before
    assert not stray_temporaries(path)
    # The in-memory best is the true best: step 2, with its weights.
    assert stopper.best_epoch == 2
    restored = sentinel_model(0)
    stopper.restore(restored)
    assert held_index(restored) == 2.0
    # Training goes on: a worse value counts, the next improvement is saved.
    assert not stopper(0.7, sentinel_model(3)).improved
    assert stopper(0.1, sentinel_model(4)).improved
    stopper.close()
    assert held_index(_load(path)) == 4.0
    assert not stray_temporaries(path)


def improve_and_flush(stopper: EarlyStopping, value: float, model: Any) -> None:
    """In background mode the call returns and the failed write is raised by ``flush``."""
    stopper(value, model)
    stopper.flush()


def _load(path: Path) -> Any:
    from earlystop import load_checkpoint

    model = sentinel_model(0)
    model.load_state_dict(load_checkpoint(path).state_dict)
    return model


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_path_that_is_a_directory(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / FILES[fmt]
    path.mkdir()
    (path / "inside.txt").write_text("keep me")
    record("faults injected")
    with pytest.raises(ValueError, match=r"^`path` must name a regular file, got .*: it is a dir"):
        EarlyStopping(patience=3, path=path, trace_func=None)
    (path / "inside.txt").unlink()
    path.rmdir()
    stopper = EarlyStopping(patience=3, path=path, trace_func=None)
    path.mkdir()  # appears after construction: refused at the write, never replaced
    (path / "inside.txt").write_text("keep me")
    with pytest.raises(
        CheckpointError, match=re.escape(str(path)) + ": it is a directory, which a checkpoint"
    ):
        stopper(1.0, sentinel_model(1))
    assert (path / "inside.txt").read_text() == "keep me"
    assert not stray_temporaries(path)
    assert stopper.best_epoch == 1
    restored = sentinel_model(0)
    stopper.restore(restored)
    assert held_index(restored) == 1.0


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_parent_that_is_a_file(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "run").write_text("not a directory")
    path = tmp_path / "run" / FILES[fmt]
    stopper = EarlyStopping(patience=3, path=path, trace_func=None)
    record("faults injected")
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*File exists"):
        stopper(1.0, sentinel_model(1))
    assert (tmp_path / "run").read_text() == "not a directory"
    restored = sentinel_model(0)
    stopper.restore(restored)
    assert held_index(restored) == 1.0


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_directory_removed_between_saves_is_recreated(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "run" / FILES[fmt]
    stopper = EarlyStopping(patience=3, path=path, trace_func=None)
    stopper(1.0, sentinel_model(1))
    shutil.rmtree(path.parent)
    record("faults injected")
    assert stopper(0.5, sentinel_model(2)).improved
    assert held_index(_load(path)) == 2.0


def test_save_checkpoint_fault_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt.pt"
    _checkpoint.save_checkpoint(path, {"w": torch.ones(3)})
    before = path.read_bytes()
    enospc_mid_file(monkeypatch, "torch")
    record("faults injected")
    with pytest.raises(CheckpointError, match=r"the previous checkpoint is intact"):
        _checkpoint.save_checkpoint(path, {"w": torch.zeros(300)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A real 256 KiB file system (tmpfs); skipped where mounting is not allowed."""
    import subprocess

    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], timeout=30, check=False)


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_real_full_disk(small_disk: Path, fmt: str) -> None:
    path = small_disk / FILES[fmt]
    stopper = EarlyStopping(patience=3, path=path, trace_func=None)
    stopper(1.0, sentinel_model(1))
    before = path.read_bytes()
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the file system up to the last block
        with pytest.raises(OSError, match="No space left on device"):
            _write_until_full(fd)
    finally:
        os.close(fd)
    record("faults injected")
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*No space left on device"):
        stopper(0.5, sentinel_model(2))
    assert path.read_bytes() == before
    assert not stray_temporaries(path)
    filler.unlink()  # space comes back: training goes on and saves
    assert stopper(0.1, sentinel_model(3)).improved
    assert held_index(_load(path)) == 3.0


def _write_until_full(fd: int) -> None:
    while True:
        os.write(fd, b"\0" * 4096)


def test_stale_temporaries_of_a_name_with_glob_characters_are_cleaned(tmp_path: Path) -> None:
    path = tmp_path / "best[fold-1].pt"
    stale = tmp_path / ".best[fold-1].pt.k1ll3d.earlystop-tmp"
    stale.write_bytes(b"left by a kill")
    _checkpoint.save_checkpoint(path, {"w": torch.ones(1)})
    assert not stale.exists()
    assert not stray_temporaries(path)


def test_unwritable_name_is_a_checkpoint_error(tmp_path: Path) -> None:
    record("faults injected")
    path = tmp_path / "nul\0.pt"
    with pytest.raises(CheckpointError, match=r"cannot create a temporary file.*null byte"):
        _checkpoint.save_checkpoint(path, {"w": torch.ones(1)})
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root ignores directory permissions; the injected EACCES/EROFS cases cover it",
)
def test_real_read_only_directory(tmp_path: Path) -> None:
    path = tmp_path / "run" / "ckpt.pt"
    stopper = EarlyStopping(patience=3, path=path, trace_func=None)
    stopper(1.0, sentinel_model(1))
    before = path.read_bytes()
    path.parent.chmod(0o500)
    try:
        record("faults injected")
        with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*Permission denied"):
            stopper(0.5, sentinel_model(2))
        assert path.read_bytes() == before
    finally:
        path.parent.chmod(0o700)
    restored = sentinel_model(0)
    stopper.restore(restored)
    assert held_index(restored) == 2.0
