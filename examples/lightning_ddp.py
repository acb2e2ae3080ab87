"""The Lightning callback under ``strategy="ddp"`` on CPU: one decision on every rank.

Run with::

    python examples/lightning_ddp.py            # earlystop's callback
    python examples/lightning_ddp.py --theirs   # Lightning's own EarlyStopping, to compare

Lightning starts 2 processes (gloo). Each rank logs a *different* scripted ``val_loss``
(rank 1's stalls early), without ``sync_dist``; the callback averages them with one
``all_reduce`` per validation (``distributed="mean"``), so both ranks stop at the same
epoch with the same reason and restore the same best weights (the buffer ``mark``
holds the epoch the weights come from).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from earlystop.integrations.lightning import EarlyStopping

LOSSES = {
    0: [1.0, 0.8, 0.7, 0.75, 0.76, 0.77, 0.78, 0.79],
    1: [1.0, 0.8, 0.9, 0.95, 0.96, 0.5, 0.6, 0.7],
}


class Scripted(pl.LightningModule):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(8, 1)
        self.register_buffer("mark", torch.zeros(()))

    def on_train_epoch_start(self) -> None:
        self.mark.fill_(self.current_epoch + 1)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", LOSSES[self.global_rank][self.current_epoch])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main() -> None:
    warnings.filterwarnings("ignore", module="lightning")  # dataloader-worker hints
    data = DataLoader(TensorDataset(torch.randn(16, 8), torch.randn(16, 1)), batch_size=8)
    theirs = "--theirs" in sys.argv
    callback: Any = (
        pl.callbacks.EarlyStopping(monitor="val_loss", patience=2)
        if theirs
        else EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    )
    trainer = pl.Trainer(
        max_epochs=8, strategy="ddp", accelerator="cpu", devices=2, callbacks=[callback],
        logger=False, enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    model = Scripted()
    trainer.fit(model, data, data)
    if theirs:
        print(
            f"rank {trainer.global_rank}: stopped at epoch {callback.stopped_epoch + 1} "
            f"(its own wait count {callback.wait_count}), weights of epoch {int(model.mark)}",
            flush=True,
        )
        return
    decision = callback.last_decision
    reason = decision.reason if decision is not None else None
    print(
        f"rank {trainer.global_rank}: stopped at epoch {callback.stopped_epoch + 1} ({reason}), "
        f"best epoch {callback.best_epoch}, restored weights of epoch {int(model.mark)}",
        flush=True,
    )


if __name__ == "__main__":
    main()
