"""Crash-safe checkpoint files and safe loading."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from .paths import (
    TMP_SUFFIX,
    path_problem,
    remove_stale_temporaries,
    resolve_target,
    temporary_prefix,
)

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "save_checkpoint"]

_WRAPPED_KEY = "earlystop_checkpoint"
_WRAPPED_VERSION = 1
_PLAIN_TYPES = (str, int, float, bool, type(None))
_DIGEST_KEY = "earlystop_crc32"
_EVALUATION_KEY = "earlystop_evaluation"  # {"step": k, "fold": f}: what the file holds
_EVALUATION_RECORD = ".earlystop/evaluation.json"  # the same, as a record of a torch zip
#: a torch checkpoint's records are stored uncompressed: more than this many of them, or
#: records claiming more bytes than the file has, is a crafted archive (zip bomb)
_MAX_RECORDS = 1_000_000


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read. ``path`` names the file."""

    def __init__(self, message: str, path: str | os.PathLike[str]) -> None:
        super().__init__(message)
        self.path = Path(path)


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read.

    Attributes:
        state_dict: the model weights, ready for ``model.load_state_dict``.
        extra: the extra state saved beside them (optimizer, scheduler, epoch, ...).
        stopper: the ``EarlyStopping.state_dict()`` saved with them, if any.
        step: the evaluation (1-based call number) whose weights these are, when the
            writer recorded it (earlystop does on every save), else ``None``.
        fold: the cross-validation fold of that evaluation, when recorded.
    """

    state_dict: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    stopper: dict[str, Any] | None = None
    step: int | None = None
    fold: int | None = None


def checkpoint_format(path: str | os.PathLike[str]) -> str:
    """``"safetensors"`` for a ``.safetensors`` suffix, else ``"torch"``."""
    return "safetensors" if Path(path).suffix == ".safetensors" else "torch"


def save_checkpoint(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, Any],
    *,
    extra: Mapping[str, Any] | None = None,
    stopper: Mapping[str, Any] | None = None,
    step: int | None = None,
    fold: int | None = None,
) -> Path:
    """Write a checkpoint atomically: the file at ``path`` is always whole, old or new.

    The data goes to a temporary file in the same directory, is flushed and fsynced,
    then renamed over ``path`` and the directory is fsynced. Parent directories are
    created. A symlink ``path`` is followed: the file it points to is replaced (the
    temporary goes beside it). Temporary files left by an earlier crash are removed after
    success (only provably stale ones, see :mod:`earlystop._weights.paths`). With no
    ``extra`` and no ``stopper`` a torch-format file holds exactly ``state_dict``, so
    ``model.load_state_dict(torch.load(path, weights_only=True))`` works (``step`` and
    ``fold`` go into a record of the zip archive that ``torch.load`` ignores).

    Args:
        path: the file; ``.safetensors`` selects safetensors, any other suffix torch.
        state_dict: name -> tensor (a model's ``state_dict()``).
        extra: objects with ``state_dict()`` (optimizer, scheduler) or plain values.
        stopper: an ``EarlyStopping.state_dict()`` to keep with the weights.
        step: the evaluation these weights are from, read back as ``Checkpoint.step``.
        fold: its cross-validation fold, read back as ``Checkpoint.fold``.

    Raises:
        TypeError: when ``path`` is not a path, ``state_dict``, ``extra`` or ``stopper`` is
            not a mapping, or a ``state_dict`` name is not a string.
        CheckpointError: naming the path and the cause; the previous file is intact. Also
            when ``path`` is a directory, ends with a separator, or is a special file (a
            device, a FIFO), which a checkpoint never replaces.
    """
    named = _as_path(path)
    problem = path_problem(path)
    if problem is not None:
        raise CheckpointError(f"cannot write checkpoint {named}: {problem}", named)
    target = resolve_target(named)
    evaluation = _evaluation(step, fold)
    _check_mapping("state_dict", state_dict, optional=False)
    names = [name for name in state_dict if not isinstance(name, str)]
    if names:
        raise TypeError(f"`state_dict` names must be strings, got {names[0]!r}")
    _check_mapping("extra", extra, optional=True)
    _check_mapping("stopper", stopper, optional=True)
    _check_loadable(dict(state_dict), "state_dict", target)
    if stopper is not None:
        _check_loadable(dict(stopper), "stopper", target)
    extra_state = {name: _plain_state(name, value, target) for name, value in (extra or {}).items()}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot create the directory of checkpoint {target}: {exc}", target
        ) from exc
    if checkpoint_format(named) == "safetensors":

        def write(tmp: Path) -> None:
            _write_safetensors(tmp, target, state_dict, extra_state, stopper, evaluation)

        _write_atomic(target, write)
    else:
        payload: Any = dict(state_dict)
        if extra_state or stopper is not None:
            payload = {
                _WRAPPED_KEY: _WRAPPED_VERSION,
                "state_dict": payload,
                "extra": extra_state,
                "stopper": None if stopper is None else dict(stopper),
            }
        _write_atomic(target, lambda tmp: _write_torch(tmp, payload, evaluation))
    remove_stale_temporaries(target)
    return named


def _evaluation(step: Any, fold: Any) -> dict[str, int] | None:
    for name, value in (("step", step), ("fold", fold)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"`{name}` must be an int or None, got {value!r}")
    if step is None and fold is None:
        return None
    return {"step": step, "fold": fold}


def _as_path(path: Any) -> Path:
    if isinstance(path, (str, os.PathLike)) and not isinstance(path, bytes):
        return Path(path)
    raise TypeError(f"`path` must be a str or os.PathLike, got {type(path).__name__}")


def _check_mapping(name: str, value: Any, *, optional: bool) -> None:
    if (value is None and optional) or isinstance(value, Mapping):
        return
    expected = "a mapping or None" if optional else "a mapping of names to tensors"
    raise TypeError(f"`{name}` must be {expected}, got {type(value).__name__}")


def _plain_state(name: str, value: Any, target: Path) -> Any:
    state = value.state_dict() if hasattr(value, "state_dict") else value
    _check_loadable(state, f"extra[{name!r}]", target)
    return state


def _check_loadable(value: Any, where: str, target: Path) -> None:
    """Refuse what ``weights_only`` loading could not read back."""
    import torch

    if isinstance(value, torch.Tensor) and value.is_meta:
        raise CheckpointError(
            f"cannot save {where} in checkpoint {target}: it is a tensor on the meta device, "
            "which holds no data",
            target,
        )
    if type(value) in _PLAIN_TYPES:  # not subclasses: numpy.float64 pickles as numpy
        return
    if isinstance(value, (torch.Tensor, torch.dtype, torch.device, torch.Size)):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(
                    f"cannot save {where} in checkpoint {target}: key {key!r} is not a str or int",
                    target,
                )
            _check_loadable(item, f"{where}[{key!r}]", target)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_loadable(item, f"{where}[{index}]", target)
        return
    raise CheckpointError(
        f"cannot save {where} in checkpoint {target}: {type(value).__name__} is not a tensor "
        "or plain value, and safe loading (weights_only) could not read it back",
        target,
    )


def _write_torch(tmp: Path, payload: Any, evaluation: dict[str, int] | None) -> None:
    import torch

    with open(tmp, "w+b") as handle:
        writer = _ErrorKeepingWriter(handle)
        try:
            torch.save(payload, cast("IO[bytes]", writer))  # it needs write() and flush()
        except RuntimeError as exc:
            # torch's zip writer turns a failed write (ENOSPC, EIO, and KeyboardInterrupt
            # or SystemExit raised inside it) into "unexpected pos": raise the real cause.
            if writer.error is not None:
                raise writer.error from exc
            raise
        if evaluation is not None:
            handle.flush()
            handle.seek(0)
            with zipfile.ZipFile(handle, "a", compression=zipfile.ZIP_STORED) as archive:
                prefix = archive.namelist()[0].split("/", 1)[0]
                record = json.dumps(evaluation, sort_keys=True)
                archive.writestr(f"{prefix}/{_EVALUATION_RECORD}", record)
        handle.flush()
        os.fsync(handle.fileno())


class _ErrorKeepingWriter:
    """A file for ``torch.save`` that remembers the exception a write raised."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.error: BaseException | None = None

    def write(self, data: Any) -> int:
        try:
            written: int = self._handle.write(data)
        except BaseException as exc:  # OSError, and KeyboardInterrupt/SystemExit as they are
            self.error = exc
            raise
        return written

    def flush(self) -> None:
        self._handle.flush()


def _write_safetensors(
    tmp: Path,
    target: Path,
    state_dict: Mapping[str, Any],
    extra: Mapping[str, Any],
    stopper: Mapping[str, Any] | None,
    evaluation: dict[str, int] | None,
) -> None:
    from safetensors.torch import save_file

    tensors = _unshare(state_dict, target)
    metadata = {_WRAPPED_KEY: str(_WRAPPED_VERSION)}
    if evaluation is not None:
        metadata[_EVALUATION_KEY] = json.dumps(evaluation, sort_keys=True)
    if extra:
        metadata["extra"] = _json_or_error(extra, "extra", target)
    if stopper is not None:
        metadata["stopper"] = _json_or_error(stopper, "stopper", target)
    metadata[_DIGEST_KEY] = _digest(tensors, metadata)
    save_file(tensors, str(tmp), metadata=metadata)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unshare(state_dict: Mapping[str, Any], target: Path) -> dict[str, Any]:
    """safetensors refuses shared or non-contiguous storage: give each name its own."""
    import torch

    seen: set[tuple[int, int]] = set()
    tensors: dict[str, Any] = {}
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"cannot save {name!r} in safetensors checkpoint {target}: "
                f"{type(value).__name__} is not a tensor (use a .pt path for state with "
                "non-tensor entries)",
                target,
            )
        key = (value.untyped_storage().data_ptr(), value.device.index or 0)
        tensor = value.detach()
        if key in seen or not tensor.is_contiguous():
            tensor = tensor.contiguous().clone()
        seen.add(key)
        tensors[name] = tensor
    return tensors


