"""Helpers of the multi-process tests: a free loopback port, and joining a gloo group.

Imported by the tests and by their worker processes (each test file is also the script its
ranks run, with ``tests/`` first on ``sys.path``).
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def join_gloo(rank: int, world: int, port: int, collective_timeout_s: float) -> None:
    """Join a gloo group on loopback: a generous 60 s to meet (start-up skew on a loaded
    machine must not fail the rendezvous), then ``collective_timeout_s`` for every
    collective, once all ranks are here, so that a hung rank fails the test quickly."""
    import torch.distributed as dist

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    dist.barrier()
    dist.distributed_c10d._set_pg_timeout(datetime.timedelta(seconds=collective_timeout_s))


def run_rank(work: Callable[[], object]) -> NoReturn:
    """Run one rank's ``work`` and leave with ``os._exit``: 0, or 1 after printing the
    traceback. No interpreter teardown: in torch 2.13 tearing gloo down after a DCP save
    can abort ("terminate called without an active exception")."""
    try:
        work()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
