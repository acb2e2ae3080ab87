"""``benchmarks/sharded.py --quick`` runs on 2 ranks and reports every case (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import earlystop

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "sharded.py"
SRC = Path(earlystop.__file__).resolve().parents[1]


def test_quick_run_reports_bytes_and_times_per_rank() -> None:
    shm = Path("/dev/shm")  # fsync is free on tmpfs: keeps the smoke test fast
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    workdir = Path(tempfile.mkdtemp(prefix="earlystop-sharded-smoke-", dir=base))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", "--quiet", "--dir", str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(workdir.iterdir()) == []  # the benchmark removes its checkpoint directories
    workdir.rmdir()
    report = json.loads(done.stdout)
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
