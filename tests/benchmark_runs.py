"""Run a benchmark script's quick mode for the smoke tests (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import earlystop

SRC = Path(earlystop.__file__).resolve().parents[1]


def run_quick(script: Path, prefix: str, *, timeout: float = 240) -> dict[str, Any]:
    """``script --quick --json --quiet --dir D``'s JSON report.

    ``D`` is a fresh folder on tmpfs where there is one (fsync is free there, which keeps
    the smoke test fast); the script must leave it empty, which is checked.
    """
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", "--quiet", "--dir", str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(workdir.iterdir()) == []  # the benchmark removes what it wrote
    workdir.rmdir()
    result: dict[str, Any] = json.loads(done.stdout)
    return result
