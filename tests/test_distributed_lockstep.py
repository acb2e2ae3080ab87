"""Ranks in lock-step (issue 11): every mismatch and every one-rank error is raised on
every rank within the call, so no rank pairs another evaluation or waits for the timeout.

Two real processes (gloo on 127.0.0.1) run this file as a worker
(``python tests/test_distributed_lockstep.py RANK PORT OUT``), go through every case in one
process group, and report what each call did. Every wait is bounded: the group's timeout
inside (20 s), ``communicate(timeout=)`` outside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gloo_ranks import free_port, join_gloo

HERE = Path(__file__).resolve()
SRC = HERE.parents[1] / "src"
WORLD = 2
BUDGET_S = 150.0


def _outcome(call: Callable[[], Any]) -> str:
    try:
        decision = call()
    except Exception as exc:  # reported, compared across ranks
        return f"{type(exc).__name__}: {exc}"
    return f"step {decision.step} stop={decision.should_stop} best={decision.best_step}"


class _BadFloat:
    def __float__(self) -> float:
        raise RuntimeError("this metric cannot be read")


def _case_writer_error(rank: int, out: Path) -> list[str]:
    """Rank 0's background write fails; the loop catches CheckpointError and goes on."""
    import torch

    from earlystop import CheckpointError, EarlyStopping
    from earlystop._weights import background

    real = background.save_checkpoint

    def failing(path: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("step") == 2:
            raise CheckpointError("disk full (injected)", path)
        return real(path, *args, **kwargs)

    background.save_checkpoint = failing
    es = EarlyStopping(3, path=out / "best.pt", trace_func=None, background=True)
    model = torch.nn.Linear(2, 1)
    outcomes = []
    for value in [5.0, 4.0, 4.5, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0]:
        time.sleep(0.2)  # the failed write is reported before the next call
        outcome = _outcome(lambda v=value: es(v, model))  # type: ignore[misc]
        outcomes.append(outcome.split(" (")[0] if "CheckpointError" in outcome else outcome)
        if es.early_stop:
            break
    background.save_checkpoint = real
    es.close()
    return outcomes


def _configured(option: str) -> Callable[[int, Path], list[str]]:
    options: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "patience": ({"patience": 3}, {"patience": 4}),
        "mode": ({"mode": "min"}, {"mode": "max"}),
        "policy": ({}, {"policy": "gl=2", "patience": 7}),
        "rule": ({"distributed": "mean"}, {"distributed": "rank0"}),
    }

    def case(rank: int, out: Path) -> list[str]:
        from earlystop import EarlyStopping

        es = EarlyStopping(path=None, trace_func=None, **options[option][rank])
        return [_outcome(lambda: es(1.0)), _outcome(lambda: es(0.5))]

    return case


def _case_one_rank_failed_after_the_collective(rank: int, out: Path) -> list[str]:
    """Rank 1's trace_func fails at the second call: rolled back there, not on rank 0."""
    from earlystop import EarlyStopping

    def trace(message: str) -> None:
        if rank == 1 and "0.500000" in message:
            raise BrokenPipeError("rank 1's log is gone")

    es = EarlyStopping(3, path=None, verbose=True, trace_func=trace)
    return [_outcome(lambda v=v: es(v)) for v in [1.0, 0.5, 0.4]]  # type: ignore[misc]


def _case_float_raises_on_one_rank(rank: int, out: Path) -> list[str]:
    from earlystop import EarlyStopping

    es = EarlyStopping(3, path=None, trace_func=None)
    value: Any = _BadFloat() if rank == 1 else 0.5
    return [_outcome(lambda: es(1.0)), _outcome(lambda: es(value)), _outcome(lambda: es(0.4))]


def _case_resume_on_fewer_ranks(rank: int, out: Path) -> list[str]:
    from earlystop import EarlyStopping

    es = EarlyStopping(3, path=None, trace_func=None, distributed="any")
    es(1.0)
    state = json.loads(json.dumps(es.state_dict()))
    state["distributed"]["replicas"].append(state["distributed"]["replicas"][0])  # 3 ranks
    again = EarlyStopping(3, path=None, trace_func=None, distributed="any")
    try:
        again.load_state_dict(state)
    except ValueError as exc:
        return [f"ValueError: {exc}", _outcome(lambda: again(1.0))]
    return ["loaded", _outcome(lambda: again(1.0))]


CASES: dict[str, Callable[[int, Path], list[str]]] = {
    "writer error": _case_writer_error,
    "patience differs": _configured("patience"),
    "mode differs": _configured("mode"),
    "policy differs": _configured("policy"),
    "rule differs": _configured("rule"),
    "a call failed on one rank only": _case_one_rank_failed_after_the_collective,
    "__float__ raises on one rank": _case_float_raises_on_one_rank,
    "resume on fewer ranks": _case_resume_on_fewer_ranks,
}


