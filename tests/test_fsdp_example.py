"""``torchrun --nproc_per_node=2 examples/fsdp_train.py`` runs, and both ranks restore the best."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_torchrun_fsdp_example_restores_the_best_shards_on_every_rank(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this python")
    command = [
        torchrun,
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(ROOT / "examples" / "fsdp_train.py"),
        "--out",
        str(tmp_path),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    finals = re.findall(
        r"^rank (\d) stopped at epoch (\d+) best epoch (\d+) restored OK$", done.stdout, re.M
    )
    assert sorted(rank for rank, _, _ in finals) == ["0", "1"]
    assert len({(epoch, best) for _, epoch, best in finals}) == 1
    epoch, best = (int(n) for n in finals[0][1:])
    assert best < epoch
    assert (tmp_path / "best").is_symlink()
    assert (tmp_path / "best" / ".metadata").is_file()
    assert f'"evaluation": {best}' in (tmp_path / "best" / "earlystop.json").read_text()
