"""One decision for every rank of a ``torch.distributed`` job, with one collective per check.

:class:`DistributedSync` sits between :class:`earlystop.EarlyStopping` and its
:class:`~earlystop.Stopper`. When a process group is initialized, every call makes exactly
one ``all_reduce`` of a small float64 vector: each rank writes, in its own row, a status
flag, its monitored value and its extra metrics; the sum is the table of every rank's
numbers, identical on every rank. The decision is then computed from that table by the
deterministic core, so every rank gets the same :class:`Decision` at the same evaluation
(same stop, same reason, same best step), with no second round-trip.

A rank that sees NaN still takes part (NaN travels in its row); a rank whose value cannot
be converted still takes part (its status flag is set) and then every rank raises the
same error. Only a rank that never reaches the call (it crashed, or hangs) can block the
others, and then the process group's ``timeout`` bounds the wait.

The rules (``EarlyStopping(distributed=...)``):

- ``"mean"`` (default): the monitored value and the metrics are averaged over the ranks
  first (NaN on any rank makes the mean NaN); every rank feeds that one value to its
  stopper. Right for sharded validation, where the mean of the shards' means is the
  global metric (exactly so for equal shards).
- ``"rank0"``: rank 0's value and metrics decide for everyone.
- ``"any"``: each rank's own values are judged by their own stopper (every rank keeps a
  replica of every rank's stopper, fed from the table); training stops as soon as any
  of them says stop. Best step and best weights follow rank 0's values.
- ``"all"``: as ``"any"``, but training stops only when all of them say stop at the same
  evaluation.
- ``"local"``: no collective; each rank decides alone (independent runs in one group).

Every rank must pass the same metric names (``es(loss, model, train_loss=...)``): the
names are fingerprinted in each row, and a mismatch raises on every rank.

Lock-step: each row also carries the evaluation number the rank is at and a fingerprint of
its configuration (mode, agreement rule, patience, deltas, thresholds, criteria, smoothing,
scheduler). Ranks configured differently, or one rank a call ahead (it made an extra call,
or a call failed on one rank only and was rolled back there), raise
:class:`RanksOutOfStepError` on every rank within that call, instead of pairing different
evaluations or hanging in the next collective. A failed background write on the writing
rank travels in the status flag too: rank 0 raises its :class:`CheckpointError`, the others
a :class:`CheckpointError` naming rank 0, at the same call. What cannot be detected: a rank
that makes no call at all (configured ``"local"`` while the others are not, or crashed):
then the process group's ``timeout`` bounds the wait.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
import sys
import zlib
from collections.abc import Mapping
from typing import Any

from .._core.decision import Decision
from .._core.stopper import Stopper
from .._core.values import to_float
from .._weights.checkpoint import CheckpointError

__all__ = [
    "Agreement",
    "DistributedSync",
    "DistributedValueError",
    "RanksOutOfStepError",
    "rank_and_world",
]

#: status flag, metric-names fingerprint, configuration fingerprint, evaluation number,
#: before the value and the metrics
_HEADER = 4
_BAD_VALUE = 1.0  # status: the value or a metric cannot be converted
_FAILED = 2.0  # status: the rank failed before the collective (a background write)

_STATE_FORMAT = "earlystop.DistributedSync"
_STATE_VERSION = 1


class Agreement(enum.Enum):
    """How the ranks of a process group reach one decision (see the module docstring)."""

    MEAN = "mean"
    RANK0 = "rank0"
    ANY = "any"
    ALL = "all"
    LOCAL = "local"


class DistributedValueError(TypeError):
    """A rank gave a value or metric that is not a number, or other metric names.

    Raised on every rank at the same call, so that no rank is left waiting.
    """


class RanksOutOfStepError(RuntimeError):
    """The ranks are not in lock-step: configured differently, or at different evaluations.

    Raised on every rank at the same call (the call records nothing), so that no rank
    pairs another's evaluation with its own or waits in the next collective.
    """


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one.

    torch is not imported for this: without it in ``sys.modules`` no group can exist.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return 0, 1
    dist = torch.distributed
    if not dist.is_available() or not dist.is_initialized():
        return 0, 1
    return int(dist.get_rank()), int(dist.get_world_size())


class DistributedSync:
    """Turns one local evaluation into the decision shared by every rank.

    Args:
        rule: an :class:`Agreement` or its string value.

    Without an initialized process group (or with ``rule="local"``) :meth:`step` is
    exactly ``stopper.step(value, **metrics)``.
    """

    def __init__(self, rule: str | Agreement = "mean") -> None:
        if isinstance(rule, Agreement):
            self.rule = rule
        elif isinstance(rule, str) and rule in {a.value for a in Agreement}:
            self.rule = Agreement(rule)
        else:
            choices = ", ".join(repr(a.value) for a in Agreement)
            raise ValueError(f"`distributed` must be one of {choices}, got {rule!r}")
        self.replicas: list[Stopper] = []
        self.collectives = 0
        self.fingerprint = 0.0

    def configure(self, stopper: Stopper) -> None:
        """Fingerprint the configuration that every rank must share (at construction)."""
        text = f"{self.rule.value}|{_describe(stopper)}"
        self.fingerprint = float(zlib.crc32(text.encode()))

    @property
    def active(self) -> bool:
        """Whether calls take part in a collective (a group is initialized, rule not local)."""
        return self.rule is not Agreement.LOCAL and _initialized()

    @property
    def is_writer(self) -> bool:
        """Whether this process writes files: rank 0, or any process without a group."""
        return rank_and_world()[0] == 0

    def reset(self) -> None:
        """Forget the replicas' evaluations (a new fold)."""
        for replica in self.replicas:
            replica.reset()

    def step(
        self,
        stopper: Stopper,
        value: Any,
        metrics: Mapping[str, Any],
        *,
        failure: BaseException | None = None,
        path: Any = None,
    ) -> Decision:
        """Record one evaluation of this rank and return the decision every rank shares.

        Args:
            stopper: this rank's stopper.
            value: this rank's monitored value.
            metrics: this rank's other values.
            failure: an error this rank hit before the call (a failed background write):
                it is announced in the collective and raised on every rank after it.
            path: the checkpoint file, named by the error the other ranks raise then.

        Raises:
            DistributedValueError: on every rank, when any rank's value cannot be converted.
            RanksOutOfStepError: on every rank, when the ranks are configured differently
                or at different evaluations.
            CheckpointError: on every rank, when a rank's background write failed.
            ValueError: on every rank, when the shared value is not finite and
                ``on_nonfinite="raise"``.
        """
        if not self.active:
            if failure is not None:
                raise failure
            return stopper.step(value, **metrics)
        rank, world = rank_and_world()
        names = sorted(metrics)
        row, error = _local_row(value, metrics, names)
        row[2], row[3] = self.fingerprint, float(stopper.step_count + 1)
        if failure is not None:
            row[0] = _FAILED
        table = self._exchange(row, rank, world)
        _check_table(table, names, rank, failure, error, path)
        values = [numbers[_HEADER] for numbers in table]
        series = {
            name: [numbers[_HEADER + 1 + i] for numbers in table] for i, name in enumerate(names)
        }
        if self.rule is Agreement.MEAN:
            return stopper.step(_mean(values), **{n: _mean(s) for n, s in series.items()})
        if self.rule is Agreement.RANK0:
            return stopper.step(values[0], **{n: s[0] for n, s in series.items()})
        return self._vote(stopper, values, series, world)

    def _exchange(self, row: list[float], rank: int, world: int) -> list[list[float]]:
        import torch
        import torch.distributed as dist

        width = len(row)
        buffer = torch.zeros(world * width, dtype=torch.float64, device=_device())
        buffer[rank * width : (rank + 1) * width] = torch.tensor(row, dtype=torch.float64)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        self.collectives += 1
        flat = buffer.cpu().tolist()
        return [flat[r * width : (r + 1) * width] for r in range(world)]

    def _vote(
        self,
        stopper: Stopper,
        values: list[float],
        series: dict[str, list[float]],
        world: int,
    ) -> Decision:
        self._ensure_replicas(stopper, world)
        base = stopper.step(values[0], **{n: s[0] for n, s in series.items()})
        decisions = [base] + [
            replica.step(values[r], **{n: s[r] for n, s in series.items()})
            for r, replica in enumerate(self.replicas, start=1)
        ]
        stopping = [r for r, d in enumerate(decisions) if d.should_stop]
        group_stop = bool(stopping) if self.rule is Agreement.ANY else len(stopping) == world
        if group_stop == base.should_stop:
            return base
        if group_stop:
            first = decisions[stopping[0]]
            return dataclasses.replace(
                base,
                should_stop=True,
                reason=first.reason,
                detail=f"rank {stopping[0]}: {first.detail} (distributed='any')",
            )
        waiting = [str(r) for r in range(world) if r not in stopping]
        return dataclasses.replace(
            base,
            should_stop=False,
            reason=None,
            detail=(
                f"{base.detail}; not stopping: rank(s) {', '.join(waiting)} do not agree "
                "(distributed='all')"
            ),
        )

    def _ensure_replicas(self, stopper: Stopper, world: int) -> None:
        if len(self.replicas) > world - 1:
            raise RanksOutOfStepError(
                f"the state of distributed={self.rule.value!r} was recorded on "
                f"{len(self.replicas) + 1} ranks, but this group has {world}: resume it on "
                "as many ranks (each rank's stopper is replicated on every rank)"
            )
        while len(self.replicas) < world - 1:
            replica = copy.deepcopy(stopper)
            replica.reset()
            self.replicas.append(replica)

    # -- state -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any] | None:
        """The replicas' states (``any``/``all`` rules), ``None`` when there are none."""
        if not self.replicas:
            return None
        return {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "rule": self.rule.value,
            "replicas": [replica.state_dict() for replica in self.replicas],
        }

    def check_state(self, state: Any) -> None:
        """Validate :meth:`state_dict` output without loading it.

        Raises:
            ValueError: when the state is not one from :meth:`state_dict` of the same rule,
                or was recorded on another number of ranks than the current group has.
        """
        if state is None:
            return
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ValueError(f"state entry `distributed` must be a {_STATE_FORMAT} state")
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"state entry `distributed` has version {state.get('version')!r} "
                f"(expected {_STATE_VERSION})"
            )
        if state.get("rule") != self.rule.value:
            raise ValueError(
                f"state was recorded with distributed={state.get('rule')!r} but this one has "
                f"distributed={self.rule.value!r}"
            )
        replicas = state.get("replicas")
        if not isinstance(replicas, list):
            raise ValueError("state entry `distributed.replicas` must be a list")
        if _initialized() and len(replicas) + 1 != rank_and_world()[1]:
            raise ValueError(
                f"state entry `distributed` was recorded on {len(replicas) + 1} ranks, but "
                f"this group has {rank_and_world()[1]}: resume distributed={self.rule.value!r} "
                "on as many ranks"
            )

    def load_state_dict(self, state: Any, stopper: Stopper) -> None:
        """Restore :meth:`state_dict` (``None`` forgets the replicas).

        Raises:
            ValueError: see :meth:`check_state`.
        """
        self.check_state(state)
        if state is None:
            self.replicas = []
            return
        replicas = state["replicas"]
        self.replicas = []
        self._ensure_replicas(stopper, len(replicas) + 1)
        for replica, replica_state in zip(self.replicas, replicas, strict=True):
            replica.load_state_dict(replica_state)