def worker(rank: int, port: int, out: Path) -> None:
    import torch.distributed as dist

    join_gloo(rank, WORLD, port, 20)
    results: dict[str, Any] = {}
    for name, case in CASES.items():
        folder = out / f"rank{rank}" / name.replace(" ", "-")
        folder.mkdir(parents=True)
        results[name] = case(rank, folder)
        dist.barrier()  # the next case starts together
    (out / f"result-{rank}.json").write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, list[str]]]:
    out = tmp_path_factory.mktemp("lockstep")
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE), str(rank), str(port), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(WORLD)
    ]
    start = time.monotonic()
    try:
        for rank, proc in enumerate(procs):
            remaining = max(1.0, BUDGET_S - (time.monotonic() - start))
            _, err = proc.communicate(timeout=remaining)
            assert proc.returncode == 0, f"rank {rank} failed:\n{err[-3000:]}"
    except subprocess.TimeoutExpired:
        pytest.fail(f"a rank hung for more than {BUDGET_S} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [json.loads((out / f"result-{rank}.json").read_text()) for rank in range(WORLD)]


def test_a_failed_background_write_on_rank0_is_raised_on_every_rank(
    ranks: list[dict[str, list[str]]],
) -> None:
    zero, one = ranks[0]["writer error"], ranks[1]["writer error"]
    failed = [i for i, outcome in enumerate(zero) if outcome.startswith("CheckpointError")]
    assert len(failed) == 1, zero
    assert zero[failed[0]] == "CheckpointError: background write of evaluation 2 failed: disk full"
    # the message up to " (the error is raised there)", as _case_writer_error keeps it
    assert one[failed[0]] == "CheckpointError: rank 0's background checkpoint write failed", one
    assert [o for o in zero if "Error" not in o] == [o for o in one if "Error" not in o]
    assert zero[-1] == one[-1]
    assert "stop=True" in zero[-1]


@pytest.mark.parametrize("case", ["patience differs", "mode differs", "policy differs"])
def test_ranks_configured_differently_raise_on_every_rank(
    ranks: list[dict[str, list[str]]], case: str
) -> None:
    message = (
        "RanksOutOfStepError: rank(s) 1 are configured differently from rank 0 (mode, "
        "distributed rule, patience, deltas, thresholds, criteria, smoothing or scheduler "
        "differ); every rank must build EarlyStopping with the same options"
    )
    assert ranks[0][case] == ranks[1][case] == [message, message]


def test_ranks_with_different_rules_raise_on_every_rank(
    ranks: list[dict[str, list[str]]],
) -> None:
    assert ranks[0]["rule differs"] == ranks[1]["rule differs"]
    assert all(
        o.startswith("RanksOutOfStepError: rank(s) 1 are configured differently")
        for o in ranks[0]["rule differs"]
    )


def test_a_call_that_failed_on_one_rank_is_caught_at_the_next(
    ranks: list[dict[str, list[str]]],
) -> None:
    zero, one = (
        ranks[0]["a call failed on one rank only"],
        ranks[1]["a call failed on one rank only"],
    )
    assert zero[:2] == ["step 1 stop=False best=1", "step 2 stop=False best=2"]
    assert one[:2] == ["step 1 stop=False best=1", "BrokenPipeError: rank 1's log is gone"]
    out_of_step = (
        "RanksOutOfStepError: the ranks are at different evaluations (rank 0: 3, rank 1: 2): "
        "one made a call the others did not, or a call failed on one rank only; every rank "
        "must make every call"
    )
    assert zero[2] == one[2] == out_of_step


def test_a_value_whose_float_raises_on_one_rank_raises_on_every_rank(
    ranks: list[dict[str, list[str]]],
) -> None:
    zero, one = ranks[0]["__float__ raises on one rank"], ranks[1]["__float__ raises on one rank"]
    assert zero == one
    assert zero[1].startswith("DistributedValueError: rank(s) 1 gave a monitored value")
    assert zero[2] == "step 2 stop=False best=2"  # nothing recorded by the failed call


def test_resuming_replicas_on_fewer_ranks_is_a_clear_error(
    ranks: list[dict[str, list[str]]],
) -> None:
    message = (
        "ValueError: state entry `distributed` was recorded on 3 ranks, but this group has 2: "
        "resume distributed='any' on as many ranks"
    )
    assert ranks[0]["resume on fewer ranks"][0] == ranks[1]["resume on fewer ranks"][0] == message


if __name__ == "__main__":
    rank_arg, port_arg, out_arg = sys.argv[1:4]
    try:
        worker(int(rank_arg), int(port_arg), Path(out_arg))
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
