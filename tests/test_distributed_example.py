"""``torchrun --nproc_per_node=2 examples/ddp_train.py`` runs, and both ranks agree."""

from __future__ import annotations

import re
from pathlib import Path

from torchrun_jobs import ROOT, torchrun


def test_torchrun_example_stops_every_rank_at_the_same_epoch(tmp_path: Path) -> None:
    done = torchrun(ROOT / "examples" / "ddp_train.py", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    finals = re.findall(r"^rank (\d) stopped at epoch (\d+) best epoch (\d+)$", done.stdout, re.M)
    assert sorted(rank for rank, _, _ in finals) == ["0", "1"]
    assert len({(epoch, best) for _, epoch, best in finals}) == 1
    assert done.stdout.count("restored weights identical on every rank: True") == 2
    assert (tmp_path / "best.pt").is_file()
