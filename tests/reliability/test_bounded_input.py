"""Bounded work and clear errors on hostile input (issue 11): zip bombs, hostile curves
files, deeply nested SPECs, huge JSON integers, non-atomic state loads, missing packages."""

from __future__ import annotations

import gzip
import importlib.util
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from earlystop import (
    CheckpointError,
    CurvesError,
    EarlyStopping,
    load_checkpoint,
    parse_policy,
    read_curves,
    save_checkpoint,
)
from earlystop._replay import curves as _curves
from earlystop._rules.policy import MAX_DEPTH

from ._figures import record

# -- zip bombs -------------------------------------------------------------------------


def _bomb(path: Path, megabytes: int) -> None:
    """A zip laid out like a torch checkpoint whose data record inflates enormously."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/version", "3\n", compress_type=zipfile.ZIP_STORED)
        with archive.open("archive/data.pkl", "w", force_zip64=True) as record_file:
            chunk = bytes(1 << 20)
            for _ in range(megabytes):
                record_file.write(chunk)


def _lying_directory(path: Path) -> None:
    """A real torch file whose central directory claims a record of 2**40 bytes."""
    save_checkpoint(path, {"w": torch.ones(4)})
    data = bytearray(path.read_bytes())
    entry = data.rfind(b"PK\x01\x02")  # the last central-directory entry
    struct.pack_into("<II", data, entry + 20, 0xFFFFFFFE, 0xFFFFFFFE)  # sizes
    path.write_bytes(bytes(data))


def test_a_zip_bomb_is_refused_from_its_central_directory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pt"
    _bomb(path, megabytes=256)
    assert path.stat().st_size < 2 << 20  # 256 MiB of data in under 2 MiB
    record("files: malicious checkpoints refused, no code run")
    with pytest.raises(
        CheckpointError,
        match=r"record 'archive/data.pkl' is compressed, and torch stores every record "
        r"uncompressed \(refused before reading any data: it may be a zip bomb\)",
    ):
        load_checkpoint(path)


def test_records_claiming_more_than_the_file_holds_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "liar.pt"
    _lying_directory(path)
    with pytest.raises(
        CheckpointError, match=r"is not a torch checkpoint: its \d+ records claim \d+ bytes"
    ):
        load_checkpoint(path)


# -- curves files ----------------------------------------------------------------------

HEADER = "run,epoch,val_loss\n"


def _write(path: Path, text: bytes) -> Path:
    path.write_bytes(text)
    return path


CURVES = [
    (
        "a cell over the CSV field limit",
        "long.csv",
        (HEADER + 'a,1,"' + "9" * (_curves.MAX_FIELD + 10) + '"\n').encode(),
        r"long.csv:2: (not a valid CSV line \(field larger than field limit|a cell is longer)",
    ),
    (
        "one endless line (as /dev/zero)",
        "zero.csv",
        bytes(_curves.MAX_LINE + 10),
        r"zero.csv:1: line longer than 1048576 characters; not a curves file",
    ),
    (
        "a NUL byte",
        "nul.csv",
        (HEADER + "a,1,\0.5\n").encode(),
        r"nul.csv:2: column 'val_loss' must be a number, got '\\x00.5'",
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "match"), [c[1:] for c in CURVES], ids=[c[0] for c in CURVES]
)
def test_hostile_curves_files_are_a_curves_error(
    tmp_path: Path, name: str, data: bytes, match: str
) -> None:
    with pytest.raises(CurvesError, match=match):
        read_curves(_write(tmp_path / name, data))


def test_damaged_gzip_names_the_file_and_the_line(tmp_path: Path) -> None:
    rows = HEADER + "".join(f"a,{epoch},{1 / epoch}\n" for epoch in range(1, 5000))
    data = bytearray(gzip.compress(rows.encode()))
    middle = len(data) // 2
    data[middle : middle + 8] = b"\xff" * 8
    path = _write(tmp_path / "curves.csv.gz", bytes(data))
    with pytest.raises(
        CurvesError, match=r"curves.csv.gz:\d+: cannot be decoded as a curves file \((zlib\.)?error"
    ):
        read_curves(path)


def test_truncated_gzip_is_a_curves_error(tmp_path: Path) -> None:
    data = gzip.compress((HEADER + "a,1,0.5\n" * 1000).encode())
    path = _write(tmp_path / "cut.csv.gz", data[: len(data) // 2])
    with pytest.raises(CurvesError, match=r"cut.csv.gz:\d+: cannot be decoded .*EOFError"):
        read_curves(path)


# -- SPECs and state ---------------------------------------------------------------------


def test_spec_nesting_has_a_depth_limit() -> None:
    deep = "any(" * 400 + "gl=2" + ")" * 400
    with pytest.raises(
        ValueError, match=rf"nests any\(\.\.\.\)/all\(\.\.\.\) more than {MAX_DEPTH}"
    ):
        parse_policy(deep)
    ok = "any(" * MAX_DEPTH + "gl=2" + ")" * MAX_DEPTH
    assert str(parse_policy(ok)) == ok


@pytest.mark.parametrize(
    "spec",
    ["up=1000000000000000", "plateau=123456789012345678", "gl=1e-300", "min_delta=1e300,gl=2"],
)
def test_policies_round_trip_through_str(spec: str) -> None:
    policy = parse_policy(spec)
    assert parse_policy(str(policy)) == policy


@pytest.mark.parametrize(
    ("where", "match"),
    [
        (("stopper", "best_value"), r"`best_value` must be a number that fits in a float"),
        (("stopper", "history", "values", 0), r"`history.values` must be a number that fits"),
    ],
)
def test_huge_json_integers_in_a_state_are_a_clear_error(
    where: tuple[Any, ...], match: str
) -> None:
    es = EarlyStopping(path=None, trace_func=None)
    es(1.0)
    state = json.loads(json.dumps(es.state_dict()))
    node = state
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = 10**400
    fresh = EarlyStopping(path=None, trace_func=None)
    with pytest.raises(ValueError, match=match):
        fresh.load_state_dict(state)
    assert fresh.stopper.step_count == 0


def test_load_state_dict_is_all_or_nothing() -> None:
    """A bad `distributed` entry is found before the stopper is replaced."""
    es = EarlyStopping(path=None, trace_func=None)
    for value in [3.0, 2.0]:
        es(value)
    other = EarlyStopping(path=None, trace_func=None)
    other(5.0)
    state = other.state_dict()
    state["distributed"] = {"format": "something else"}
    before = es.state_dict()
    with pytest.raises(ValueError, match=r"state entry `distributed` must be a earlystop"):
        es.load_state_dict(state)
    assert es.state_dict() == before


def test_a_safetensors_path_without_safetensors_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "safetensors" else real(name, *args),
    )
    with pytest.raises(
        ValueError,
        match=r"^`path` 'best.safetensors' selects the safetensors format, but the safetensors "
        r"package is not installed: pip install 'earlystop\[safetensors\]'",
    ):
        EarlyStopping(path="best.safetensors", trace_func=None)
