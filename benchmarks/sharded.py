"""What keeping the best weights of a sharded (FSDP2) model costs, per rank.

For float32 models of ``Linear`` layers (default 10M, 50M and 100M parameters), each layer
and the whole model wrapped with ``fully_shard`` on a CPU device mesh, on 2 and 4 ranks
(gloo on 127.0.0.1, one process per rank, started by this script), every rank measures:

* ``raw copy``: one ``torch._foreach_copy_`` of its local shards into buffers it allocated
  beforehand: the physical floor of an in-memory snapshot;
* ``snapshot``: earlystop's sharded keeper (``get_model_state_dict``, then the copy into
  its host buffers, allocated at the first snapshot);
* ``sync save``: the time the loop is blocked by an improvement with ``path`` set (DCP
  ``save`` of every rank's shards into a temporary directory, fsynced, published by rank 0,
  one status exchange);
* ``async block``: the same with ``background=True`` (snapshot, then ``dcp.async_save``
  from the host copy on a separate gloo group): the time until the loop continues; the
  write itself is waited for untimed before the next round;
* bytes: the keeper's host buffers, the rank's local shards, the full model.

Rounds are interleaved (each round measures every case once); figures are medians over the
rounds, and the table shows the slowest rank (the loop waits for it). The load average is
recorded at the start and the end.

Usage::

    python benchmarks/sharded.py                 # the full run (a few minutes)
    python benchmarks/sharded.py --markdown      # tables for docs/performance.md
    python benchmarks/sharded.py --json          # machine-readable
    python benchmarks/sharded.py --quick         # a tiny model on 2 ranks (seconds)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

# name, width, depth: depth Linear(width, width) layers (weights and biases)
FULL_MODELS = [("10M", 1024, 10), ("50M", 2048, 12), ("100M", 2048, 24)]
QUICK_MODELS = [("100k", 128, 6)]
TARGETS = {"keeper_vs_local": 1.05, "snapshot_vs_copy": 1.3, "async_vs_snapshot": 1.5}


# -- one rank ----------------------------------------------------------------------------------


def rank_main(rank: int, world: int, port: int, spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    from earlystop._frontend.sharded import ShardedBest

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=300),
    )
    width, depth = spec["width"], spec["depth"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(width, width) for _ in range(depth)))
    full_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    mesh = init_device_mesh("cpu", (world,))
    for layer in model:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    locals_ = [p.to_local() if isinstance(p, DTensor) else p for p in model.parameters()]
    local_bytes = sum(t.numel() * t.element_size() for t in locals_)
    raw = [torch.empty_like(t) for t in locals_]
    memory = ShardedBest(background=False)
    sync = ShardedBest(background=False)
    background = ShardedBest(background=True)
    out = Path(spec["dir"])
    times: dict[str, list[float]] = {"copy": [], "snapshot": [], "sync": [], "async": []}
    for step in range(1, spec["rounds"] + 2):  # the first round allocates: not counted
        dist.barrier()
        start = time.perf_counter()
        torch._foreach_copy_(raw, locals_)
        copy = time.perf_counter() - start
        dist.barrier()
        start = time.perf_counter()
        memory.keep(model, step, None, memory=True, extra=None)
        snap = time.perf_counter() - start
        dist.barrier()
        start = time.perf_counter()
        sync.keep(model, step, out / "sync", memory=False, extra=None)
        sync_s = time.perf_counter() - start
        dist.barrier()
        start = time.perf_counter()
        background.keep(model, step, out / "async", memory=False, extra=None)
        async_s = time.perf_counter() - start
        background.settle()  # untimed: the write finishes before the next round
        if step > 1:
            for name, value in zip(times, (copy, snap, sync_s, async_s), strict=True):
                times[name].append(value * 1000.0)
    dist.barrier()
    return {
        "rank": rank,
        "full_bytes": full_bytes,
        "local_bytes": local_bytes,
        "keeper_bytes": memory.keeper.nbytes,
        "async_keeper_bytes": background.keeper.nbytes,
        "allocations": memory.keeper.allocations,
        "ms": {name: statistics.median(values) for name, values in times.items()},
    }


def worker(argv: list[str]) -> None:
    rank, world, port = (int(a) for a in argv[:3])
    spec = json.loads(argv[3])
    try:
        result = rank_main(rank, world, port, spec)
        Path(spec["dir"], f"result-{rank}.json").write_text(json.dumps(result))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)  # tearing gloo down after a DCP save can abort in torch 2.13


# -- the driver --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_case(
    name: str, width: int, depth: int, world: int, args: argparse.Namespace
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"earlystop-sharded-{name}-", dir=args.dir))
    spec = {"width": width, "depth": depth, "rounds": args.rounds, "dir": str(workdir)}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(r), str(world), str(port), json.dumps(spec)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    try:
        errors = [p.communicate(timeout=args.timeout)[1] for p in procs]
        if any(p.returncode != 0 for p in procs):
            failed = [
                (r, e) for r, (p, e) in enumerate(zip(procs, errors, strict=True)) if p.returncode
            ]
            raise SystemExit(
                f"rank {failed[0][0]} of {name} x{world} failed:\n{failed[0][1][-3000:]}"
            )
        ranks = [json.loads((workdir / f"result-{r}.json").read_text()) for r in range(world)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    slowest = {key: max(r["ms"][key] for r in ranks) for key in ranks[0]["ms"]}
    worst_keeper = max(r["keeper_bytes"] / r["local_bytes"] for r in ranks)
    return {
        "model": name,
        "params": sum(width * width + width for _ in range(depth)),
        "world": world,
        "full_bytes": ranks[0]["full_bytes"],
        "local_bytes": max(r["local_bytes"] for r in ranks),
        "keeper_bytes": max(r["keeper_bytes"] for r in ranks),
        "keeper_vs_local": worst_keeper,
        "allocations": max(r["allocations"] for r in ranks),
        "ms": slowest,
        "snapshot_vs_copy": slowest["snapshot"] / slowest["copy"],
        "async_vs_snapshot": slowest["async"] / slowest["snapshot"],
        "ranks": ranks,
    }


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    models = QUICK_MODELS if args.quick else FULL_MODELS
    if args.models:
        chosen = set(args.models.split(","))
        models = [m for m in FULL_MODELS + QUICK_MODELS if m[0] in chosen]
    worlds = [int(w) for w in (args.worlds or ("2" if args.quick else "2,4")).split(",")]
    import torch

    report: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_start": _load(),
        "rounds": args.rounds,
        "targets": TARGETS,
        "cases": [],
    }
    for name, width, depth in models:
        for world in worlds:
            if not args.quiet:
                print(f"... {name} on {world} ranks", file=sys.stderr, flush=True)
            report["cases"].append(run_case(name, width, depth, world, args))
    report["load_end"] = _load()
    return report


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| model | ranks | full MB | local MB | keeper MB | keeper / local | raw copy ms "
        "| snapshot ms | snapshot / copy | sync save ms | async block ms | async / snapshot |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["cases"]:
        ms = c["ms"]
        lines.append(
            f"| {c['model']} | {c['world']} | {_mb(c['full_bytes'])} | {_mb(c['local_bytes'])} "
            f"| {_mb(c['keeper_bytes'])} | {c['keeper_vs_local']:.3f} | {ms['copy']:.1f} "
            f"| {ms['snapshot']:.1f} | {c['snapshot_vs_copy']:.2f} | {ms['sync']:.0f} "
            f"| {ms['async']:.1f} | {c['async_vs_snapshot']:.2f} |"
        )
    lines.append("")
    lines.append(
        f"torch {report['torch']}, Python {report['python']}, {report['cpus']} CPUs, "
        f"{report['rounds']} rounds, load average {report['load_start']:.1f} at the start and "
        f"{report['load_end']:.1f} at the end; goals: keeper / local <= "
        f"{TARGETS['keeper_vs_local']}, snapshot / copy <= {TARGETS['snapshot_vs_copy']}, "
        f"async / snapshot <= {TARGETS['async_vs_snapshot']}."
    )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model on 2 ranks")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--models", help="comma-separated subset: 10M,50M,100M,100k")
    parser.add_argument("--worlds", help="comma-separated rank counts (default 2,4; quick 2)")
    parser.add_argument("--rounds", type=int, help="measured rounds (default 5, quick 2)")
    parser.add_argument("--dir", help="where the checkpoint directories go (default temp dir)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(markdown(report))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    main()
