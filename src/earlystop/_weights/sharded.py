"""Best weights of a sharded model: each rank keeps its own local shard in host memory.

A model is *sharded* when its parameters or buffers are ``DTensor`` (FSDP2 ``fully_shard``,
tensor parallel ``parallelize_module``, HSDP on a 2-D mesh, and their mixes) or when it
holds an FSDP1 ``FullyShardedDataParallel`` module. Its state is read and written through
the official state-dict API (``torch.distributed.checkpoint.state_dict``), which covers
every one of these wrappers, and only the local shard of each tensor is copied: host
memory per rank is its local shard, never the full model.

torch is imported lazily, where weights are.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .keeper import WeightsKeeper

if TYPE_CHECKING:
    import torch

__all__ = ["ReshardedError", "ShardedKeeper", "is_sharded", "load_sharded_state", "sharded_state"]


class ReshardedError(RuntimeError):
    """The model's sharding (placements, mesh, shapes) differs from the kept weights'."""


def is_sharded(model: Any) -> bool:
    """Whether ``model`` holds DTensor parameters/buffers or an FSDP1 module.

    Looks at the parameters and modules only: no ``state_dict()`` (which on FSDP1 would
    all-gather), no collective. Imports nothing: a model can hold a DTensor or an FSDP1
    module only once torch's modules for them are imported (importing them here would cost
    seconds at the first improvement of every plain model).
    """
    tensor_module = sys.modules.get("torch.distributed.tensor")
    fsdp_module = sys.modules.get("torch.distributed.fsdp")
    if not callable(getattr(model, "modules", None)):
        return False
    dtensor = getattr(tensor_module, "DTensor", None)
    if isinstance(dtensor, type):
        tensors = itertools.chain(model.parameters(), model.buffers())
        if any(isinstance(tensor, dtensor) for tensor in tensors):
            return True
    fsdp1 = getattr(fsdp_module, "FullyShardedDataParallel", None)
    return isinstance(fsdp1, type) and any(isinstance(m, fsdp1) for m in model.modules())


def sharded_state(model: torch.nn.Module) -> dict[str, Any]:
    """The model's sharded state dict (DTensor, ShardedTensor or plain tensor values)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return dict(get_model_state_dict(model, options=StateDictOptions(full_state_dict=False)))


def load_sharded_state(model: torch.nn.Module, state: Mapping[str, Any]) -> None:
    """Load a sharded state dict (as from :func:`sharded_state`) into ``model``, strictly."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, dict(state), options=StateDictOptions(strict=True))


def local_part(value: Any) -> Any:
    """The tensor this rank holds of ``value``: a DTensor's or ShardedTensor's local shard."""
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        return value.to_local()
    shards = getattr(value, "local_shards", None)
    if callable(shards):  # ShardedTensor (FSDP1)
        local = shards()
        if len(local) != 1:
            raise ValueError(
                f"a ShardedTensor with {len(local)} local shards is not supported (expected 1)"
            )
        return local[0].tensor
    return value


def _mesh_key(mesh: Any) -> tuple[Any, ...]:
    """Device type, shape, ranks and dimension names of a device mesh."""
    ranks = mesh.mesh  # computed on each access: read it once
    return (
        mesh.device_type,
        tuple(ranks.shape),
        tuple(ranks.flatten().tolist()),
        mesh.mesh_dim_names,
    )


def _shardings(state: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`_sharding` of every value, each distinct mesh described once."""
    meshes: dict[int, tuple[Any, tuple[Any, ...]]] = {}  # id -> (mesh kept alive, key)
    return {name: _sharding(value, meshes) for name, value in state.items()}


def _sharding(value: Any, meshes: dict[int, tuple[Any, tuple[Any, ...]]]) -> Any:
    """What must not change between snapshot and restore: global shape, placements, mesh."""
    from torch.distributed.tensor import DTensor

    if isinstance(value, DTensor):
        mesh = value.device_mesh
        known = meshes.get(id(mesh))
        if known is None:
            known = meshes[id(mesh)] = (mesh, _mesh_key(mesh))
        return ("DTensor", tuple(value.shape), tuple(repr(p) for p in value.placements), *known[1])
    metadata = getattr(value, "metadata", None)
    if callable(metadata) and callable(getattr(value, "local_shards", None)):
        shards = metadata().shards_metadata
        return (
            "ShardedTensor",
            tuple(value.shape),
            tuple((tuple(s.shard_offsets), tuple(s.shard_sizes), str(s.placement)) for s in shards),
        )
    shape = getattr(value, "shape", None)
    return ("plain", None if shape is None else tuple(shape))


