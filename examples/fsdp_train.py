"""Early stopping for a sharded (FSDP2) model in a multi-process job (CPU, gloo).

Run with::

    torchrun --nproc_per_node=2 examples/fsdp_train.py

Every rank builds the same MLP and shards it with ``fully_shard`` on a CPU device mesh, so
each rank holds half of every weight. Each rank trains on its shard of a small noisy
regression problem and validates on its shard of the validation set; one ``all_reduce``
per call averages the validation losses, so every rank stops at the same epoch. On every
improvement each rank keeps its own local shards in host memory (never the full model)
and all ranks write ``--out/best``, a torch.distributed.checkpoint directory published
atomically by rank 0. At the end every rank restores its best shards in place, checks
them against the directory and prints ``rank R stopped at epoch E best epoch B restored OK``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import get_model_state_dict
from torch.distributed.checkpoint.state_dict_loader import load
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from earlystop import EarlyStopping


def make_data(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A small noisy regression problem that an MLP overfits within a few dozen epochs."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, size=(320, 4)).astype(np.float32)
    y = (np.sin(x[:, :1] * 1.5) + 0.5 * x[:, 1:2] + rng.normal(0.0, 0.5, (320, 1))).astype(
        np.float32
    )
    tensors = torch.from_numpy(x), torch.from_numpy(y)
    return tensors[0][:64], tensors[1][:64], tensors[0][64:], tensors[1][64:]


def local_shards(model: torch.nn.Module) -> list[torch.Tensor]:
    """This rank's part of every weight."""
    return [p.to_local().detach().clone() for p in model.parameters()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("fsdp-out"))
    parser.add_argument("--background", action="store_true", help="dcp.async_save")
    args = parser.parse_args()

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial weights on every rank
    torch.set_num_threads(1)

    x_train, y_train, x_val, y_val = make_data()
    shard = slice(rank, None, world)
    x_train, y_train, x_val, y_val = x_train[shard], y_train[shard], x_val[shard], y_val[shard]

    model = torch.nn.Sequential(
        torch.nn.Linear(4, 128), torch.nn.Tanh(), torch.nn.Linear(128, 128), torch.nn.Tanh(),
        torch.nn.Linear(128, 1),
    )  # fmt: skip
    mesh = init_device_mesh("cpu", (world,))
    for layer in (model[0], model[2], model[4]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)  # FSDP2: every parameter is a DTensor sharded on dim 0
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    early_stopping = EarlyStopping(
        patience=args.patience,
        path=args.out / "best",  # a DCP directory for a sharded model
        restore_best_weights=True,  # keep the best local shards in host memory too
        background=args.background,
        trace_func=None,
    )

    best_shards: list[torch.Tensor] = []
    for _ in range(args.epochs):
        model.train()
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x_train), y_train).backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = torch.nn.functional.mse_loss(model(x_val), y_val).item()
        decision = early_stopping(val_loss, model)  # restores the best shards when it stops
        if decision.improved:
            best_shards = local_shards(model)
        if decision.should_stop:
            break
    early_stopping.close()  # every rank: waits for a background save

    in_memory = all(map(torch.equal, local_shards(model), best_shards))
    state = {"model": get_model_state_dict(model)}
    load(state, checkpoint_id=args.out / "best")  # the plain DCP API reads the directory
    on_disk = all(
        torch.equal(value.to_local(), mine)
        for value, mine in zip(state["model"].values(), local_shards(model), strict=True)
    )
    restored = "restored OK" if in_memory and on_disk else "restored WRONG"
    stopped = early_stopping.stopped_epoch or early_stopping.stopper.step_count
    line = (
        f"rank {rank} stopped at epoch {stopped} best epoch {early_stopping.best_epoch} {restored}"
    )
    for turn in range(world):  # one rank after the other, so that lines do not interleave
        if turn == rank:
            print(
                f"rank {rank}: keeper holds {early_stopping.sharded.keeper.nbytes} bytes",
                flush=True,
            )
            print(line, flush=True)
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
    sys.stdout.flush()
    os._exit(0)  # torch 2.13's gloo can abort at interpreter exit after a DCP save
