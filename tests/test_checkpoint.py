"""Checkpoint files are written for real: atomically, readable, and never unpickled unsafely."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import earlystop._weights.checkpoint as checkpoint_module
from earlystop import CheckpointError, load_checkpoint, save_checkpoint
from earlystop._weights.checkpoint import TMP_SUFFIX, checkpoint_format

SRC = Path(checkpoint_module.__file__).resolve().parents[1]


def weights(level: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((3, 2), level), "b": torch.arange(2.0) + level}


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(TMP_SUFFIX))


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight  # tied, as in language models


def test_format_from_suffix() -> None:
    assert checkpoint_format("a/b.safetensors") == "safetensors"
    assert checkpoint_format("a/b.pt") == "torch"
    assert checkpoint_format("a/b.safetensors.bak") == "torch"


def test_plain_file_is_whole_and_readable_by_torch(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "best.pt"  # parent directories are created
    assert save_checkpoint(path, weights(1.0)) == path
    assert same(torch.load(path, weights_only=True), weights(1.0))
    assert same(load_checkpoint(path).state_dict, weights(1.0))
    assert load_checkpoint(path).extra == {}
    assert load_checkpoint(path).stopper is None
    assert leftovers(path.parent) == []
    save_checkpoint(path, weights(2.0))  # overwrite
    assert same(torch.load(path, weights_only=True), weights(2.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]


def test_extra_and_stopper_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "full.pt"
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.25, momentum=0.5)
    stopper = {"format": "x", "values": [1.0, "nan"]}
    save_checkpoint(
        path,
        model.state_dict(),
        extra={"optimizer": optimizer, "epoch": 7, "seen": [1, 2.5, None, "s"]},
        stopper=stopper,
    )
    read = load_checkpoint(path)
    assert same(read.state_dict, model.state_dict())
    assert read.extra["epoch"] == 7
    assert read.extra["seen"] == [1, 2.5, None, "s"]
    assert read.extra["optimizer"]["param_groups"][0]["lr"] == 0.25
    assert read.stopper == stopper


def test_safetensors_round_trip_with_tied_weights_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "m" / "best.safetensors"
    model = Tied()
    state = model.state_dict()
    state["transposed"] = torch.arange(6.0).reshape(2, 3).t()  # not contiguous
    save_checkpoint(path, state, extra={"epoch": 3}, stopper={"fold": 1, "v": [0.5, "inf"]})
    read = load_checkpoint(path)
    assert same(read.state_dict, state)
    assert read.extra == {"epoch": 3}
    assert read.stopper == {"fold": 1, "v": [0.5, "inf"]}
    fresh = Tied()
    del read.state_dict["transposed"]
    fresh.load_state_dict(read.state_dict)
    assert fresh.head.weight is fresh.embed.weight  # still tied after loading
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    assert leftovers(path.parent) == []


def test_safetensors_plain_file_has_no_extra(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, weights(0.5))
    read = load_checkpoint(path)
    assert (read.extra, read.stopper) == ({}, None)
    assert same(read.state_dict, weights(0.5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"extra": {"opt": torch.ones(1)}},
            "cannot save extra in the metadata of safetensors checkpoint {}: it must be "
            "JSON-serializable (Object of type Tensor is not JSON serializable); use a .pt path "
            "to keep tensors such as optimizer state",
        ),
        (
            {"stopper": {"best": object()}},
            "cannot save stopper['best'] in checkpoint {}: object is not a tensor or plain "
            "value, and safe loading (weights_only) could not read it back",
        ),
        (
            {"state_dict": {"w": torch.ones(1), "count": 3}},
            "cannot save 'count' in safetensors checkpoint {}: int is not a tensor (use a .pt "
            "path for state with non-tensor entries)",
        ),
    ],
    ids=["tensor-in-extra", "object-in-stopper", "non-tensor-entry"],
)
def test_safetensors_refusals_keep_the_previous_file(
    kwargs: dict[str, Any], message: str, tmp_path: Path
) -> None:
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, weights(1.0))
    before = path.read_bytes()
    state = kwargs.pop("state_dict", weights(2.0))
    with pytest.raises(CheckpointError, match=f"^{re.escape(message.format(path))}$") as info:
        save_checkpoint(path, state, **kwargs)
    assert info.value.path == path
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle Unpicklable")


def _fail_replace(src: Any, dst: Any) -> None:
    raise OSError(28, "No space left on device")


def _fail_midway_save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
    handle.write(b"PK\x03\x04 half a zip file")
    raise OSError(5, "Input/output error")


@pytest.mark.parametrize(
    ("how", "message"),
    [
        (
            "unpicklable-extra",
            r"^cannot save extra\['bad'\] in checkpoint {}: Unpicklable is not a tensor or plain "
            r"value, and safe loading \(weights_only\) could not read it back$",
        ),
        (
            "unpicklable-state",
            r"^cannot save state_dict\['bad'\] in checkpoint {}: Unpicklable is not a tensor or "
            r"plain value, and safe loading \(weights_only\) could not read it back$",
        ),
        (
            "os-replace",
            r"^could not write checkpoint {}: OSError: \[Errno 28\] No space left on device; "
            r"the previous checkpoint is intact$",
        ),
        (
            "torch-save",
            r"^could not write checkpoint {}: OSError: \[Errno 5\] Input/output error; "
            r"the previous checkpoint is intact$",
        ),
    ],
)
def test_failed_write_keeps_the_previous_file(
    how: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "best.pt"
    save_checkpoint(path, weights(1.0))
    before = path.read_bytes()
    state: dict[str, Any] = weights(2.0)
    extra: dict[str, Any] | None = None
    if how == "unpicklable-extra":
        extra = {"bad": Unpicklable()}
    elif how == "unpicklable-state":
        state["bad"] = Unpicklable()
    elif how == "os-replace":
        monkeypatch.setattr(checkpoint_module.os, "replace", _fail_replace)
    else:
        monkeypatch.setattr(torch, "save", _fail_midway_save)
    with pytest.raises(CheckpointError, match=message.format(re.escape(str(path)))) as info:
        save_checkpoint(path, state, extra=extra)
    assert info.value.path == path
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    save_checkpoint(path, weights(3.0))  # and the next write works
    assert same(torch.load(path, weights_only=True), weights(3.0))


READ_ONLY_CHECK = """
import sys
from pathlib import Path
from earlystop import CheckpointError, save_checkpoint
path = Path(sys.argv[1])
before = path.read_bytes()
try:  # plain values: the directory refuses the file before torch would be needed
    save_checkpoint(path, {"w": 0.0})
