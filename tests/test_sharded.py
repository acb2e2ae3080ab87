"""Sharded models (FSDP2, tensor parallel, HSDP, FSDP1, and DDP beside them) in real processes.

Workers run this file (``python tests/test_sharded.py SCENARIO RANK WORLD PORT OUT``), gloo
on 127.0.0.1. Every weight of the sentinel model is set to the evaluation number before each
call, so the weights after ``restore`` name the evaluation restored, on every rank. Workers
write their report to a JSON file, meet at a barrier and leave with ``os._exit`` (tearing
gloo down after a DCP save can abort in torch 2.13); the tests judge the reports.
Every wait is bounded: the group's timeout inside, ``communicate(timeout=)`` outside.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gloo_ranks import free_port, join_gloo, run_rank

HERE = Path(__file__).resolve()
SRC = HERE.parents[1] / "src"
# Monitored values: best at evaluation 3, stop at 5 with patience 2.
VALUES = [1.0, 0.9, 0.8, 0.85, 0.86, 0.87, 0.88]
BEST, STOPPED = 3, 5


# -- the worker ------------------------------------------------------------------------------


def _model() -> Any:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4), torch.nn.Linear(4, 3)
    )
    model.register_buffer("scale", torch.ones(3))
    return model


def _locals(model: Any) -> list[Any]:
    """This rank's own tensors of the model (local shards, flat FSDP1 shards, buffers)."""
    from torch.distributed.tensor import DTensor

    tensors = [*model.parameters(), *model.buffers()]
    return [t.to_local() if isinstance(t, DTensor) else t for t in tensors]


def _set(model: Any, value: float) -> None:
    import torch

    with torch.no_grad():
        for tensor in _locals(model):
            tensor.fill_(value)


def _seen(model: Any) -> list[float]:
    """The distinct values of this rank's part of the state the model exposes."""
    from earlystop._weights.sharded import local_part, sharded_state

    values: set[float] = set()
    for value in sharded_state(model).values():
        values.update(float(v) for v in local_part(value).reshape(-1).tolist())
    return sorted(values)


