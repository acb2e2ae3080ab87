"""Where a checkpoint may be written, and the temporary files that make writes atomic.

A checkpoint is written to a temporary file beside its target, then renamed over it.
``os.replace`` turns whatever ``path`` names into a regular file, so the target is checked
first: a symlink is followed (the temporary goes beside the file it points to, which is
what gets replaced), a directory, a path ending in a separator, a character device, a FIFO
or a socket is refused.

Temporary names carry the writer: ``.{name}.{pid}-{thread}.{random}.earlystop-tmp``. The
clean-up after a successful write removes only temporaries that are provably stale: this
thread's own leftovers, those of threads of this process that no longer run, and those of
processes that no longer exist (plus names without a writer, from earlier versions). So
two threads or processes writing one path never delete each other's file in flight.
(Processes in another PID namespace sharing the directory cannot be told apart: give each
its own path.)
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import stat
import threading
from pathlib import Path

__all__ = [
    "TMP_SUFFIX",
    "path_problem",
    "remove_stale_temporaries",
    "resolve_target",
    "temporary_prefix",
]

TMP_SUFFIX = ".earlystop-tmp"


def path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a checkpoint cannot be written at ``path`` (``None`` when it can).

    Checks only what the name and the existing file say: a trailing separator, an existing
    directory or special file (after following symlinks).
    """
    text = os.fspath(path)
    if text.endswith(os.sep) or (os.altsep is not None and text.endswith(os.altsep)):
        return "it ends with a path separator, so it names a directory, not a file"
    try:
        mode = os.stat(text).st_mode  # follows symlinks: what would be replaced
    except (OSError, ValueError):
        return None  # nothing there yet (or unreadable, a NUL byte: the write says why)
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    )
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"it is {kind}, which a checkpoint must never replace; give a regular file path"


def resolve_target(path: Path) -> Path:
    """The file a write to ``path`` replaces: the end of a symlink chain, else ``path``."""
    if not path.is_symlink():
        return path
    return Path(os.path.realpath(path))


def temporary_prefix(target: Path) -> str:
    """The start of this writer's temporary names for ``target`` (a random part follows)."""
    return f".{target.name}.{os.getpid()}-{threading.get_native_id()}."


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the provably stale temporaries of ``target``; return what was removed."""
    removed = []
    live_threads = {thread.native_id for thread in threading.enumerate()}
    me, this_thread = os.getpid(), threading.get_native_id()
    pattern = f".{glob.escape(target.name)}.*{TMP_SUFFIX}"
    for candidate in target.parent.glob(pattern):
        writer = _writer_of(candidate.name, target.name)
        if writer is None:
            continue  # another file's temporary (``best.pt.x`` beside ``best.pt``)
        if writer:
            pid, tid = writer
            if pid == me and tid != this_thread and tid in live_threads:
                continue  # another thread of this process is writing it
            if pid != me and _process_exists(pid):
                continue  # another process is (or may still be) writing it
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def _writer_of(name: str, target_name: str) -> tuple[int, int] | tuple[()] | None:
    """``(pid, thread id)`` from one of ``target_name``'s temporaries.

    ``()`` for a name without a writer (earlier versions: ``.{name}.{random}``), ``None``
    for a name that is another file's temporary.
    """
    middle = name[len(target_name) + 2 : -len(TMP_SUFFIX)]
    parts = middle.split(".")
    if len(parts) == 1:
        return ()
    pid, _, tid = parts[0].partition("-")
    if len(parts) != 2 or not (pid.isdigit() and tid.isdigit()):
        return None
    return int(pid), int(tid)


def _process_exists(pid: int) -> bool:
    if os.name == "nt":  # signal 0 is not a probe there: never call a process dead
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError as exc:  # EPERM: it exists, owned by someone else
        return exc.errno == errno.EPERM
    return True