def _check_table(
    table: list[list[float]],
    names: list[str],
    rank: int,
    failure: BaseException | None,
    error: Exception | None,
    path: Any,
) -> None:
    """Raise, on every rank alike, what any row says is wrong."""
    written = [r for r, numbers in enumerate(table) if numbers[0] == _FAILED]
    if written:
        if failure is not None:
            raise failure
        raise CheckpointError(
            f"rank {written[0]}'s background checkpoint write failed (the error is raised "
            "there); every rank stops at this evaluation",
            path if path is not None else "",
        )
    failed = [r for r, numbers in enumerate(table) if numbers[0] != 0.0]
    if failed:
        message = (
            f"rank(s) {', '.join(map(str, failed))} gave a monitored value or metric "
            "that is not a real number; every rank stops here"
        )
        raise DistributedValueError(message) from error
    configured = [r for r, numbers in enumerate(table) if numbers[2] != table[0][2]]
    if configured:
        raise RanksOutOfStepError(
            f"rank(s) {', '.join(map(str, configured))} are configured differently from rank "
            "0 (mode, distributed rule, patience, deltas, thresholds, criteria, smoothing or "
            "scheduler differ); every rank must build EarlyStopping with the same options"
        )
    steps = [int(numbers[3]) for numbers in table]
    if len(set(steps)) > 1:
        at = ", ".join(f"rank {r}: {s}" for r, s in enumerate(steps))
        raise RanksOutOfStepError(
            f"the ranks are at different evaluations ({at}): one made a call the others did "
            "not, or a call failed on one rank only; every rank must make every call"
        )
    if any(numbers[1] != table[0][1] for numbers in table):
        raise DistributedValueError(
            "the ranks gave different metric names (every rank must pass the same "
            f"keyword metrics); this rank gave {names}"
        )


