"""All or nothing for one :class:`~earlystop.EarlyStopping` call.

A call goes: validate -> decide -> say -> keep the weights (the commit point) -> act on the
decision. Before it changes anything the call records what it may change (a
:func:`~earlystop._core.rollback.mark` of the stopper and of the other ranks' replicas, the
last decision, the kept step); if anything up to and including the commit raises,
:func:`roll_back` puts it back and the exception goes on unchanged (``KeyboardInterrupt`` and
``SystemExit`` too). The record is a handful of attribute reads, so a call that succeeds
pays next to nothing for it.

What cannot be put back is the content of a memory buffer that was being overwritten when
the exception came: the weights of the previous best are then gone, and the keeper says so
(:attr:`Undo.lost`), so that :meth:`~earlystop.EarlyStopping.restore` raises a clear error
instead of loading another evaluation's weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._core.rollback import StopperMark, undo
from .._weights.checkpoint import recorded_evaluation
from .._weights.lost import LostWeightsWarning

if TYPE_CHECKING:
    from .early_stopping import EarlyStopping

__all__ = ["Undo", "roll_back"]

#: (stopper mark, last decision, keeper step), taken by the call itself before it starts
Undo = tuple[StopperMark, Any, "int | None"]


def roll_back(
    es: EarlyStopping, saved: Undo, replicas: Sequence[StopperMark], error: BaseException
) -> None:
    """Put back everything the failed call changed; say so if best weights were lost.

    Args:
        es: the front end whose call failed.
        saved: what the call recorded before it started.
        replicas: the marks of the other ranks' replicas (``any``/``all`` rules).
        error: the exception, re-raised by the caller unchanged.
    """
    stopper, last, keeper_step = saved
    undo(stopper)
    count = len(replicas)
    del es.distributed.replicas[count:]  # replicas created during the call go again
    for replica in replicas:
        undo(replica)
    es._last = last
    if es.keeper.step != keeper_step:
        es.keeper.clear()  # (being) overwritten with the failed evaluation's weights
    best = es.stopper.kept_step
    if best is None or es._kept_step != best or es._lost is not None:
        return  # nothing was kept for the best, or its loss is already known
    if es._kept_in_memory() is None and not _on_disk(es, best):
        es._lost = (
            f"keeping the weights of evaluation {len(es.stopper.history) + 1} was "
            f"interrupted by {type(error).__name__}, which overwrote those of evaluation "
            f"{best} held in memory before they reached the disk"
        )
        message = f"earlystop: the best weights (evaluation {best}) are lost: {es._lost}"
        try:
            warnings.warn(message, LostWeightsWarning, stacklevel=3)
        except Warning:  # warnings turned into errors: the call's own error goes first
            add_note = getattr(error, "add_note", None)  # Python >= 3.11
            if add_note is not None:
                add_note(message)


def _on_disk(es: EarlyStopping, best: int) -> bool:
    """Whether the checkpoint file holds evaluation ``best`` (after pending writes)."""
    path = es._file
    if path is None:
        return False
    writer = es._writer
    if writer is not None:
        writer.wait()  # the latest snapshot may still be on its way
    recorded = recorded_evaluation(path)
    return recorded is not None and recorded[0] in (best, None)
