"""The documented benchmark commands run end to end on a small synthetic corpus."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from earlystop import CurveRecorder, Outcome

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
    assert "| all runs (AUTO_SPEC) | 16 | all runs | `" in out
    assert "| one odd half | 4 | one even half | `" in out
    assert "| all of two | 8 | all of one | `" in out
    assert "| one:a | 4 | the other workloads | `" in out
    assert "## The choice on all 16 runs: `" in out
    assert "## The per-corpus rule's choice on all 16 runs: `" in out
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


def test_cached_stops_match_across_jobs(corpus: Path, tmp_path: Path) -> None:
    from replay_common import replay_stops

    specs = ["patience=3", "patience=8", "up=2", "rising=6,confidence=0.99"]
    plain = replay_stops(str(corpus), specs, jobs=1)
    cached = replay_stops(str(corpus), specs, jobs=2, cache=str(tmp_path / "c"))
    again = replay_stops(str(corpus), specs, jobs=2, cache=str(tmp_path / "c"))
    assert cached == plain == again
    assert all(isinstance(plain[s], list) and len(plain[s]) == 8 for s in specs)
    assert len({str(plain[s]) for s in specs}) == len(specs)  # the rules differ here


def test_auto_policy_scores_batch_b_held_out(tmp_path: Path) -> None:
    """Runs named like corpus v2's (``.../g<configuration>/s<seed>``) from configuration 79
    on are batch b: a part of their own, chosen on everything else."""
    path = tmp_path / "v2.csv"
    with CurveRecorder(path, columns=["train_loss", "test_loss", "test_acc"]) as recorder:
        for group in (76, 77, 78, 79, 80, 81):
            for seed in range(2):
                for epoch in range(1, 41):
                    wobble = 0.05 * math.sin(2.0 * epoch + seed + group)
                    val = 1.0 + (epoch - 12 - group % 5) ** 2 / 300 + wobble
                    recorder.record(
                        f"w{group % 2}/x/g{group}/s{1000 * group + seed}",
                        epoch,
                        val,
                        train_loss=1.0 / epoch,
                        test_loss=val + 0.02 * wobble,
                        test_acc=0.9 - (val - 1.0) / 10,
                    )
    out = run_script(
        str(ROOT / "benchmarks/auto_policy.py"),
        "--corpus",
        f"v2={path}",
        "--quick",
        "--draws",
        "20",
        "--cache",
        "",
    )
    assert "| v2 batch b | 6 | v1 and v2 batch a | `" in out


def _outcome(stop: int, rel: float) -> Outcome:
    return Outcome("r", 10, stop, 1, 1, rel, rel, None)


@pytest.mark.parametrize(
    ("cheap_on_b", "pooled", "per_corpus"),
    [
        # worse than patience=20 on batch b alone, better pooled: only the pooled rule takes it
        (0.05, "cheap", "patience=20"),
        # no worse anywhere: both rules take the cheaper policy
        (0.0, "cheap", "cheap"),
    ],
)
def test_per_corpus_rule_asks_every_corpus(cheap_on_b: float, pooled: str, per_corpus: str) -> None:
    import auto_policy

    runs = [
        auto_policy.Run("v1", "v1:x", "c0", 0),
        auto_policy.Run("v1", "v1:x", "c1", 1),
        auto_policy.Run("v2", "v2:y", "c2", 0, "b"),
        auto_policy.Run("v2", "v2:y", "c3", 1, "b"),
    ]
    outcomes = {
        "patience=20": [_outcome(8, 0.3), _outcome(8, 0.3), _outcome(8, 0.0), _outcome(8, 0.0)],
        "cheap": [
            _outcome(5, 0.0),
            _outcome(5, 0.0),
            _outcome(5, cheap_on_b),
            _outcome(5, 0.0),
        ],
    }
    table = auto_policy.Table(outcomes, runs)
    everything = np.ones(4, dtype=bool)
    assert auto_policy.choose(table, everything, ["cheap"]) == pooled
    assert auto_policy.choose_per_corpus(table, everything, ["cheap"]) == per_corpus
