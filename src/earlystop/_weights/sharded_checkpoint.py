"""Sharded checkpoints: a directory written by every rank with torch.distributed.checkpoint.

Layout, for ``path="best"``::

    best -> best.eval-7-3f2a9c1e       a symbolic link, swapped atomically
    best.eval-7-3f2a9c1e/              a plain DCP checkpoint
        .metadata, __0_0.distcp, ...   written by DCP (every rank its own file)
        earlystop.json                 the completion record: the evaluation number

Every rank writes its shards into ``.best.earlystop-tmp-7`` with ``dcp.save`` (or
``dcp.async_save``). DCP's last collective returns only once every rank's files are
written (and fsynced) and the coordinator wrote ``.metadata``; only then does rank 0 write
the completion record, rename the directory to its versioned name and swap the link. A
crash at any moment (a rank killed mid-write, the coordinator killed mid-publish) leaves
``best`` pointing to the previous complete version, which stays loadable. Older versions
and stale temporary directories are removed after a publish.

The directory loads with the plain DCP API (its top-level keys are ``"model"`` and, when
extra state was given, ``"extra"``)::

    state = {"model": get_model_state_dict(model)}
    dcp.load(state, checkpoint_id="best")
    set_model_state_dict(model, state["model"])
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import CheckpointError, save_checkpoint

if TYPE_CHECKING:
    import torch

__all__ = [
    "RECORD_NAME",
    "check_target",
    "export_sharded_checkpoint",
    "has_checkpoint",
    "load_into",
    "publish",
    "read_record",
    "temporary_dir",
]

RECORD_NAME = "earlystop.json"
_FORMAT = "earlystop.ShardedCheckpoint"
_VERSION = 1


def temporary_dir(path: Path, step: int) -> Path:
    """The directory every rank writes evaluation ``step`` into (the same name on all)."""
    return path.parent / f".{path.name}.earlystop-tmp-{step}"


def check_target(path: Path) -> None:
    """Refuse a ``path`` that exists and is not the link of an earlier sharded checkpoint.

    Raises:
        CheckpointError: naming the path and what is there.
    """
    if path.is_symlink() or not path.exists():
        return
    what = "directory" if path.is_dir() else "file"
    raise CheckpointError(
        f"`path` {path} of a sharded model names a {what} that is not an earlystop sharded "
        "checkpoint (a link to its latest version): move it away or choose another path",
        path,
    )


def publish(path: Path, written: Path, step: int, world_size: int) -> Path:
    """Rank 0, after every rank finished writing ``written``: make it the one at ``path``.

    Returns:
        The versioned directory ``path`` now links to.

    Raises:
        CheckpointError: the record, rename or link failed; ``path`` still names the
            previous version.
    """
    record = {"format": _FORMAT, "version": _VERSION, "evaluation": step, "world_size": world_size}
    version = path.parent / f"{path.name}.eval-{step}-{uuid.uuid4().hex[:8]}"
    link_tmp = path.parent / f".{path.name}.earlystop-link-{uuid.uuid4().hex[:8]}"
    try:
        check_target(path)
        record_tmp = written / f".{RECORD_NAME}.tmp"
        with open(record_tmp, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(record_tmp, written / RECORD_NAME)
        _fsync_dir(written)
        os.rename(written, version)
        os.symlink(version.name, link_tmp, target_is_directory=True)
        os.replace(link_tmp, path)  # atomic: the old link or the new one, nothing between
        _fsync_dir(path.parent)
    except OSError as exc:
        if link_tmp.is_symlink():
            link_tmp.unlink()
        raise CheckpointError(
            f"cannot publish sharded checkpoint {path} of evaluation {step}: {exc}", path
        ) from exc
    _remove_stale(path, keep=version)
    return version


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some systems cannot open a directory: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale(path: Path, keep: Path) -> None:
    """Older versions and temporary directories of ``path`` (never the one it links to)."""
    prefixes = (f"{path.name}.eval-", f".{path.name}.earlystop-tmp-")
    for entry in path.parent.iterdir():
        if entry != keep and entry.name.startswith(prefixes) and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def read_record(path: Path) -> dict[str, Any]:
    """The completion record of the sharded checkpoint at ``path``.

    Raises:
        CheckpointError: there is no complete checkpoint at ``path``, or its record is not
            one of earlystop's.
    """
    record_path = path / RECORD_NAME
    try:
        text = record_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CheckpointError(
            f"sharded checkpoint {path} has no readable completion record {RECORD_NAME}: "
            f"{exc.strerror or exc}",
            path,
        ) from exc
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(
            f"sharded checkpoint {path} has a malformed completion record: {exc}", path
        ) from exc
    step = record.get("evaluation") if isinstance(record, dict) else None
    if (
        not isinstance(record, dict)
        or record.get("format") != _FORMAT
        or record.get("version") != _VERSION
        or isinstance(step, bool)
        or not isinstance(step, int)
    ):
        raise CheckpointError(
            f"sharded checkpoint {path} has a completion record that is not an earlystop "
            f"{_FORMAT} version {_VERSION}: {text[:200]!r}",
            path,
        )
    return record


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def has_checkpoint(path: Path | None) -> bool:
    """Whether ``path`` names a published sharded checkpoint (it may still be damaged)."""
    return path is not None and (path / RECORD_NAME).is_file()


def load_into(path: Path, model: torch.nn.Module, step: int) -> None:
    """Load evaluation ``step`` from the checkpoint at ``path`` into a sharded ``model``.

    Every rank calls it; DCP reshards when the world size or sharding changed.

    Raises:
        CheckpointError: when ``path`` holds another evaluation, or cannot be read.
    """
    from torch.distributed.checkpoint.state_dict_loader import load

    from .sharded import load_sharded_state, sharded_state

    record = read_record(path)
    if record["evaluation"] != step:
        raise CheckpointError(
            f"sharded checkpoint {path} holds evaluation {record['evaluation']}, but the best "
            f"is evaluation {step}: the weights of evaluation {step} were not published",
            path,
        )
    from torch.distributed.checkpoint.api import CheckpointException

    state = {"model": sharded_state(model)}
    try:
        load(state, checkpoint_id=path)
    except (Exception, CheckpointException) as exc:  # DCP's is a BaseException
        raise CheckpointError(
            f"cannot load sharded checkpoint {path}: {type(exc).__name__}: {_first_line(exc)}",
            path,
        ) from exc
    load_sharded_state(model, state["model"])


def export_sharded_checkpoint(
    directory: str | os.PathLike[str], file: str | os.PathLike[str]
) -> Path:
    """Write the full (unsharded) weights of a sharded checkpoint to one file.

    For deployment: reads every shard of ``directory`` in this process (no process group
    needed; run it on rank 0 or offline) and writes them with
    :func:`earlystop.save_checkpoint` (``.safetensors`` selects safetensors). Needs host
    memory for the full model.

    Returns:
        The path written.

    Raises:
        CheckpointError: ``directory`` holds no complete sharded checkpoint, or the file
            could not be written.
    """
    import torch
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata
    from torch.distributed.checkpoint.state_dict_loader import load

    source = Path(directory)
    read_record(source)
    reader = FileSystemReader(source)
    try:
        entries = reader.read_metadata().state_dict_metadata
    except Exception as exc:  # a missing or damaged .metadata
        raise CheckpointError(
            f"cannot read the metadata of sharded checkpoint {source}: {_first_line(exc)}", source
        ) from exc
    model = {  # full-size host tensors for every weight; DCP fills them from all shards
        key.removeprefix("model."): torch.empty(tuple(entry.size), dtype=entry.properties.dtype)
        for key, entry in entries.items()
        if key.startswith("model.") and isinstance(entry, TensorStorageMetadata)
    }
    if not model:
        raise CheckpointError(f"sharded checkpoint {source} holds no `model` tensors", source)
    with warnings.catch_warnings():  # DCP warns that no_dist means one process: it does
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        load({"model": model}, storage_reader=reader, no_dist=True)
    return save_checkpoint(file, dict(model))
