"""Corpus v2's generator: the quick mode writes a valid corpus; configurations are stable."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from earlystop import read_curves

ROOT = Path(__file__).resolve().parents[1]


def test_quick_mode_writes_a_valid_corpus(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    out = tmp_path / "v2.csv.gz"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    script = str(ROOT / "benchmarks/curves/generate_v2.py")
    subprocess.run(
        [sys.executable, script, "--quick", "--out", str(out)],
        check=True,
        env=env,
        timeout=200,
        capture_output=True,
    )
    curves = read_curves(out)
    assert [c.run.split("/")[0] for c in curves] == [
        "digits_cnn",
        "mnist1d_cnn",
        "modular",
        "modular",
        "finetune",
        "friedman_mlp",
        "seq_gru",
        "blobs_mlp",
        "digits_dae",
        "digits_bn",
    ]
    assert curves[0].epochs == [1, 2, 3, 4]  # once per epoch
    assert curves[2].epochs == [5, 10, 15, 20]  # every 5 optimizer steps
    for curve in curves:
        assert set(curve.columns) == {
            "val_loss",
            "train_loss",
            "test_loss",
            "val_acc",
            "test_acc",
            "lr",
        }
        assert all(math.isfinite(v) for v in curve.series("val_loss"))
        if curve.run.startswith(("friedman_mlp", "digits_dae")):  # regression: no accuracy
            assert all(math.isnan(v) for v in curve.series("test_acc"))
        else:
            assert all(0.0 <= v <= 1.0 for v in curve.series("test_acc"))
    assert curves[6].epochs == [4, 8, 12, 16]
    meta = json.loads((tmp_path / "v2.json").read_text())
    assert meta["quick"] is True
    assert meta["runs"] == 10


def _generator() -> ModuleType:
    """benchmarks/curves/generate_v2.py as a module (it needs numpy)."""
    pytest.importorskip("numpy")
    sys.path.insert(0, str(ROOT / "benchmarks" / "curves"))
    try:
        import generate_v2
    finally:
        sys.path.pop(0)
    return generate_v2


def test_configurations_are_a_stable_prefix_with_seeds_together() -> None:
    generate_v2 = _generator()
    short = generate_v2.sample_configs(12, 0, with_mnist=False)
    long = generate_v2.sample_configs(30, 0, with_mnist=False)
    assert long[:12] == short
    assert [c.group for c in short] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert len({c.name for c in long}) == 30
    assert all(c.workload != "mnist_cnn" for c in long)


def test_batches_follow_each_other() -> None:
    """Configurations 0-78 (batch a, the first 237 runs) are drawn as before; batch b adds
    long budgets and two workloads, batch c three more; growing ``--runs`` keeps every
    earlier run."""
    generate_v2 = _generator()
    configs = generate_v2.sample_configs(477, 0, with_mnist=True)
    assert configs[:237] == generate_v2.sample_configs(237, 0, with_mnist=True)
    batch_a, batch_b = configs[:237], configs[237:]
    assert {c.group for c in batch_a} == set(range(79))
    assert min(c.group for c in batch_b) == generate_v2.BATCH_B_FROM == 79
    assert max(c.evals for c in batch_a) == 300
    assert max(c.evals for c in batch_b) == 1000
    assert {"friedman_mlp", "seq_gru"} <= {c.workload for c in batch_b}
    assert not {"friedman_mlp", "seq_gru"} & {c.workload for c in batch_a}
    assert len({c.name for c in configs}) == 477
    more = generate_v2.sample_configs(612, 0, with_mnist=True)
    assert more[:477] == configs
    batch_c = more[477:]
    assert min(c.group for c in batch_c) == generate_v2.BATCH_C_FROM == 159
    assert {c.workload for c in batch_c} == {"blobs_mlp", "digits_dae", "digits_bn"}
    assert not {c.workload for c in batch_c} & {c.workload for c in configs}
