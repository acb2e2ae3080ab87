"""Lightning's ``ModelParallelStrategy`` (FSDP2 on a CPU mesh, 2 ranks under torchrun).

The callback keeps every rank's best local shards in memory and writes the DCP directory;
at the end of ``fit`` each rank holds the sentinel weights of the best epoch again, without
gathering. The worker is this file, run by ``torchrun``; it reports a JSON line per rank.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

LOSSES = [0.9, 0.8, 0.7, 0.75, 0.76, 0.77, 0.78, 0.79]  # best 3, stop at 5 (patience 2)


def _worker(out: Path) -> None:  # pragma: no cover - runs under torchrun
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.strategies import ModelParallelStrategy
    from torch.distributed.fsdp import fully_shard

    from earlystop.integrations.lightning import EarlyStopping

    class Sentinel(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
            )

        def configure_model(self) -> None:
            mesh = self.device_mesh["data_parallel"]
            for layer in (self.net[0], self.net[2]):
                fully_shard(layer, mesh=mesh)
            fully_shard(self.net, mesh=mesh)

        def training_step(self, batch: Any, index: int) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def validation_step(self, batch: Any, index: int) -> None:
            with torch.no_grad():  # the weights name the epoch (1-based)
                for p in self.net.parameters():
                    p.to_local().fill_(float(self.current_epoch + 1))
            self.log("val_loss", LOSSES[self.current_epoch], sync_dist=True)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.0)

    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    callback = EarlyStopping(
        monitor="val_loss", patience=2, path=out / "best", restore_best_weights=True
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
        max_epochs=len(LOSSES),
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    module = Sentinel()
    trainer.fit(module, loader, loader)
    values = sorted({float(v) for p in module.net.parameters() for v in p.to_local().flatten()})
    report = {
        "rank": trainer.global_rank,
        "stopped": callback.early_stopping.stopped_epoch,
        "best": callback.early_stopping.best_epoch,
        "restored_step": callback.restored_step,
        "restored": values,
    }
    print("REPORT " + json.dumps(report), flush=True)


def test_model_parallel_strategy_restores_the_best_shards_on_every_rank(tmp_path: Path) -> None:
    pytest.importorskip("lightning.pytorch")
    from torchrun_jobs import torchrun  # (not at the top: this file is also the worker)

    done = torchrun(__file__, str(tmp_path), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads(line) for line in re.findall(r"^REPORT (.*)$", done.stdout, re.M)]
    assert sorted(r["rank"] for r in reports) == [0, 1]
    for report in reports:
        assert (report["stopped"], report["best"], report["restored_step"]) == (5, 3, 3)
        assert report["restored"] == [3.0]
    assert json.loads((tmp_path / "best" / "earlystop.json").read_text())["evaluation"] == 3


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
    sys.stdout.flush()
    os._exit(0)  # torch 2.13's gloo can abort at interpreter exit after a DCP save
