"""Background checkpoints: snapshot in the training thread, write in one writer thread.

The training thread pays only for the copy into host memory (:class:`WeightsKeeper`);
a single daemon thread writes the latest snapshot with :func:`save_checkpoint`, which is
atomic, so the file on disk is always a complete earlier-or-latest best.

Buffers: a snapshot never overwrites the slot the writer is reading. One slot is used
while the writer keeps up; a second is allocated only when an improvement arrives while
a write is in progress (so memory is one copy of the weights, two at most). A pending
snapshot that has not started writing is overwritten in place by a newer one for the same
file, so the writer always persists the latest best and never falls behind by more than one
write. A snapshot for another file (the next cross-validation fold) waits until the pending
one has started writing instead of superseding it.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, _plain_state, save_checkpoint
from .keeper import WeightsKeeper

__all__ = ["BackgroundWriter"]

logger = logging.getLogger("earlystop")


@dataclass(eq=False)
class _Slot:
    """One host copy of the weights and where it goes."""

    keeper: WeightsKeeper = field(default_factory=WeightsKeeper)
    path: Path | None = None
    extra: dict[str, Any] | None = None
    fold: int | None = None


class _Shared:
    """Everything the writer thread touches (it must not hold the public object alive)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.slots: list[_Slot] = []
        self.pending: _Slot | None = None  # published, not yet picked up by the writer
        self.writing: _Slot | None = None  # being read by the writer right now
        self.latest: _Slot | None = None  # most recent complete snapshot
        self.error: CheckpointError | None = None  # the first unreported failure
        self.more_errors = 0  # failures after it, before it was reported
        self.thread: threading.Thread | None = None
        # Whether the writer thread runs, kept by the thread itself under the lock: an
        # interrupted ``Thread.join`` can make ``is_alive()`` say False for a thread that
        # still runs (CPython bpo-45274), which would start a second writer.
        self.running = False
        self.stopping = False
        self.writes = 0
        self.superseded = 0
        self.pid = os.getpid()  # a forked child inherits this object but not the thread

    def run(self) -> None:
        _lower_priority()
        while True:
            with self.lock:
                while self.pending is None and not self.stopping:
                    self.lock.wait()
                if self.pending is None:  # stopping and nothing left to write
                    self.thread, self.running = None, False
                    self.lock.notify_all()
                    return
                slot, self.pending, self.writing = self.pending, None, self.pending
                self.lock.notify_all()  # a submit may wait for the pending slot to start
            error = self._write(slot)
            with self.lock:
                self.writing = None
                if error is None:
                    self.writes += 1
                elif self.error is None:
                    self.error = error
                else:  # an earlier failure is still unreported: keep it, count this one
                    self.more_errors += 1
                    logger.error("earlystop: %s", error)
                self.lock.notify_all()

    @staticmethod
    def _write(slot: _Slot) -> CheckpointError | None:
        if slot.path is None:  # never published without one
            return None
        try:
            save_checkpoint(
                slot.path,
                slot.keeper.state_dict(),
                extra=slot.extra,
                step=slot.keeper.step,
                fold=slot.fold,
            )
        except CheckpointError as exc:
            message = f"background write of evaluation {slot.keeper.step} failed: {exc}"
            error = CheckpointError(message, exc.path)
            error.__cause__ = exc.__cause__
            return error
        except BaseException as exc:  # never let the thread die silently
            return CheckpointError(
                f"background write of evaluation {slot.keeper.step} to {slot.path} failed: "
                f"{type(exc).__name__}: {exc}",
                slot.path,
            )
        return None

    def take_error(self) -> None:
        """Raise (once) the error of a failed write."""
        with self.lock:
            error, self.error = self.error, None
            more, self.more_errors = self.more_errors, 0
        if error is not None and more:
            combined = CheckpointError(
                f"{error} (and {more} later background write(s) failed too)", error.path
            )
            raise combined from error.__cause__
        if error is not None:
            raise error

    def wait_idle(self) -> None:
        with self.lock:
            while self.pending is not None or self.writing is not None:
                if not self.running and (self.pending is None or not self.start_thread()):
                    break  # nothing can make progress (interpreter shutting down)
                self.lock.wait()

    def start_thread(self) -> bool:
        """Start the writer thread unless one runs (called with the lock held)."""
        if self.running:
            return True
        thread = threading.Thread(target=self.run, name="earlystop-checkpoint-writer", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            return False
        self.thread, self.running = thread, True
        return True

    def stop(self) -> None:
        """Write what is pending, then end the thread.

        Interrupted (``KeyboardInterrupt``, a signal handler's ``SystemExit``) while it
        waits, the writer is left running as if ``stop`` had not been called: it still
        writes what is pending, a later call finds that one writer, and the finalizer at
        interpreter exit waits for it.
        """
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
            try:
                while self.running and self.thread is not threading.current_thread():
                    self.lock.wait()
            finally:
                self.stopping = False
                if self.pending is not None:
                    self.start_thread()  # interrupted after the thread saw `stopping`
                self.lock.notify_all()


def _lower_priority() -> None:
    """Let the training thread win the CPU when both want it (Linux: per-thread nice)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + 5)
    except (AttributeError, OSError):  # not supported here: same priority, still correct
        pass


def _finalize(shared: _Shared) -> None:
    """At garbage collection or interpreter exit: finish writing, report a lost error."""
    if shared.pid != os.getpid():
        return  # a forked child: the writer thread and its work belong to the parent
    shared.stop()
    if shared.error is not None:
        warnings.warn(
            f"earlystop: a background checkpoint error was never reported: {shared.error}",
            RuntimeWarning,
            stacklevel=1,
        )


def _detach_extra(extra: Mapping[str, Any] | None, path: Path) -> dict[str, Any] | None:
    """Freeze extra state now: its tensors keep changing while the writer runs."""
    if not extra:
        return None
    return {name: _clone(_plain_state(name, value, path)) for name, value in extra.items()}


def _clone(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, Mapping):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clone(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_clone(item) for item in value)
    return value


class BackgroundWriter:
    """Keeps the latest best weights in host memory and writes them on a background thread.

    :meth:`submit` copies a ``state_dict`` into a host buffer and returns; the writer
    thread then saves it atomically with :func:`save_checkpoint`. A newer submission
    supersedes one still waiting. A failed write is raised as :class:`CheckpointError`
    by the next :meth:`submit`, :meth:`check`, :meth:`flush` or :meth:`close` (once);
    one never reported is turned into a ``RuntimeWarning`` when the writer is collected.

    >>> import tempfile, torch
    >>> from earlystop import load_checkpoint
    >>> model = torch.nn.Linear(2, 1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     writer = BackgroundWriter()
    ...     writer.submit(f"{tmp}/best.pt", model.state_dict(), step=1)
    ...     writer.close()  # waits for the write
    ...     saved = load_checkpoint(f"{tmp}/best.pt").state_dict
    >>> torch.equal(saved["weight"], model.weight)
    True
    """

    def __init__(self) -> None:
        self._shared_state = _Shared()
        self._finalizer = weakref.finalize(self, _finalize, self._shared_state)

    @property
    def _shared(self) -> _Shared:
        """The writer's state, renewed in a forked child (which inherits no thread).

        A child may have been forked while the parent's writer held the lock or was
        writing: it must neither wait for that thread nor write the parent's queue. It
        keeps the parent's latest snapshot (its memory is a copy) and starts clean.
        """
        shared = self._shared_state
        if shared.pid != os.getpid():
            fresh = _Shared()
            fresh.slots = [slot for slot in shared.slots if slot is not shared.writing]
            fresh.latest = shared.latest if shared.latest in fresh.slots else None
            self._shared_state = shared = fresh
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _finalize, fresh)
        return shared

    @property
    def latest(self) -> WeightsKeeper | None:
        """The most recent snapshot (the best weights in memory), ``None`` before one."""
        slot = self._shared.latest
        return None if slot is None else slot.keeper

    @property
    def writes(self) -> int:
        """Number of checkpoints written so far."""
        return self._shared.writes

    @property
    def superseded(self) -> int:
        """Number of snapshots replaced by a newer one before they were written."""
        return self._shared.superseded

    @property
    def nbytes(self) -> int:
        """Host bytes held by the snapshot buffers (one or two copies of the weights)."""
        return sum(slot.keeper.nbytes for slot in self._shared.slots)

    def submit(
        self,
        path: str | os.PathLike[str],
        state: Mapping[str, Any],
        step: int,
        *,
        extra: Mapping[str, Any] | None = None,
        fold: int | None = None,
    ) -> None:
        """Snapshot ``state`` now and have it written to ``path`` in the background.

        The file records ``step`` and ``fold`` (see :class:`~earlystop.Checkpoint`).

        Raises:
            CheckpointError: an earlier background write failed, or ``extra`` holds
                something a checkpoint cannot keep. Nothing is submitted then.
        """
        shared = self._shared
        shared.take_error()
        target = Path(path)
        frozen = _detach_extra(extra, target)
        with shared.lock:
            while shared.pending is not None and shared.pending.path != target:
                shared.lock.wait()  # another file's last best is written, never superseded
            was_pending, was_latest = shared.pending, shared.latest
            slot = self._free_slot()
            if shared.latest is slot:
                shared.latest = None  # about to be overwritten
        try:
            slot.keeper.snapshot(state, step)  # outside the lock: the writer is not reading it
        except BaseException:
            with shared.lock:  # a snapshot that failed before copying left the slot intact
                if slot.keeper.step is not None and shared.pending is None:
                    if was_pending is slot:
                        shared.pending = slot
                        shared.superseded -= 1
                    if was_latest is slot and shared.latest is None:
                        shared.latest = slot
            raise
        slot.path, slot.extra, slot.fold = target, frozen, fold
        with shared.lock:
            shared.pending = shared.latest = slot
            shared.start_thread()
            shared.lock.notify_all()

    def _free_slot(self) -> _Slot:
        """A slot the writer is not reading (called with the lock held)."""
        shared = self._shared
        if shared.pending is not None:  # not started yet: overwrite it with the newer one
            slot, shared.pending = shared.pending, None
            shared.superseded += 1
            return slot
        for slot in shared.slots:
            if slot is not shared.writing:
                return slot
        slot = _Slot()
        shared.slots.append(slot)
        return slot

    def check(self) -> None:
        """Raise the error of a failed background write, if one happened since the last."""
        self._shared.take_error()

    def flush(self) -> None:
        """Wait until the latest snapshot is on disk, then raise any write error."""
        self._shared.wait_idle()
        self._shared.take_error()

    def wait(self) -> None:
        """Wait until the latest snapshot is written (or failed), raising nothing."""
        self._shared.wait_idle()

    def close(self) -> None:
        """Flush and end the writer thread (a later :meth:`submit` starts a new one)."""
        self._shared.stop()
        self._shared.take_error()

    def forget(self) -> None:
        """Drop the in-memory best (a new fold starts); queued writes still complete."""
        shared = self._shared
        with shared.lock:
            shared.latest = None
