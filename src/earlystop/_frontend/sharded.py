"""The best weights of a sharded model: kept shard by shard, saved collectively with DCP.

:class:`EarlyStopping` hands a model to :class:`ShardedBest` when
:func:`earlystop._weights.sharded.is_sharded` says so. Every rank calls it at the same
evaluations (the decision is shared), so the collectives here (DCP's own, one status
exchange) happen on improvements only, in the same order on every rank.

- In memory (``path=None`` or ``restore_best_weights=True``, always with ``background``):
  each rank copies its local shards into host buffers; no collective for DTensor models.
- ``path``: a directory written by every rank with ``dcp.save`` and published by rank 0
  (see :mod:`earlystop._weights.sharded_checkpoint`). Then one small ``all_reduce`` makes a
  failure on any rank raise the same :class:`CheckpointError` on every rank.
- ``background=True``: ``dcp.async_save`` from the host copy (the loop waits only for that
  copy) on a separate gloo group; rank 0 publishes when the write completes. One exchange
  after the start (a rank that could not start raises on every rank); the write's outcome is
  exchanged at the next improvement, :meth:`flush`, :meth:`close` or restore from disk.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._weights.checkpoint import CheckpointError
from .._weights.sharded import ShardedKeeper, sharded_state
from .._weights.sharded_checkpoint import (
    check_target,
    has_checkpoint,
    load_into,
    publish,
    read_record,
    temporary_dir,
)
from .distributed import _device, rank_and_world

if TYPE_CHECKING:
    import torch

__all__ = ["ShardedBest"]


class _AsIs:
    """A DCP stager that stages nothing: the state is already a private host copy."""

    should_synchronize_after_execute = False

    def stage(self, state_dict: Any) -> Any:
        return state_dict

    def synchronize_staging(self) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class _Pending:
    """A background save in flight."""

    future: Future[Any]
    path: Path
    step: int
    published: threading.Event
    error: BaseException | None = None


class ShardedBest:
    """Keeps and checkpoints the best weights of a sharded model (see the module doc).

    Args:
        background: write checkpoints with ``dcp.async_save``.
    """

    def __init__(self, background: bool) -> None:
        self.keeper = ShardedKeeper()
        self.background = background
        self.published = 0  # checkpoints published (rank 0 counts them)
        self._pending: _Pending | None = None
        self._group: Any = None

    def keep(
        self,
        model: torch.nn.Module,
        step: int,
        path: Path | None,
        *,
        memory: bool,
        extra: Mapping[str, Any] | None,
    ) -> None:
        """Keep evaluation ``step`` of ``model``: in memory, in ``path``, or both.

        Raises:
            CheckpointError: on every rank, when a rank could not write (this or a previous
                background save); the weights are kept in memory then.
        """
        try:
            self.settle()  # an earlier background save's failure is raised on every rank
            if path is not None:
                check_target(path)  # every rank sees the same file system: all raise alike
        except CheckpointError:
            self.keeper.snapshot(model, step)  # this best is not lost: it stays in memory
            raise
        if memory or self.background or path is None:
            self.keeper.snapshot(model, step)
        if path is None:
            return
        extra_state = _extra_state(model, extra, clone=self.background)
        if self.background:
            from torch.distributed.checkpoint.api import CheckpointException

            error = None
            try:
                self._start_async(model, step, path, extra_state)
            except (Exception, CheckpointException) as exc:  # e.g. the directory is not writable
                error = exc
            self._agree(error, path, step, model)  # no rank goes on alone after a failed start
            return
        staged = self.keeper.kept_state() if self.keeper.step == step else None
        payload: dict[str, Any] = {"model": sharded_state(model) if staged is None else staged}
        if extra_state:
            payload["extra"] = extra_state
        from torch.distributed.checkpoint.api import CheckpointException

        error = None
        try:
            self._save(payload, path, step)
        except (Exception, CheckpointException) as exc:  # DCP's is a BaseException
            error = exc
        self._agree(error, path, step, model)

    def _save(self, payload: dict[str, Any], path: Path, step: int) -> None:
        from torch.distributed.checkpoint.filesystem import FileSystemWriter
        from torch.distributed.checkpoint.state_dict_saver import save

        written = temporary_dir(path, step)
        save(payload, storage_writer=FileSystemWriter(written))
        rank, world = rank_and_world()
        if rank == 0:
            publish(path, written, step, world)
            self.published += 1

    def _start_async(
        self, model: torch.nn.Module, step: int, path: Path, extra: dict[str, Any]
    ) -> None:
        from torch.distributed.checkpoint.filesystem import FileSystemWriter
        from torch.distributed.checkpoint.state_dict_saver import AsyncSaveResponse, async_save

        staged = self.keeper.kept_state()
        stager: Any = _AsIs()
        if staged is None:  # FSDP1 or an accelerator mesh: DCP's own stager copies to host
            staged, stager = sharded_state(model), None
        payload: dict[str, Any] = {"model": staged}
        if extra:
            payload["extra"] = extra
        written = temporary_dir(path, step)
        response = async_save(
            payload,
            storage_writer=FileSystemWriter(written),
            process_group=self._save_group(),
            async_stager=stager,
        )
        future = response.upload_completion if isinstance(response, AsyncSaveResponse) else response
        pending = _Pending(future, path, step, threading.Event())
        rank, world = rank_and_world()

        def done(finished: Future[Any]) -> None:
            try:
                finished.result()
                if rank == 0:
                    publish(path, written, step, world)
                    self.published += 1
            except BaseException as exc:  # reported at the next settle, on every rank
                pending.error = exc
            finally:
                pending.published.set()

        self._pending = pending
        future.add_done_callback(done)

    def _save_group(self) -> Any:
        """A gloo group of its own for background saves (never interleaved with training's)."""
        import torch.distributed as dist

        if self._group is None:
            self._group = dist.new_group(backend="gloo")
        return self._group

    def settle(self) -> None:
        """Wait for a background save in flight; raise its failure on every rank."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        pending.published.wait()
        self._agree(pending.error, pending.path, pending.step, None)

    def _agree(
        self,
        error: BaseException | None,
        path: Path,
        step: int,
        model: torch.nn.Module | None,
    ) -> None:
        """One ``all_reduce``: if any rank failed, every rank raises the same error."""
        failed = _failed_ranks(error is not None)
        if not failed:
            return
        if model is not None and self.keeper.step != step:
            self.keeper.snapshot(model, step)  # the file is stale: keep them in memory
        ranks = ", ".join(map(str, failed))
        cause = "" if error is None else f": {type(error).__name__}: {_first_line(error)}"
        exc = CheckpointError(
            f"sharded checkpoint {path} of evaluation {step} was not written (failed on "
            f"rank(s) {ranks}){cause}; {path} still holds the previous best",
            path,
        )
        raise exc from error

    def available(self, best: int | None, path: Path | None) -> bool:
        """Whether :meth:`restore` can give evaluation ``best``."""
        if best is None:
            return False
        pending = self._pending
        if self.keeper.step == best or (pending is not None and pending.step == best):
            return True
        return has_checkpoint(path)

    def restore(self, model: torch.nn.Module, best: int | None, path: Path | None) -> None:
        """Load evaluation ``best`` into ``model``: from memory, else from ``path``.

        Raises:
            ReshardedError: the in-memory shards no longer fit the model's sharding.
            CheckpointError: ``path`` holds another evaluation or cannot be read.
            RuntimeError: no best weights are available.
        """
        if best is not None and self.keeper.step == best:
            self.keeper.restore(model)
            return
        self.settle()
        if best is not None and path is not None and has_checkpoint(path):
            load_into(path, model, best)
            return
        if best is not None and path is not None and path.is_symlink():
            read_record(path)  # a damaged checkpoint: raise what is wrong with it
        raise RuntimeError(
            "no best weights to restore: pass the model to every call, and either keep "
            "them in memory (path=None or restore_best_weights=True) or give a `path`"
        )

    def forget(self) -> None:
        """Drop the in-memory best (a new fold, or state loaded from elsewhere)."""
        self.keeper.clear()


def _extra_state(
    model: torch.nn.Module, extra: Mapping[str, Any] | None, *, clone: bool
) -> dict[str, Any]:
    """Plain state of ``extra``; an optimizer's through ``get_optimizer_state_dict``."""
    if not extra:
        return {}
    import torch
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state: dict[str, Any] = {}
    for name, value in extra.items():
        if isinstance(value, torch.optim.Optimizer):
            state[name] = get_optimizer_state_dict(model, value)
        elif callable(getattr(value, "state_dict", None)):
            state[name] = value.state_dict()
        else:
            state[name] = value
    return _clone(state) if clone else state


def _clone(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, Mapping):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clone(item) for item in value]
    return value


def _failed_ranks(failed: bool) -> list[int]:
    """The ranks that report a failure (one ``all_reduce``; this rank alone without a group)."""
    import torch
    import torch.distributed as dist

    rank, world = rank_and_world()
    if world == 1:
        return [0] if failed else []
    flags = torch.zeros(world, dtype=torch.float64, device=_device())
    flags[rank] = 1.0 if failed else 0.0
    dist.all_reduce(flags, op=dist.ReduceOp.SUM)
    return [r for r, flag in enumerate(flags.cpu().tolist()) if flag != 0.0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
