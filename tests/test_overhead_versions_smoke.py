"""``benchmarks/overhead_versions.py --quick`` runs and prints one row per model and case."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import earlystop

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(earlystop.__file__).resolve().parents[1]


def test_quick_run_compares_a_version_with_itself() -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "overhead_versions.py"),
        "--before",
        str(SRC),
        "--quick",
        "--rounds",
        "1",
        "--calls",
        "50",
        "--improvements",
        "1",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["model", "case", "before", "after", "after/before"]
    cases = ["non-improving (µs)", "improving, in memory (ms)", "improving, torch file (ms)"]
    rows = [(model, case) for model in ("16k", "100k") for case in cases]
    assert len(lines) == 1 + len(rows)
    for line, (model, case) in zip(lines[1:], rows, strict=True):
        match = re.fullmatch(
            rf"{re.escape(model)}\s+{re.escape(case)}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", line
        )
        assert match is not None, line
        assert all(float(number) > 0 for number in match.groups())
