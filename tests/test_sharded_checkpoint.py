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
from torch.distributed.checkpoint.state_dict_saver import save

import earlystop
from earlystop import CheckpointError, EarlyStopping, export_sharded_checkpoint
from earlystop._weights.sharded import is_sharded, local_part
from earlystop._weights.sharded_checkpoint import (
    RECORD_NAME,
    check_target,
    has_checkpoint,
    load_into,
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


def _published(tmp_path: Path, step: int = 1) -> Path:
    path = tmp_path / "best"
    publish(path, _written(path, step), step, world_size=1)
    return path


def test_loading_another_evaluation_is_refused_before_touching_the_model(tmp_path: Path) -> None:
    path = _published(tmp_path, step=4)
    with pytest.raises(
        CheckpointError,
        match=r"holds evaluation 4, but the best is evaluation 6: the weights of evaluation 6 "
        r"were not published",
    ):
        load_into(path, object(), 6)  # type: ignore[arg-type]


def test_a_directory_dcp_cannot_read_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = _published(tmp_path)  # a record, but no DCP .metadata
    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    with (
        pytest.warns(UserWarning, match="load in a single process"),
        pytest.raises(CheckpointError, match=r"cannot load sharded checkpoint .*best: \w+"),
    ):
        load_into(path, model, 1)
    assert torch.equal(model.weight, before)


def test_export_names_what_is_missing(tmp_path: Path) -> None:
    path = _published(tmp_path)
    with pytest.raises(CheckpointError, match=r"cannot read the metadata of sharded checkpoint"):
        export_sharded_checkpoint(path, tmp_path / "out.safetensors")
    other = tmp_path / "other"
    written = temporary_dir(other, 1)
    with pytest.warns(UserWarning, match="single process"):
        save({"optimizer": {"lr": torch.ones(2)}}, checkpoint_id=written, no_dist=True)
    publish(other, written, 1, world_size=1)
    with pytest.raises(CheckpointError, match=r"other holds no `model` tensors"):
        export_sharded_checkpoint(other, tmp_path / "out.safetensors")


def test_a_sharded_tensor_with_several_local_shards_is_refused() -> None:
    class TwoShards:
        def local_shards(self) -> list[Any]:
            return [object(), object()]

    with pytest.raises(ValueError, match=r"a ShardedTensor with 2 local shards is not supported"):
        local_part(TwoShards())
