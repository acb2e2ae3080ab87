"""The keeper's accelerator path, checked for its logic on CPU.

``PINNED_DEVICE_TYPES``, ``_host_buffer``, ``_synchronize`` and ``torch._foreach_copy_`` are
replaced by recorders, so the test sees what a CUDA run would do: pinned buffers allocated
once, every copy non-blocking, then exactly one synchronisation per device after the copies.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from earlystop import WeightsKeeper
from earlystop._weights import keeper as keeper_module


class Recorder:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, accelerated: frozenset[str]) -> None:
        self.events: list[tuple[str, Any]] = []
        real_copy = torch._foreach_copy_

        def host_buffer(value: torch.Tensor, pinned: bool) -> torch.Tensor:
            self.events.append(("alloc", pinned))
            return torch.empty(value.shape, dtype=value.dtype)  # pin_memory needs a GPU

        def synchronize(device: torch.device) -> None:
            self.events.append(("sync", device))

        def foreach_copy(dst: list[torch.Tensor], src: list[torch.Tensor], **kw: Any) -> None:
            self.events.append(("copy", (len(dst), kw.get("non_blocking", False))))
            if all(t.device.type != "meta" for t in src):  # meta stands in for a 2nd GPU
                real_copy(dst, src, **kw)

        monkeypatch.setattr(keeper_module, "PINNED_DEVICE_TYPES", accelerated)
        monkeypatch.setattr(keeper_module, "_host_buffer", host_buffer)
        monkeypatch.setattr(keeper_module, "_synchronize", synchronize)
        monkeypatch.setattr(torch, "_foreach_copy_", foreach_copy)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def model() -> torch.nn.Module:
    net = torch.nn.Sequential(
        torch.nn.Embedding(6, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 6)
    )
    net[2].weight = net[0].weight  # tied: both names share one storage
    return net


def nonshared_tensors(state: dict[str, Any]) -> int:
    return len({(v.data_ptr(), v.shape) for v in state.values() if isinstance(v, torch.Tensor)})


@pytest.mark.parametrize(
    ("accelerated", "pinned", "syncs"),
    [
        (frozenset({"cpu"}), True, 1),  # what a CUDA model does
        (frozenset(), False, 0),  # a CPU model: plain blocking copies, no synchronisation
    ],
)
def test_one_grouped_copy_then_one_sync_per_snapshot(
    monkeypatch: pytest.MonkeyPatch, accelerated: frozenset[str], pinned: bool, syncs: int
) -> None:
    rec = Recorder(monkeypatch, accelerated)
    net, keeper = model(), WeightsKeeper()
    buffers = nonshared_tensors(net.state_dict())
    assert buffers == len(net.state_dict()) - 1
    for step in (1, 2, 3):
        keeper.snapshot(net.state_dict(), step)
    assert rec.events[:buffers] == [("alloc", pinned)] * buffers  # once; tied names share
    assert keeper.allocations == 1
    assert rec.kinds()[buffers:] == (["copy"] + ["sync"] * syncs) * 3  # sync after copies
    assert [e[1] for e in rec.events if e[0] == "copy"] == [(buffers, pinned)] * 3


def test_one_sync_per_device_after_all_devices_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch, frozenset({"cpu", "meta"}))
    state = {
        "a": torch.ones(3),
        "b": torch.empty(2, device="meta"),
        "c": torch.full((2, 2), 2.0),
        "d": torch.empty(5, device="meta"),
    }
    keeper = WeightsKeeper()
    keeper.snapshot(state, step=1)
    assert rec.kinds() == ["alloc"] * 4 + ["copy", "copy", "sync", "sync"]
    assert [e[1] for e in rec.events if e[0] == "copy"] == [(2, True), (2, True)]
    synced = [e[1].type for e in rec.events if e[0] == "sync"]
    assert sorted(synced) == ["cpu", "meta"]
    assert torch.equal(keeper.state_dict()["c"], state["c"])


def test_snapshot_restores_values_and_keeps_tied_weights_tied() -> None:
    net, keeper = model(), WeightsKeeper()
    keeper.snapshot(net.state_dict(), step=4)
    expected = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    keeper.restore(net)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in expected.items())
    assert net[0].weight is net[2].weight
    unique = {(v.data_ptr(), v.numel() * v.element_size()) for v in net.state_dict().values()}
    assert keeper.nbytes == sum(size for _, size in unique)


def untie(net: torch.nn.Module) -> None:
    net[2].weight = torch.nn.Parameter(net[0].weight.detach().clone() + 5)


def move_to_double(net: torch.nn.Module) -> None:
    net.double()


def replace_layer(net: torch.nn.Module) -> None:
    net[1] = torch.nn.LayerNorm(4, elementwise_affine=False)


def identity(net: torch.nn.Module) -> None:
    del net


@pytest.mark.parametrize(
    ("change", "allocations"),
    [(identity, 1), (untie, 2), (move_to_double, 2), (replace_layer, 2)],
)
def test_buffers_are_reallocated_only_when_the_layout_changes(
    change: Any, allocations: int
) -> None:
    net, keeper = model(), WeightsKeeper()
    keeper.snapshot(net.state_dict(), step=1)
    change(net)
    keeper.snapshot(net.state_dict(), step=2)
    assert keeper.allocations == allocations
    kept = keeper.state_dict()
    assert kept.keys() == net.state_dict().keys()
    assert all(torch.equal(kept[k], v) for k, v in net.state_dict().items())


def test_without_foreach_copy_each_tensor_is_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch, "_foreach_copy_")
    net, keeper = model(), WeightsKeeper()
    keeper.snapshot(net.state_dict(), step=1)
    assert all(torch.equal(keeper.state_dict()[k], v) for k, v in net.state_dict().items())


def test_a_failed_copy_leaves_no_half_written_best(monkeypatch: pytest.MonkeyPatch) -> None:
    net, keeper = model(), WeightsKeeper()
    keeper.snapshot(net.state_dict(), step=1)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("copy failed")

    monkeypatch.setattr(torch, "_foreach_copy_", fail)
    with pytest.raises(RuntimeError, match="copy failed"):
        keeper.snapshot(net.state_dict(), step=2)
    assert not keeper.has_snapshot
    with pytest.raises(RuntimeError, match="no best weights have been kept yet"):
        keeper.state_dict()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_real_gpu_buffers_are_pinned_and_hold_the_values() -> None:
    net, keeper = model().cuda(), WeightsKeeper()
    for step in (1, 2):
        with torch.no_grad():
            net[1].weight.fill_(float(step))
        keeper.snapshot(net.state_dict(), step)
    kept = keeper.state_dict()
    assert all(t.device.type == "cpu" and t.is_pinned() for t in kept.values())
    assert all(torch.equal(kept[k], v.cpu()) for k, v in net.state_dict().items())
    assert keeper.allocations == 1
