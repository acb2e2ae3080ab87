"""Best weights in host memory: buffers allocated once, reused on every improvement."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["WeightsKeeper"]

logger = logging.getLogger("earlystop")

#: Device types whose tensors are copied into pinned host buffers, without blocking,
#: then synchronised once per device. Other devices (cpu, mps, ...) copy synchronously.
PINNED_DEVICE_TYPES = frozenset({"cuda"})


def _layout(state: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What must match for the buffers to be reusable: names, shapes, dtypes, devices."""
    import torch

    return tuple(
        (name, (v.shape, v.dtype, v.device) if isinstance(v, torch.Tensor) else type(v))
        for name, v in state.items()
    )


def _host_buffer(value: torch.Tensor, pinned: bool) -> torch.Tensor:
    """An uninitialised host tensor shaped like ``value`` (page-locked when ``pinned``)."""
    import torch

    return torch.empty(value.shape, dtype=value.dtype, device="cpu", pin_memory=pinned)


def _synchronize(device: torch.device) -> None:
    """Wait for the copies queued on ``device``'s current stream."""
    import torch

    torch.cuda.current_stream(device).synchronize()


def _copy_each(
    buffers: list[torch.Tensor], sources: list[torch.Tensor], *, non_blocking: bool
) -> None:
    """One ``copy_`` per tensor, for torch builds without ``torch._foreach_copy_``."""
    for buffer, source in zip(buffers, sources, strict=True):
        buffer.copy_(source, non_blocking=non_blocking)


def _plain_copy(value: Any) -> Any:
    """A copy of a non-strided tensor (sparse: no storage to copy into) or a plain value."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    return copy.deepcopy(value)


class _Group:
    """Tensors of one source device, copied with one grouped call."""

    __slots__ = ("buffers", "device", "names", "pinned")

    def __init__(self, device: torch.device, pinned: bool) -> None:
        self.device = device
        self.pinned = pinned
        self.names: list[str] = []
        self.buffers: list[torch.Tensor] = []


class WeightsKeeper:
    """A copy of a model's ``state_dict`` in host memory.

    The first :meth:`snapshot` allocates one host buffer per tensor (pinned when the
    tensor is on a CUDA device); later snapshots copy into the same buffers, so memory
    stays at one copy of the state and nothing is reallocated. Tensors that share
    storage in the model (tied weights) share one buffer. The copies of each source
    device are issued as one grouped call (``torch._foreach_copy_``); copies from CUDA
    are non-blocking, followed by a single synchronisation per device.

    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> keeper = WeightsKeeper()
    >>> keeper.snapshot(model.state_dict(), step=3)
    >>> with torch.no_grad():
    ...     _ = model.weight.fill_(0.0)
    >>> keeper.restore(model)
    >>> bool(model.weight.abs().sum() > 0), keeper.step, keeper.allocations
    (True, 3, 1)
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Any] = {}
        self._layout: tuple[tuple[str, Any], ...] | None = None
        self._aliases: dict[str, str] = {}
        self._groups: list[_Group] = []
        self._plain: list[str] = []
        self.step: int | None = None
        self.allocations = 0

    @property
    def has_snapshot(self) -> bool:
        return self.step is not None

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensor buffers (a buffer shared by tied names counts once)."""
        return sum(b.numel() * b.element_size() for g in self._groups for b in g.buffers)

    def snapshot(self, state: Mapping[str, Any], step: int) -> None:
        """Copy ``state`` (a ``state_dict``) into the host buffers."""
        import torch

        layout = _layout(state)
        if layout != self._layout or not self._still_tied(state):
            self._allocate(state, layout)
        self.step = None  # a failed copy must not leave a half-written "best"
        copy_all = getattr(torch, "_foreach_copy_", None) or _copy_each
        with torch.no_grad():
            for group in self._groups:
                sources = [state[name] for name in group.names]
                copy_all(group.buffers, sources, non_blocking=group.pinned)
            for name in self._plain:
                self._buffers[name] = _plain_copy(state[name])
            for group in self._groups:  # one synchronisation per device, after all copies
                if group.pinned:
                    _synchronize(group.device)
        self.step = step

    def _still_tied(self, state: Mapping[str, Any]) -> bool:
        """Names that shared storage at allocation must still share it (else reallocate)."""
        return all(
            state[alias].data_ptr() == state[owner].data_ptr()
            for alias, owner in self._aliases.items()
        )

    def _allocate(self, state: Mapping[str, Any], layout: tuple[tuple[str, Any], ...]) -> None:
        import torch

        if self._layout is not None:
            logger.debug("earlystop: model layout changed, reallocating best-weight buffers")
        buffers: dict[str, Any] = {}
        aliases: dict[str, str] = {}
        owners: dict[tuple[Any, ...], str] = {}
        groups: dict[torch.device, _Group] = {}
        plain: list[str] = []
        for name, value in state.items():
            if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
                buffers[name] = None  # plain values and sparse tensors: copied whole
                plain.append(name)
                continue
            key = (
                value.device,
                value.untyped_storage().data_ptr(),
                value.storage_offset(),
                tuple(value.shape),
                tuple(value.stride()),
                value.dtype,
            )
            if value.numel() and key in owners:
                aliases[name] = owners[key]
                buffers[name] = buffers[owners[key]]
                continue
            owners[key] = name
            pinned = value.device.type in PINNED_DEVICE_TYPES
            group = groups.get(value.device)
            if group is None:
                group = groups[value.device] = _Group(value.device, pinned)
            buffer = _host_buffer(value, pinned)
            group.names.append(name)
            group.buffers.append(buffer)
            buffers[name] = buffer
        self._buffers, self._aliases, self._layout = buffers, aliases, layout
        self._groups, self._plain = list(groups.values()), plain
        self.allocations += 1

    def state_dict(self) -> dict[str, Any]:
        """The kept weights (the buffers themselves: copy them before changing them)."""
        if not self.has_snapshot:
            raise RuntimeError("no best weights have been kept yet")
        return dict(self._buffers)

    def restore(self, model: torch.nn.Module) -> None:
        """Load the kept weights into ``model`` in place (strict)."""
        model.load_state_dict(self.state_dict(), strict=True)

    def clear(self) -> None:
        """Forget the snapshot (keeping buffers for reuse)."""
        self.step = None