except CheckpointError as exc:
    assert exc.path == path, exc.path
    assert path.read_bytes() == before
    print(exc)
else:
    raise SystemExit("the write into a read-only directory succeeded")
"""


def test_read_only_directory() -> None:
    """A real read-only directory (as `nobody` when the tests run as root, who may write)."""
    with tempfile.TemporaryDirectory() as name:  # pytest's tmp_path is private to its user
        _check_read_only_directory(Path(name))


def _check_read_only_directory(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    path = directory / "best.pt"
    save_checkpoint(path, weights(1.0))
    command = [sys.executable, "-c", READ_ONLY_CHECK, str(path)]
    src = SRC.parent  # the folder holding the package
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:  # pragma: no cover - depends on the machine
            pytest.skip("running as root without setpriv: cannot drop privileges")
        nobody = 65534
        os.chown(directory, nobody, nobody)
        os.chown(path, nobody, nobody)
        tmp_path.chmod(0o755)
        # the checkout may live in a folder only root can read (0700): give `nobody` a
        # world-readable copy of the package, and skip if it cannot run this interpreter
        src = _world_readable_copy(SRC, tmp_path / "src")
        drop = [setpriv, f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups"]
        probe = "import earlystop, torch"  # torch: the venv's packages must be readable too
        _skip_unless_runnable([*drop, sys.executable, "-c", probe], src, tmp_path)
        command = [*drop, *command]
    directory.chmod(0o555)
    env = {**os.environ, "PYTHONPATH": str(src), "HOME": str(tmp_path)}
    try:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, check=False
        )
    finally:
        directory.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"could not write checkpoint {re.escape(str(path))}: cannot create a temporary file in "
        rf"{re.escape(str(directory))}: PermissionError: \[Errno 13\] "
        r"Permission denied: '.*'; the previous checkpoint is intact\n",
        result.stdout,
    ), result.stdout
    assert leftovers(directory) == []


def _world_readable_copy(package: Path, into: Path) -> Path:
    """Copy ``package`` under ``into`` with modes every user can read; return ``into``."""
    shutil.copytree(package, into / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    for root, _folders, files in os.walk(into):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return into


def _skip_unless_runnable(command: list[str], src: Path, home: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(src), "HOME": str(home)}
    probe = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:  # pragma: no cover - depends on where the venv lives
        pytest.skip(
            "`nobody` cannot run this interpreter or import the copied package and torch (the "
            f"venv is in a folder private to root): {probe.stderr.strip().splitlines()[-1:]}"
        )


def test_parent_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "best.pt"
    with pytest.raises(
        CheckpointError,
        match=rf"^cannot create the directory of checkpoint {re.escape(str(path))}: ",
    ):
        save_checkpoint(path, weights(1.0))


def test_stale_temporaries_are_removed_by_the_next_save(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    stale = [tmp_path / f".best.pt.abc{i}{TMP_SUFFIX}" for i in range(2)]
    other = tmp_path / f".other.pt.xyz{TMP_SUFFIX}"
    for file in [*stale, other]:
        file.write_bytes(b"half")
    save_checkpoint(path, weights(1.0))
    assert leftovers(tmp_path) == [other.name]  # another checkpoint's temporaries stay


class Exploit:
    """Unpickling this runs code: it copies this file to ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (shutil.copyfile, (__file__, str(self.marker)))


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle"])
def test_loading_never_runs_code(container: str, tmp_path: Path) -> None:
    marker, control = tmp_path / "marker", tmp_path / "control"
    path, proof = tmp_path / "evil.pt", tmp_path / "proof.pt"
    for target, flag in [(path, marker), (proof, control)]:
        payload = {"evil": Exploit(flag), "weight": torch.ones(1)}
        if container == "torch-zip":
            torch.save(payload, target)
        else:
            target.write_bytes(pickle.dumps(payload, protocol=2))
    # the control proves the file is a working exploit when unpickled unsafely
    if container == "torch-zip":
        torch.load(proof, weights_only=False)
    else:
        pickle.loads(proof.read_bytes())
    assert control.exists()
    with pytest.raises(
        CheckpointError,
        match=rf"^refusing to load checkpoint {re.escape(str(path))}: safe loading "
        r"\(weights_only\) cannot read it; it is corrupt or holds objects other than tensors "
        r"and plain values \(Unsupported global: GLOBAL shutil\.copyfile was not an allowed "
        r"global by default\)$",
    ):
        load_checkpoint(path)
    assert not marker.exists()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("suffix", "damage", "message"),
    [
        (".pt", "truncate", r"is not a readable torch file: RuntimeError: "),
        (".pt", "empty", r"is not a readable torch file: EOFError: EOFError$"),
        (
            ".pt",
            "garbage",
            r"is not a readable torch file: IndexError: pop from empty list$",
        ),
        (".safetensors", "truncate", r"is not a readable safetensors file: "),
        (".safetensors", "empty", r"is not a readable safetensors file: "),
        (".safetensors", "garbage", r"is not a readable safetensors file: "),
    ],
)
def test_corrupt_files_raise_checkpoint_error(
    suffix: str, damage: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / f"best{suffix}"
    save_checkpoint(path, weights(1.0))
    if damage == "truncate":
        _truncate(path)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "none.pt"
    with pytest.raises(
        CheckpointError,
        match=rf"^checkpoint {re.escape(str(path))} does not exist or is not a file$",
    ):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"does not exist or is not a file$"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], r"does not hold a state_dict \(a dict of names to tensors\), got list$"),
        (
            {1: torch.ones(1)},
            r"does not hold a state_dict \(a dict of names to tensors\), got dict$",
        ),
        (
            {"earlystop_checkpoint": 1, "state_dict": [], "extra": {}},
            r"has a malformed earlystop layout$",
        ),
        (
            {"earlystop_checkpoint": 1, "state_dict": {}, "extra": {}, "stopper": 5},
            r"has a malformed earlystop layout$",
        ),
    ],
    ids=["list", "int-keys", "bad-state", "bad-stopper"],
)
def test_unexpected_payloads(payload: Any, message: str, tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_map_location(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    save_checkpoint(path, weights(1.0))
    read = load_checkpoint(path, map_location=torch.device("cpu"))
    assert all(t.device.type == "cpu" for t in read.state_dict.values())


def test_file_mode_follows_the_umask_and_the_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    old = os.umask(0o027)
    try:
        save_checkpoint(path, weights(1.0))
        assert path.stat().st_mode & 0o777 == 0o640  # as torch.save would create it
        path.chmod(0o604)
        save_checkpoint(path, weights(2.0))
        assert path.stat().st_mode & 0o777 == 0o604  # replacing keeps the mode
    finally:
        os.umask(old)


def test_stale_temporaries_of_names_with_glob_characters(tmp_path: Path) -> None:
    path = tmp_path / "model[best]*.pt"
    stale = tmp_path / f".model[best]*.pt.abc{TMP_SUFFIX}"
    decoy = tmp_path / f".modelb*.pt.abc{TMP_SUFFIX}"  # would match the unescaped pattern
    stale.write_bytes(b"half")
    decoy.write_bytes(b"half")
    save_checkpoint(path, weights(1.0))
    assert leftovers(tmp_path) == [decoy.name]
    assert same(load_checkpoint(path).state_dict, weights(1.0))


def _no_proc(*args: Any, **kwargs: Any) -> Any:
    raise OSError(2, "No such file or directory")


@pytest.mark.parametrize("proc", [True, False], ids=["proc-status", "set-and-restore"])
def test_umask_is_read_without_changing_it(proc: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not proc:
        monkeypatch.setattr(checkpoint_module, "open", _no_proc, raising=False)
    old = os.umask(0o027)
    try:
        assert checkpoint_module._umask() == 0o027
        assert os.umask(0o027) == 0o027  # unchanged by the call
    finally:
        os.umask(old)
