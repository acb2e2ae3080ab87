"""``torchrun --nproc_per_node=2 examples/fsdp_train.py`` runs, and both ranks restore the best."""

from __future__ import annotations

import re
from pathlib import Path

from torchrun_jobs import ROOT, torchrun


def test_torchrun_fsdp_example_restores_the_best_shards_on_every_rank(tmp_path: Path) -> None:
    done = torchrun(ROOT / "examples" / "fsdp_train.py", "--out", str(tmp_path))
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