def _describe(sharding: Any) -> str:
    if sharding is None:
        return "nothing (the name is new)"
    kind = sharding[0]
    if kind == "DTensor":
        _, shape, placements, device, mesh_shape, ranks, names = sharding
        dims = "" if names is None else f" dims {list(names)}"
        return (
            f"a DTensor of shape {list(shape)} placed {list(placements)} on a {device} mesh "
            f"{list(mesh_shape)}{dims} of ranks {list(ranks)}"
        )
    if kind == "ShardedTensor":
        return f"a ShardedTensor of shape {list(sharding[1])} with shards {list(sharding[2])}"
    return f"a plain tensor of shape {sharding[1]}"


class ShardedKeeper:
    """This rank's local shards of a sharded model's state, in host memory.

    :meth:`snapshot` reads the state with ``get_model_state_dict`` (no collective for
    DTensor models) and copies each local shard into host buffers allocated once (pinned
    for CUDA) by a :class:`WeightsKeeper`; :meth:`restore` copies them back into the local
    shards and loads them with ``set_model_state_dict``, after checking that every
    tensor's placements, mesh and shapes are those of the snapshot.

    Attributes:
        step: the evaluation whose weights are kept, ``None`` before a snapshot.
    """

    def __init__(self) -> None:
        self._local = WeightsKeeper()
        self._sharding: dict[str, Any] = {}
        self._templates: dict[str, Any] = {}  # DTensor name -> (mesh, placements, shape, stride)
        self._wrapped: dict[str, Any] | None = None  # kept_state(), built once per allocation

    @property
    def step(self) -> int | None:
        return self._local.step

    @property
    def has_snapshot(self) -> bool:
        return self._local.has_snapshot

    @property
    def nbytes(self) -> int:
        """Host bytes held: the local shards of this rank (tied names counted once)."""
        return self._local.nbytes

    @property
    def allocations(self) -> int:
        """How many times the host buffers were allocated (1 while the layout holds)."""
        return self._local.allocations

    def snapshot(self, model: torch.nn.Module, step: int) -> None:
        """Copy this rank's local shards of ``model`` into the host buffers."""
        from torch.distributed.tensor import DTensor

        state = sharded_state(model)
        before = (self._local.allocations, self._sharding)
        self._sharding = {}  # a failed copy must not leave a half-written "best"
        self._local.snapshot({name: local_part(v) for name, v in state.items()}, step)
        self._sharding = _shardings(state)
        if (self._local.allocations, self._sharding) != before:
            self._wrapped = None  # new buffers or a new sharding: wrap them again
        self._templates = {
            name: (value.device_mesh, tuple(value.placements), value.shape, value.stride())
            for name, value in state.items()
            if isinstance(value, DTensor)
        }

    def check_layout(self, state: Mapping[str, Any]) -> None:
        """Raise :class:`ReshardedError` naming the first tensor sharded differently."""
        now = _shardings(state)
        if now == self._sharding:
            return
        for name in sorted(set(now) | set(self._sharding)):
            if now.get(name) != self._sharding.get(name):
                raise ReshardedError(
                    f"cannot restore the kept weights of evaluation {self.step}: the model was "
                    f"re-sharded since; `{name}` was {_describe(self._sharding.get(name))} and "
                    f"is now {_describe(now.get(name))} (restore from the checkpoint directory "
                    "instead, which reshards)"
                )

    def restore(self, model: torch.nn.Module) -> None:
        """Load the kept local shards back into ``model`` in place.

        Raises:
            RuntimeError: when nothing was kept.
            ReshardedError: when the model's sharding changed; the model is untouched.
        """
        import torch

        kept = self._local.state_dict()
        state = sharded_state(model)
        self.check_layout(state)
        with torch.no_grad():
            for name, value in state.items():
                local = local_part(value)
                if isinstance(local, torch.Tensor):
                    local.copy_(kept[name])
                else:
                    state[name] = kept[name]
        load_sharded_state(model, state)

    def kept_state(self) -> dict[str, Any] | None:
        """The kept weights as a sharded state dict that shares the host buffers.

        DTensors are built around the buffers (no copy, no collective) once per allocation
        of the buffers, which later snapshots overwrite in place. ``None`` when
        the state holds ShardedTensors (FSDP1), which cannot be rebuilt that way, or lives
        on an accelerator mesh (a DTensor there would copy the host buffer back to it).
        """
        from torch.distributed.tensor import DTensor

        if any(s[0] == "ShardedTensor" for s in self._sharding.values()):
            return None
        if any(template[0].device_type != "cpu" for template in self._templates.values()):
            return None
        kept = self._local.state_dict()
        if self._wrapped is not None:
            return dict(self._wrapped)
        state: dict[str, Any] = {}
        for name, buffer in kept.items():
            template = self._templates.get(name)
            if template is None:
                state[name] = buffer
                continue
            mesh, placements, shape, stride = template
            state[name] = DTensor.from_local(
                buffer, mesh, placements, run_check=False, shape=shape, stride=stride
            )
        self._wrapped = state
        return dict(state)

    def clear(self) -> None:
        """Forget the snapshot (keeping the buffers for reuse)."""
        self._local.clear()
