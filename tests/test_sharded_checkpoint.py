"""The sharded checkpoint directory in one process: publish, records, errors, detection.

The multi-process runs (real FSDP2/TP/HSDP/FSDP1 saves) are in tests/test_sharded.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import earlystop
from earlystop import CheckpointError, EarlyStopping, export_sharded_checkpoint
from earlystop._weights.sharded import is_sharded
from earlystop._weights.sharded_checkpoint import (
    RECORD_NAME,
    check_target,
    has_checkpoint,
    publish,
    read_record,
    temporary_dir,
)


def _written(path: Path, step: int) -> Path:
    """A temporary directory as every rank would leave it (DCP's files stand in here)."""
    written = temporary_dir(path, step)
    written.mkdir(parents=True)
    (written / "__0_0.distcp").write_bytes(b"shard of %d" % step)
    return written


def test_publish_swaps_the_link_and_removes_older_versions(tmp_path: Path) -> None:
    path = tmp_path / "best"
    first = publish(path, _written(path, 1), 1, world_size=2)
    assert path.resolve() == first.resolve()
    stale = _written(path, 7)  # left by a crashed save: removed by the next publish
    second = publish(path, _written(path, 2), 2, world_size=2)
    assert path.is_symlink()
    assert os.readlink(path) == second.name  # relative: the folder can move
    assert read_record(path) == {
        "format": "earlystop.ShardedCheckpoint",
        "version": 1,
        "evaluation": 2,
        "world_size": 2,
    }
    assert (path / "__0_0.distcp").read_bytes() == b"shard of 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", second.name]
    assert not first.exists()
    assert not stale.exists()
    assert has_checkpoint(path)


def test_a_failed_publish_keeps_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "best"
    publish(path, _written(path, 1), 1, world_size=1)
    missing = temporary_dir(path, 2)  # nothing was written there
    with pytest.raises(CheckpointError, match=r"cannot publish sharded checkpoint .*best of eval"):
        publish(path, missing, 2, world_size=1)
    assert read_record(path)["evaluation"] == 1
    assert not [p for p in tmp_path.iterdir() if "link" in p.name]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, r"has no readable completion record earlystop\.json"),
        ("{not json", r"has a malformed completion record"),
        ('{"format": "other", "version": 1, "evaluation": 3}', r"is not an earlystop"),
        ('{"format": "earlystop.ShardedCheckpoint", "version": 2, "evaluation": 3}', r"version"),
        (
            '{"format": "earlystop.ShardedCheckpoint", "version": 1, "evaluation": true}',
            r"is not an earlystop earlystop\.ShardedCheckpoint version 1",
        ),
        ("[1, 2]", r"is not an earlystop"),
    ],
)
def test_bad_records_are_named(tmp_path: Path, content: str | None, match: str) -> None:
    directory = tmp_path / "best"
    directory.mkdir()
    if content is not None:
        (directory / RECORD_NAME).write_text(content)
    with pytest.raises(CheckpointError, match=match) as info:
        read_record(directory)
    assert info.value.path == directory


@pytest.mark.parametrize("kind", ["directory", "file"])
def test_a_path_taken_by_something_else_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "best"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_text("mine")
    with pytest.raises(CheckpointError, match=rf"names a {kind} that is not an earlystop sharded"):
        check_target(path)
    check_target(tmp_path / "free")  # nothing there: fine


def test_export_refuses_a_directory_without_record(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="has no readable completion record"):
        export_sharded_checkpoint(tmp_path, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize(
    ("model", "expected"),
    [(torch.nn.Linear(2, 1), False), (torch.nn.Sequential(), False), ("not a model", False)],
)
def test_plain_models_are_not_sharded(model: Any, expected: bool) -> None:
    assert is_sharded(model) is expected


def test_plain_models_keep_the_plain_keeper() -> None:
    model = torch.nn.Linear(2, 1)
    es = EarlyStopping(path=None, trace_func=None)
    es(1.0, model)
    assert es.keeper.step == 1
    assert es.sharded.keeper.step is None
    assert json.loads(json.dumps(es.state_dict()))["stopper"]


def test_detection_imports_nothing_for_a_plain_model() -> None:
    code = (
        "import sys, torch\n"
        "from earlystop._weights.sharded import is_sharded\n"
        "print(is_sharded(torch.nn.Linear(2, 1)), 'torch.distributed.tensor' in sys.modules, "
        "'torch.distributed.fsdp' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(earlystop.__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False"]