def _describe(stopper: Stopper) -> str:
    """The configuration of ``stopper`` as text that is the same in every process."""
    options = (
        stopper.mode.value,
        stopper.patience,
        stopper.min_delta,
        stopper.min_rel_delta,
        stopper.baseline,
        stopper.start_from_epoch,
        stopper.stopping_threshold,
        stopper.divergence_threshold,
        stopper.on_nonfinite.value,
    )
    plugins = [*stopper.criteria, stopper.smoothing, stopper.scheduler]
    return f"{options!r}|{'|'.join(_plugin(p) for p in plugins)}"


def _plugin(plugin: Any) -> str:
    """A criterion or smoother by its repr, or its type where the repr has an address."""
    if plugin is None:
        return "-"
    text = repr(plugin)
    if " at 0x" in text or " object at " in text:
        kind = type(plugin)
        return f"{kind.__module__}.{kind.__qualname__}"
    return text


def _initialized() -> bool:
    torch = sys.modules.get("torch")
    return bool(
        torch is not None
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    )


def _device() -> Any:
    """CPU for gloo (and mixed backends), the current CUDA device for an NCCL-only group."""
    import torch
    import torch.distributed as dist

    backend = str(dist.get_backend()).lower()
    if "nccl" in backend and "gloo" not in backend and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _local_row(
    value: Any, metrics: Mapping[str, Any], names: list[str]
) -> tuple[list[float], Exception | None]:
    fingerprint = float(zlib.crc32("\0".join(names).encode()))
    try:
        numbers = [to_float(value)] + [to_float(metrics[name], name) for name in names]
    except Exception as exc:  # any failure to convert, e.g. a __float__ that raises
        return [_BAD_VALUE, fingerprint, 0.0, 0.0] + [math.nan] * (1 + len(names)), exc
    return [0.0, fingerprint, 0.0, 0.0, *numbers], None


def _mean(values: list[float]) -> float:
    return (
        math.fsum(values) / len(values) if all(map(math.isfinite, values)) else _nonfinite(values)
    )


def _nonfinite(values: list[float]) -> float:
    """The mean of values that are not all finite: NaN if any NaN or both infinities."""
    if any(math.isnan(v) for v in values):
        return math.nan
    infinities = {v for v in values if math.isinf(v)}
    return infinities.pop() if len(infinities) == 1 else math.nan
