"""Run a script under ``torchrun`` on loopback for the multi-process example tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gloo_ranks import free_port

ROOT = Path(__file__).resolve().parents[1]


def torchrun(
    script: str | Path, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc_per_node=2 script args`` with this checkout's ``src`` first.

    Skips the calling test when torchrun is not installed beside this Python; the run is
    bounded by ``timeout`` seconds, so a hung rank fails the test instead of blocking CI.
    """
    runner = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if runner is None:
        pytest.skip("torchrun is not installed beside this python")
    command = [
        runner,
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(script),
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
