"""``benchmarks/sharded.py --quick`` runs on 2 ranks and reports every case (no timing asserts)."""

from __future__ import annotations

from pathlib import Path

from benchmark_runs import run_quick

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "sharded.py"


def test_quick_run_reports_bytes_and_times_per_rank() -> None:
    report = run_quick(SCRIPT, "earlystop-sharded-smoke-")
    (case,) = report["cases"]
    assert (case["model"], case["world"]) == ("100k", 2)
    assert len(case["ranks"]) == 2
    for rank in case["ranks"]:
        assert rank["keeper_bytes"] == rank["local_bytes"] == rank["async_keeper_bytes"]
        assert 2 * rank["local_bytes"] >= rank["full_bytes"] > rank["local_bytes"]
        assert rank["allocations"] == 1
        assert set(rank["ms"]) == {"copy", "snapshot", "sync", "async"}
        assert all(value > 0 for value in rank["ms"].values())
    assert case["keeper_vs_local"] == 1.0