def _shard(kind: str, model: Any, world: int) -> Any:
    import torch
    from torch.distributed.device_mesh import init_device_mesh

    if kind == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    if kind == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(model, device_id=torch.device("cpu"))
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    tp_plan = {"0": ColwiseParallel(), "2": RowwiseParallel()}
    if kind == "fsdp2":
        mesh = init_device_mesh("cpu", (world,))
        for layer in (model[0], model[2], model[3]):
            fully_shard(layer, mesh=mesh)
        return fully_shard(model, mesh=mesh)
    if kind == "tp":
        return parallelize_module(model, init_device_mesh("cpu", (world,)), tp_plan)
    if kind == "hsdp":
        mesh = init_device_mesh("cpu", (2, world // 2), mesh_dim_names=("replicate", "shard"))
        fully_shard(model[0], mesh=mesh)
        return fully_shard(model, mesh=mesh)
    if kind == "tp+fsdp":
        mesh = init_device_mesh("cpu", (2, world // 2), mesh_dim_names=("dp", "tp"))
        parallelize_module(model, mesh["tp"], tp_plan)
        return fully_shard(model, mesh=mesh["dp"])
    raise ValueError(kind)


def _train(kind: str, world: int, out: Path, **options: Any) -> dict[str, Any]:
    """Run the sentinel loop on a fresh model; report what every rank saw."""
    from earlystop import EarlyStopping
    from earlystop._weights.sharded import is_sharded

    model = _shard(kind, _model(), world)
    module = model.module if kind == "ddp" else model
    es = EarlyStopping(2, trace_func=None, **options)
    per_call = []  # collectives of this thread during each call
    for epoch, value in enumerate(VALUES, start=1):
        _set(model, float(epoch))
        before = len(COLLECTIVES)
        stop = es(value, module).should_stop
        per_call.append(len(COLLECTIVES) - before)
        if stop:
            break
    es.close()
    _set(model, -1.0)
    es.restore(module)
    local_bytes = sum(t.numel() * t.element_size() for t in _locals(model))
    report = {
        "sharded": is_sharded(module),
        "stopped": es.stopped_epoch,
        "best": es.best_epoch,
        "restored": _seen(module),
        "keeper_bytes": es.sharded.keeper.nbytes if is_sharded(module) else es.keeper.nbytes,
        "local_bytes": local_bytes,
        "collectives": es.distributed.collectives,
        "per_call": per_call,
        "state": es.state_dict(),
    }
    path = options.get("path")
    if path is not None and is_sharded(module):  # restart: a new stopper from the state
        resumed = EarlyStopping(2, path=path, trace_func=None)
        resumed.load_state_dict(json.loads(json.dumps(es.state_dict())))
        _set(model, -1.0)
        resumed.restore(module)
        report["restored_from_disk"] = _seen(module)
    return report


def _error(call: Any) -> str:
    try:
        call()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def _scenario_two(rank: int, world: int, out: Path) -> dict[str, Any]:
    import torch.distributed.checkpoint as dcp

    from earlystop import EarlyStopping

    report: dict[str, Any] = {}
    report["fsdp2"] = _train("fsdp2", world, out, path=out / "best", restore_best_weights=True)
    report["fsdp2_memory"] = _train("fsdp2", world, out, path=None)
    report["fsdp2_background"] = _train(
        "fsdp2", world, out, path=out / "bg", background=True, restore_best_weights=True
    )
    report["fsdp2_disk_only"] = _train("fsdp2", world, out, path=out / "disk")
    report["tp"] = _train("tp", world, out, path=out / "tp", restore_best_weights=True)
    report["fsdp1"] = _train("fsdp1", world, out, path=out / "fsdp1", restore_best_weights=True)
    report["ddp"] = _train("ddp", world, out, path=None)
    # kept in memory for an FSDP2 model, restored into a TP-sharded one: a clear error
    fsdp = _shard("fsdp2", _model(), world)
    _set(fsdp, 1.0)
    es = EarlyStopping(2, path=None, trace_func=None)
    es(1.0, fsdp)
    report["resharded"] = _error(lambda: es.sharded.keeper.restore(_shard("tp", _model(), world)))
    nothing = EarlyStopping(2, path=out / "never_written", trace_func=None)
    report["nothing_kept"] = _error(lambda: nothing.restore(fsdp))
    # a directory where the checkpoint directory's link should be: refused when it is
    # there at construction (a plain ValueError), and at the write when it appears later
    import torch.distributed as dist

    (out / f"taken-{rank}").mkdir(exist_ok=True)
    report["taken_at_construction"] = _error(
        lambda: EarlyStopping(2, path=out / f"taken-{rank}", trace_func=None)
    )
    es = EarlyStopping(2, path=out / "taken", trace_func=None)
    dist.barrier()  # every rank built it before the directory appears
    if rank == 0:
        (out / "taken").mkdir()
    dist.barrier()
    report["taken"] = _error(lambda: es(1.0, fsdp))
    report["taken_decided"] = es.best_epoch
    _set(fsdp, -1.0)
    es.restore(fsdp)  # the weights of that evaluation were kept in memory instead
    report["taken_restored"] = _seen(fsdp)
    # extra state (the optimizer) travels in the directory under "extra"
    import torch

    optimizer = torch.optim.Adam(fsdp.parameters(), lr=0.1)
    fsdp(torch.ones(2, 5)).sum().backward()
    optimizer.step()
    es = EarlyStopping(2, path=out / "with_optimizer", trace_func=None)
    es(1.0, fsdp, extra_state={"optimizer": optimizer, "epoch": 1})
    loaded = {"extra": {"epoch": 0}}
    dcp.load(loaded, checkpoint_id=out / "with_optimizer")
    report["extra_epoch"] = loaded["extra"]["epoch"]
    # a write that fails on rank 1 only: every rank raises, the best stays in memory
    writer = dcp.FileSystemWriter
    original = writer.write_data

    def failing(self: Any, plan: Any, planner: Any) -> Any:
        if rank == 1:
            raise OSError(28, "No space left on device")
        return original(self, plan, planner)

    writer.write_data = failing  # type: ignore[method-assign]
    es = EarlyStopping(2, path=out / "full_disk", trace_func=None)
    _set(fsdp, 7.0)
    report["disk_full"] = _error(lambda: es(1.0, fsdp))
    writer.write_data = original  # type: ignore[method-assign]
    _set(fsdp, -1.0)
    es.restore(fsdp)
    report["disk_full_restored"] = _seen(fsdp)
    report["disk_full_published"] = (out / "full_disk").exists()
    return report


def _scenario_four(rank: int, world: int, out: Path) -> dict[str, Any]:
    from earlystop import EarlyStopping

    report: dict[str, Any] = {}
    report["hsdp"] = _train("hsdp", world, out, path=out / "hsdp", restore_best_weights=True)
    report["tp+fsdp"] = _train("tp+fsdp", world, out, path=out / "mix", restore_best_weights=True)
    # restart on 4 ranks from what 2 ranks wrote (DCP reshards)
    earlier = Path(os.environ["EARLIER"])
    state = json.loads((earlier / "result-0.json").read_text())["fsdp2"]["state"]
    model = _shard("fsdp2", _model(), world)
    es = EarlyStopping(2, path=earlier / "best", trace_func=None)
    es.load_state_dict(state)
    _set(model, -1.0)
    es.restore(model)
    report["restart"] = {"best": es.best_epoch, "restored": _seen(model)}
    return report


def _scenario_kill(rank: int, world: int, out: Path) -> dict[str, Any]:
    """Rank 1 is killed (SIGKILL) while it writes the second best."""
    import torch.distributed.checkpoint as dcp

    from earlystop import EarlyStopping

    if rank == 1:
        original = dcp.FileSystemWriter.write_data
        calls = []

        def write_data(self: Any, plan: Any, planner: Any) -> Any:
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, plan, planner)

        dcp.FileSystemWriter.write_data = write_data  # type: ignore[method-assign]
    model = _shard("fsdp2", _model(), world)
    es = EarlyStopping(2, path=out / "best", trace_func=None)
    for epoch, value in enumerate(VALUES, start=1):
        _set(model, float(epoch))
        es(value, model)
    return {}


COLLECTIVES: list[str] = []  # the collectives the main thread made, in order


def _count_collectives() -> None:
    """Wrap torch.distributed's collectives to count those of the main thread."""
    import threading

    import torch.distributed as dist
    import torch.distributed.distributed_c10d as c10d

    main = threading.main_thread()
    names = [
        "all_reduce", "all_gather", "all_gather_object", "all_gather_into_tensor", "barrier",
        "broadcast", "broadcast_object_list", "gather", "gather_object", "reduce_scatter_tensor",
        "scatter", "scatter_object_list", "all_to_all_single",
    ]  # fmt: skip
    for name in names:
        original = getattr(c10d, name)

        def counted(*args: Any, _name: str = name, _f: Any = original, **kwargs: Any) -> Any:
            if threading.current_thread() is main:
                COLLECTIVES.append(_name)
            return _f(*args, **kwargs)

        setattr(dist, name, counted)
        setattr(c10d, name, counted)


SCENARIOS = {"two": _scenario_two, "four": _scenario_four, "kill": _scenario_kill}


def worker(scenario: str, rank: int, world: int, port: int, out: Path) -> None:
    import torch
    import torch.distributed as dist

    import earlystop  # noqa: F401

    torch.set_num_threads(1)
    join_gloo(rank, world, port, 30)
    _count_collectives()
    result = SCENARIOS[scenario](rank, world, out)
    (out / f"result-{rank}.json").write_text(json.dumps(result))
    dist.barrier()


# -- the tests ---------------------------------------------------------------------------------


def _launch(
    scenario: str, world: int, out: Path, budget_s: float, env: dict[str, str] | None = None
) -> list[tuple[int, str]]:
    full_env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **(env or {})}
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE), scenario, str(rank), str(world), str(port), str(out)],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]
    start = time.monotonic()
    results = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=max(1.0, budget_s - (time.monotonic() - start)))
            results.append((proc.returncode, err))
    except subprocess.TimeoutExpired:
        pytest.fail(f"a rank of {scenario!r} hung for more than {budget_s} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _plain_load(state: dict[str, Any], directory: Path) -> None:
    """``dcp.load`` in this process, without a process group (it warns that it assumes so)."""
    import torch.distributed.checkpoint as dcp

    with pytest.warns(UserWarning, match="assuming the intent is to load in a single process"):
        dcp.load(state, checkpoint_id=directory)


def _reports(out: Path, runs: list[tuple[int, str]]) -> list[dict[str, Any]]:
    for rank, (code, err) in enumerate(runs):
        assert code == 0, f"rank {rank} failed:\n{err[-3000:]}"
    return [json.loads((out / f"result-{rank}.json").read_text()) for rank in range(len(runs))]


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("sharded-two")
    return out, _reports(out, _launch("two", 2, out, budget_s=200.0))


@pytest.fixture(scope="module")
def four(
    tmp_path_factory: pytest.TempPathFactory, two: tuple[Path, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("sharded-four")
    runs = _launch("four", 4, out, budget_s=240.0, env={"EARLIER": str(two[0])})
    return _reports(out, runs)


TWO_CASES = ["fsdp2", "fsdp2_memory", "fsdp2_background", "fsdp2_disk_only", "tp", "fsdp1", "ddp"]


@pytest.mark.parametrize("case", TWO_CASES)
def test_every_rank_restores_the_best_evaluation(
    two: tuple[Path, list[dict[str, Any]]], case: str
) -> None:
    for report in two[1]:
        run = report[case]
        assert run["sharded"] is (case != "ddp")
        assert (run["stopped"], run["best"]) == (STOPPED, BEST)
        assert run["restored"] == [float(BEST)]
        assert run["collectives"] == STOPPED  # one per call: saves add none to the decision


@pytest.mark.parametrize("case", TWO_CASES)
def test_one_collective_per_call_and_more_only_on_improvements(
    two: tuple[Path, list[dict[str, Any]]], case: str
) -> None:
    for report in two[1]:
        per_call = report[case]["per_call"]  # evaluations 1-3 improve, 4 does not, 5 stops
        assert len(per_call) == STOPPED
        assert per_call[3] == 1
        # FSDP1's sharded state dict all-gathers: restoring at the stop call costs more
        assert per_call[4] == 1 or (case == "fsdp1" and per_call[4] > 1)
        extra = [n - 1 for n in per_call[:3]]
        if case in {"fsdp2", "fsdp2_disk_only", "tp", "fsdp1"}:
            assert min(extra) > 1  # DCP's own collectives, then one status exchange
        elif case == "fsdp2_background":  # DCP's run on the writer's own group and thread
            assert extra == [1, 2, 2]  # the start's exchange, then the previous save's outcome
        else:  # in memory: nothing more
            assert extra == [0, 0, 0]


@pytest.mark.parametrize("case", ["hsdp", "tp+fsdp"])
def test_four_ranks_on_a_two_dimensional_mesh_restore_the_best(
    four: list[dict[str, Any]], case: str
) -> None:
    for report in four:
        run = report[case]
        assert (run["stopped"], run["best"]) == (STOPPED, BEST)
        assert run["restored"] == run["restored_from_disk"] == [float(BEST)]
        assert run["keeper_bytes"] == run["local_bytes"]


@pytest.mark.parametrize("case", ["fsdp2", "fsdp2_background", "tp", "fsdp1"])
def test_a_restarted_stopper_restores_the_best_from_the_directory(
    two: tuple[Path, list[dict[str, Any]]], case: str
) -> None:
    for report in two[1]:
        assert report[case]["restored_from_disk"] == [float(BEST)]


@pytest.mark.parametrize("case", ["fsdp2", "fsdp2_memory", "fsdp2_background", "tp"])
def test_keeper_holds_the_local_shards_only(
    two: tuple[Path, list[dict[str, Any]]], case: str
) -> None:
    full = sum(4 * n for n in (5 * 8 + 8, 8 * 4 + 4, 4 * 3 + 3, 3))  # float32 bytes
    for report in two[1]:
        run = report[case]
        assert run["keeper_bytes"] == run["local_bytes"]
        assert run["keeper_bytes"] < full


def test_restart_on_another_world_size_reshards(four: list[dict[str, Any]]) -> None:
    for report in four:
        assert report["restart"] == {"best": BEST, "restored": [float(BEST)]}


def test_the_directory_loads_with_the_plain_dcp_api(
    two: tuple[Path, list[dict[str, Any]]],
) -> None:
    import torch

    out = two[0]
    model = _model()
    state = {"model": model.state_dict()}
    _plain_load(state, out / "best")
    model.load_state_dict(state["model"])
    assert all(bool((t == float(BEST)).all()) for t in model.state_dict().values())
    record = json.loads((out / "best" / "earlystop.json").read_text())
    assert record["evaluation"] == BEST
    assert record["world_size"] == 2
    assert (out / "best").is_symlink()
    versions = sorted(p.name for p in out.iterdir() if p.name.startswith(("best.", ".best")))
    assert len(versions) == 1
    assert versions[0].startswith(f"best.eval-{BEST}-")
    assert torch.equal(state["model"]["scale"], torch.full((3,), float(BEST)))


def test_export_writes_the_full_weights_to_safetensors(
    two: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    from earlystop import export_sharded_checkpoint, load_checkpoint

    written = export_sharded_checkpoint(two[0] / "best", tmp_path / "best.safetensors")
    model = _model()
    model.load_state_dict(load_checkpoint(written).state_dict)
    assert all(bool((t == float(BEST)).all()) for t in model.state_dict().values())


def test_resharded_model_and_taken_path_are_clear_errors(
    two: tuple[Path, list[dict[str, Any]]],
) -> None:
    for report in two[1]:
        assert report["resharded"] == (
            "ReshardedError: cannot restore the kept weights of evaluation 1: the model was "
            "re-sharded since; `2.bias` was a DTensor of shape [4] placed ['Shard(dim=0)'] on a "
            "cpu mesh [2] of ranks [0, 1] and is now a DTensor of shape [4] placed "
            "['Replicate()'] on a cpu mesh [2] of ranks [0, 1] (restore from the checkpoint "
            "directory instead, which reshards)"
        )
        assert report["taken"] == (
            f"CheckpointError: `path` {two[0] / 'taken'} of a sharded model names a directory "
            "that is not an earlystop sharded checkpoint (a link to its latest version): move "
            "it away or choose another path"
        )
        assert report["taken_decided"] == 1
        rank = two[1].index(report)
        assert report["taken_at_construction"] == (
            f"ValueError: `path` must name a regular file, got '{two[0] / f'taken-{rank}'}': "
            "it is a directory, which a checkpoint must never replace; give a regular file path"
        )
        assert report["nothing_kept"] == (
            "RuntimeError: no best weights to restore: pass the model to every call, and either "
            "keep them in memory (path=None or restore_best_weights=True) or give a `path`"
        )
        assert report["taken_restored"] == [1.0]
        assert report["extra_epoch"] == 1


def test_a_write_failing_on_one_rank_raises_on_every_rank(
    two: tuple[Path, list[dict[str, Any]]],
) -> None:
    messages = [report["disk_full"] for report in two[1]]
    assert messages[0] == messages[1]
    assert messages[0].startswith(
        f"CheckpointError: sharded checkpoint {two[0] / 'full_disk'} of evaluation 1 was not "
        "written (failed on rank(s) "
    )
    assert f"{two[0] / 'full_disk'} still holds the previous best" in messages[0]
    for report in two[1]:
        assert report["disk_full_restored"] == [7.0]
        assert report["disk_full_published"] is False


def test_a_rank_killed_mid_save_leaves_the_previous_best_loadable(tmp_path: Path) -> None:
    runs = _launch("kill", 2, tmp_path, budget_s=120.0)
    assert runs[1][0] == -signal.SIGKILL
    assert runs[0][0] != 0  # rank 0 fails in the save's collective instead of hanging
    model = _model()
    state = {"model": model.state_dict()}
    _plain_load(state, tmp_path / "best")
    model.load_state_dict(state["model"])
    assert all(bool((t == 1.0).all()) for t in model.state_dict().values())
    assert json.loads((tmp_path / "best" / "earlystop.json").read_text())["evaluation"] == 1


if __name__ == "__main__":
    name, rank_arg, world_arg, port_arg, out_arg = sys.argv[1:6]
    run_rank(lambda: worker(name, int(rank_arg), int(world_arg), int(port_arg), Path(out_arg)))
