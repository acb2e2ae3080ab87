"""The documented benchmark commands run end to end on a small synthetic corpus."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from earlystop import CurveRecorder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from replay_table import POLICIES  # noqa: E402


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Two datasets, four seeds each: noisy curves with a minimum in the middle."""
    path = tmp_path / "corpus.csv"
    with CurveRecorder(path, columns=["train_loss", "test_loss", "test_acc"]) as recorder:
        for dataset in ("a", "b"):
            for seed in range(4):
                for epoch in range(1, 41):
                    wobble = 0.05 * math.sin(3.0 * epoch + seed)
                    val = 1.0 + (epoch - 15 - 3 * seed) ** 2 / 400 + wobble
                    recorder.record(
                        f"{dataset}/mlp/s{seed}",
                        epoch,
                        val,
                        train_loss=1.0 / epoch,
                        test_loss=val + 0.01,
                        test_acc=0.9 - (val - 1.0) / 10,
                    )
    return path


def run_script(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}"}
    done = subprocess.run(
        [sys.executable, *args], env=env, timeout=240, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_replay_table(corpus: Path, tmp_path: Path) -> None:
    figure = tmp_path / "pareto.png"
    out = run_script(
        str(ROOT / "benchmarks/replay_table.py"),
        "--curves",
        str(corpus),
        "--jobs",
        "1",
        "--plot",
        str(figure),
    )
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert len(rows) == len(POLICIES) == 60  # every policy of the table, auto included
    assert any(row.startswith("| `auto (") for row in rows)
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_auto_policy(corpus: Path, tmp_path: Path) -> None:
    figure = tmp_path / "frontier.png"
    out = run_script(
        str(ROOT / "benchmarks/auto_policy.py"),
        "--corpus",
        f"one={corpus}",
        "--corpus",
        f"two={corpus}",
        "--quick",
        "--draws",
        "50",
        "--cache",
        str(tmp_path / "cache"),
        "--plot",
        str(figure),
    )
    assert out.startswith("11 candidates, 16 runs (one, two).")
    assert "| one odd half | 4 | one even half | `" in out
    assert "| all of two | 8 | all of one | `" in out
    assert "| one:a | 4 | the other workloads | `" in out
    assert "## The choice on all 16 runs: `" in out
    assert "| `oracle` | " in out
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert list((tmp_path / "cache").glob("*.json"))  # the stops were cached
    again = run_script(
        str(ROOT / "benchmarks/auto_policy.py"),
        "--corpus",
        f"one={corpus}",
        "--quick",
        "--draws",
        "50",
        "--cache",
        str(tmp_path / "cache"),
    )
    assert "| one:b | 4 | the other workloads | `" in again