def _json_or_error(value: Any, where: str, target: Path) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"cannot save {where} in the metadata of safetensors checkpoint {target}: it must "
            f"be JSON-serializable ({exc}); use a .pt path to keep tensors such as optimizer state",
            target,
        ) from exc


def _write_atomic(target: Path, write: Any) -> None:
    try:
        fd, name = tempfile.mkstemp(
            prefix=temporary_prefix(target), suffix=TMP_SUFFIX, dir=target.parent
        )
        os.close(fd)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"could not write checkpoint {target}: cannot create a temporary file in "
            f"{target.parent}: {type(exc).__name__}: {exc}; the previous checkpoint is intact",
            target,
        ) from exc
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode(target))  # mkstemp makes 0600; keep what torch.save gives
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, CheckpointError):
            message = str(exc) if str(target) in str(exc) else f"could not write {target}: {exc}"
            raise CheckpointError(message, target) from exc.__cause__
        if isinstance(exc, Exception):
            raise CheckpointError(
                f"could not write checkpoint {target}: {type(exc).__name__}: {exc}; "
                "the previous checkpoint is intact",
                target,
            ) from exc
        raise
    _fsync_directory(target.parent)


def _file_mode(target: Path) -> int:
    """The mode of the file being replaced, else that of a new file under the umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    # Linux: read it, no race with other threads
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(umask)
    return umask


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform or file system
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> Checkpoint:
    """Read a checkpoint without ever unpickling objects.

    torch files are read with ``weights_only=True``; ``.safetensors`` files with
    safetensors. Both a plain ``state_dict`` file (the seed's format) and earlystop's
    file with extra state are accepted. Checksums are verified first: the CRC-32 of every
    record of a torch zip file, and the CRC-32 that earlystop writes into the metadata of
    a safetensors file (files from other writers have none), so a flipped bit is an error,
    not a different weight.

    Raises:
        TypeError: when ``path`` is not a str or os.PathLike.
        CheckpointError: naming the path when it is missing, unreadable, corrupt, or holds
            anything but tensors and plain values.
    """
    source = _as_path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist or is not a file", source)
    if checkpoint_format(source) == "safetensors":
        return _load_safetensors(source, map_location)
    return _load_torch(source, map_location)


def recorded_evaluation(path: str | os.PathLike[str]) -> tuple[int | None, int | None] | None:
    """``(step, fold)`` that the checkpoint at ``path`` records, reading only its index.

    ``None`` when there is no readable file; ``(None, None)`` for a file without a record.
    """
    source = Path(path)
    try:
        if checkpoint_format(source) == "safetensors":
            from safetensors import safe_open

            with safe_open(str(source), framework="pt") as handle:
                text = (handle.metadata() or {}).get(_EVALUATION_KEY)
        else:
            with zipfile.ZipFile(source) as archive:
                names = [n for n in archive.namelist() if n.endswith(f"/{_EVALUATION_RECORD}")]
                text = archive.read(names[0]).decode("utf-8", "replace") if names else None
        return _step_and_fold(text, source)
    except Exception:  # missing, unreadable, not ours: nothing recorded to trust
        return None


def _load_torch(source: Path, map_location: Any) -> Checkpoint:
    import pickle

    import torch

    try:
        # One open file for the checksum and the load: a save replacing the file meanwhile
        # (atomic rename, new inode) cannot make us verify one file and load another.
        with open(source, "rb") as handle:
            evaluation = _verify_zip(source, handle)
            handle.seek(0)
            with warnings.catch_warnings():  # raw pickles of any protocol are refused below
                warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
                payload = torch.load(handle, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load checkpoint {source}: safe loading (weights_only) cannot read it; "
            f"it is corrupt or holds objects other than tensors and plain values "
            f"({_unpickler_cause(exc)})",
            source,
        ) from exc
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {source} is not a readable torch file: {type(exc).__name__}: "
            f"{_first_line(exc)}",
            source,
        ) from exc
    if isinstance(payload, dict) and payload.get(_WRAPPED_KEY) == _WRAPPED_VERSION:
        state, extra, stopper = (
            payload.get("state_dict"),
            payload.get("extra"),
            payload.get("stopper"),
        )
        if not isinstance(state, dict) or not isinstance(extra, dict):
            raise CheckpointError(f"checkpoint {source} has a malformed earlystop layout", source)
        if stopper is not None and not isinstance(stopper, dict):
            raise CheckpointError(f"checkpoint {source} has a malformed earlystop layout", source)
        return Checkpoint(state, extra, stopper, *_step_and_fold(evaluation, source))
    if not isinstance(payload, dict) or not all(isinstance(k, str) for k in payload):
        raise CheckpointError(
            f"checkpoint {source} does not hold a state_dict (a dict of names to tensors), "
            f"got {type(payload).__name__}",
            source,
        )
    return Checkpoint(payload, {}, None, *_step_and_fold(evaluation, source))


def _step_and_fold(evaluation: Any, source: Path) -> tuple[int | None, int | None]:
    """The evaluation record a writer left in the file (``(None, None)`` without one)."""
    if evaluation is None:
        return None, None
    try:
        record = json.loads(evaluation)
    except ValueError:
        record = None
    fields = [record.get(name) if isinstance(record, dict) else "" for name in ("step", "fold")]
    if not all(value is None or type(value) is int for value in fields):
        raise CheckpointError(
            f"checkpoint {source} has a malformed evaluation record: {evaluation[:80]!r}", source
        )
    step, fold = fields
    return cast("int | None", step), cast("int | None", fold)


def _load_safetensors(source: Path, map_location: Any) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    device = str(map_location) if map_location is not None else "cpu"
    try:
        # One open file for the tensors and the metadata (with its checksum): a save
        # replacing the file meanwhile cannot pair one file's weights with another's state.
        with safe_open(str(source), framework="pt", device=device) as handle:
            metadata = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        extra = json.loads(metadata["extra"]) if "extra" in metadata else {}
        stopper = json.loads(metadata["stopper"]) if "stopper" in metadata else None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {source} is not a readable safetensors file: {_first_line(exc)}", source
        ) from exc
    if (_WRAPPED_KEY in metadata and _DIGEST_KEY not in metadata) or _damaged_keys(metadata):
        raise CheckpointError(
            f"checkpoint {source} is corrupt: its earlystop metadata is damaged, so its "
            "checksum cannot be verified",
            source,
        )
    if _DIGEST_KEY in metadata and metadata[_DIGEST_KEY] != _digest(state, metadata):
        raise CheckpointError(
            f"checkpoint {source} is corrupt: its contents do not match the checksum "
            "written with them",
            source,
        )
    if not isinstance(extra, dict) or not (stopper is None or isinstance(stopper, dict)):
        raise CheckpointError(
            f"checkpoint {source} has malformed earlystop metadata: `extra` must be a JSON "
            f"object and `stopper` a JSON object or absent, got {type(extra).__name__} and "
            f"{type(stopper).__name__}",
            source,
        )
    step, fold = _step_and_fold(metadata.get(_EVALUATION_KEY), source)
    return Checkpoint(dict(state), extra, stopper, step, fold)


def _digest(tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> str:
    """CRC-32 of the names, dtypes, shapes and bytes of ``tensors`` and of the metadata.

    safetensors has no checksum of its own: without this, a flipped bit in a weight loads
    silently as a different weight.
    """
    import torch

    others = {key: value for key, value in metadata.items() if key != _DIGEST_KEY}
    crc = zlib.crc32(json.dumps(others, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous().reshape(-1)
        crc = zlib.crc32(f"{name}|{tensor.dtype}|{tuple(tensors[name].shape)}".encode(), crc)
        crc = zlib.crc32(tensor.view(torch.uint8).numpy(), crc)
    return f"{crc:08x}"


def _damaged_keys(metadata: Mapping[str, str]) -> bool:
    """Whether a metadata key is one of earlystop's with a few bytes flipped.

    Without this, damage to the checksum's own key would make a damaged earlystop file look
    like one from another writer (which carries no checksum) and load unverified.
    """
    ours = (_WRAPPED_KEY, _DIGEST_KEY, _EVALUATION_KEY)
    return any(
        key not in ours
        and len(key) == len(known)
        and sum(a != b for a, b in zip(key, known, strict=True)) <= 3
        for key in metadata
        for known in ours
    )


def _verify_zip(source: Path, handle: IO[bytes]) -> str | None:
    """Check the CRC-32 of every record of a torch zip file (torch itself does not).

    The central directory is checked first, so a crafted archive is refused before any
    data is read: torch stores every record uncompressed, so a compressed record, or
    records claiming more bytes than the file holds (a zip bomb), cannot be torch's.

    Returns:
        The text of earlystop's evaluation record, ``None`` when the file has none.
    """
    try:
        if not zipfile.is_zipfile(handle):
            return None  # torch's legacy format: no checksums to check
        size = os.fstat(handle.fileno()).st_size
        with zipfile.ZipFile(handle) as archive:
            infos = archive.infolist()
            _check_directory(source, infos, size)
            bad = archive.testzip()
            for info in infos:
                if info.external_attr & 0x10:  # a directory: torch would read it as empty
                    bad = bad or info.filename
            record = next((i for i in infos if i.filename.endswith(f"/{_EVALUATION_RECORD}")), None)
            text = None if record is None else archive.read(record).decode("utf-8", "replace")
    except CheckpointError:
        raise
    except Exception as exc:  # any failure to read the archive (zipfile raises many kinds)
        raise CheckpointError(
            f"checkpoint {source} is not a readable torch file: {_first_line(exc)}", source
        ) from exc
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {source} is corrupt: the checksum of its record {bad!r} does not match",
            source,
        )
    return text


def _check_directory(source: Path, infos: list[zipfile.ZipInfo], size: int) -> None:
    """Refuse, from the central directory alone, an archive torch cannot have written."""
    compressed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
    claimed = sum(info.file_size for info in infos)
    if compressed or any(i.compress_size != i.file_size for i in infos):
        name = (
            compressed[0]
            if compressed
            else next(i.filename for i in infos if i.compress_size != i.file_size)
        )
        raise CheckpointError(
            f"checkpoint {source} is not a torch checkpoint: its record {name!r} is "
            "compressed, and torch stores every record uncompressed (refused before "
            "reading any data: it may be a zip bomb)",
            source,
        )
    if len(infos) > _MAX_RECORDS or claimed > size:
        raise CheckpointError(
            f"checkpoint {source} is not a torch checkpoint: its {len(infos)} records claim "
            f"{claimed} bytes but the file has {size} (refused before reading any data: it "
            "may be a zip bomb)",
            source,
        )


def _unpickler_cause(exc: BaseException) -> str:
    """The reason torch's safe unpickler gives, without its advice to unpickle unsafely."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        cause = text.split(marker, 1)[1].strip()
        return cause.split(". ", 1)[0].splitlines()[0].rstrip(".")
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
