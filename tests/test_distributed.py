"""Multi-process DDP: every rank reaches the same decision, and no fault makes a rank hang.

The tests start two real processes (gloo on 127.0.0.1, a free port) running this very
file as a worker (``python tests/test_distributed.py SCENARIO RANK PORT OUT TIMEOUT``).
Every wait is bounded: the process group's timeout inside, ``communicate(timeout=)``
outside (the processes are killed and the test fails if they overrun).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gloo_ranks import free_port, join_gloo, run_rank

HERE = Path(__file__).resolve()
SRC = HERE.parents[1] / "src"
WORLD = 2
PATIENCE = 2

# Per-rank monitored values, epoch by epoch (1-based epochs = list index + 1).
RULE_VALUES = {
    0: [1.0, 0.9, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89],  # stalls after 3: stops at 5
    1: [1.0, 0.9, 0.95, 0.96, 0.5, 0.97, 0.98, 0.99],  # stops at 4, improves at 5, stops at 7
}
# Stop epochs under each rule, worked out by hand from RULE_VALUES with patience 2:
# mean  = [1.0, .9, .875, .905, .68, .92, .93, .94]: best at 5, stops at 7
# rank0 = rank 0's own run: stops at 5 (best 3)
# any   = first stop of either rank: rank 1 at 4 (best follows rank 0: 3)
# all   = first epoch where both stop: 7 (rank 0 stops from 5 on, rank 1 at 7)
EXPECTED = {"mean": (7, 5), "rank0": (5, 3), "any": (4, 3), "all": (7, 3)}


# -- the worker (runs in the child processes) ---------------------------------------------


def _sentinel_model() -> Any:
    import torch

    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    return model


def _set_epoch(model: Any, epoch: int) -> None:
    import torch

    with torch.no_grad():
        model.weight.fill_(float(epoch))


def _run(early_stopping: Any, values: list[Any], rank: int, slow_at: int | None = None) -> Any:
    model = _sentinel_model()
    decisions = []
    for epoch, value in enumerate(values, start=1):
        if slow_at == epoch and rank == 1:
            time.sleep(1.5)
        _set_epoch(model, epoch)
        d = early_stopping(value, model)
        decisions.append([d.step, d.should_stop, d.improved, d.reason, d.best_step, d.wait])
        if d.should_stop:
            break
    early_stopping.restore(model)
    return {
        "decisions": decisions,
        "stopped": early_stopping.stopped_epoch,
        "best": early_stopping.best_epoch,
        "restored": float(model.weight.item()),
        "collectives": early_stopping.distributed.collectives,
    }


def _scenario_rules(rank: int, out: Path) -> dict[str, Any]:
    from earlystop import EarlyStopping

    result: dict[str, Any] = {}
    for rule in EXPECTED:
        path = out / f"{rule}-rank{rank}.pt"
        es = EarlyStopping(PATIENCE, path=path, trace_func=None, distributed=rule)
        result[rule] = _run(es, RULE_VALUES[rank], rank)
        result[rule]["wrote_file"] = path.is_file()
        if rule == "all":  # the replicas travel in the state: resume after 3 evaluations
            again = EarlyStopping(PATIENCE, path=None, trace_func=None, distributed=rule)
            for value in RULE_VALUES[rank][:3]:
                again(value)
            resumed = EarlyStopping(PATIENCE, path=None, trace_func=None, distributed=rule)
            resumed.load_state_dict(json.loads(json.dumps(again.state_dict())))
            steps = [resumed(v).should_stop for v in RULE_VALUES[rank][3:]]
            result["all_resumed_stop"] = 4 + steps.index(True)
    # a NaN on rank 1 at epoch 3, and rank 1 slow (1.5 s) at epoch 2: both stop at 3
    nan_values = [1.0, 0.9, math.nan if rank == 1 else 0.8, 0.7]
    es = EarlyStopping(PATIENCE, path=None, trace_func=None)
    result["nan"] = _run(es, nan_values, rank, slow_at=2)
    # rank 1 gives a value that is not a number at epoch 2: every rank raises
    es = EarlyStopping(PATIENCE, path=None, trace_func=None)
    try:
        _run(es, [1.0, "oops" if rank == 1 else 0.9, 0.8], rank)
    except TypeError as exc:
        result["bad_value"] = f"{type(exc).__name__}: {exc}"
    # the same number of metrics under different names: every rank raises
    es = EarlyStopping(PATIENCE, path=None, trace_func=None)
    try:
        es(1.0, **({"train_loss": 0.5} if rank == 0 else {"lr": 0.1}))
    except TypeError as exc:
        result["other_names"] = f"{type(exc).__name__}: {exc}"
    # metrics are averaged with the value: a criterion on them decides the same everywhere
    es = EarlyStopping(None, path=None, trace_func=None, criteria=[_gap_criterion])
    gaps = (
        [(0.5, 0.4), (0.45, 0.40), (0.3, 0.35)]
        if rank == 0
        else [(0.5, 0.4), (0.45, 0.5), (0.3, 0.35)]
    )
    for value, train_loss in gaps:
        if es(value, train_loss=train_loss).should_stop:
            break
    result["criterion_stop"] = [
        es.stopped_epoch,
        es.last_decision.reason if es.last_decision else None,
    ]
    return result


def _gap_criterion(history: Any) -> str | None:
    """Stop when the mean train loss exceeds the monitored value (a made-up rule)."""
    return "gap" if history.series("train_loss")[-1] > history.values[-1] else None


def _scenario_raise(rank: int, out: Path) -> dict[str, Any]:
    from earlystop import EarlyStopping

    es = EarlyStopping(PATIENCE, path=None, trace_func=None)
    for epoch, value in enumerate([1.0, 0.9, 0.8], start=1):
        if rank == 1 and epoch == 2:
            raise RuntimeError("rank 1 crashed in its training step")
        es(value)
    return {}


def _scenario_too_slow(rank: int, out: Path) -> dict[str, Any]:
    from earlystop import EarlyStopping

    es = EarlyStopping(PATIENCE, path=None, trace_func=None)
    for epoch, value in enumerate([1.0, 0.9, 0.8], start=1):
        if rank == 1 and epoch == 2:
            time.sleep(6.0)  # longer than the group's 3 s timeout
        es(value)
    return {}


SCENARIOS = {"rules": _scenario_rules, "raise": _scenario_raise, "too_slow": _scenario_too_slow}


def worker(scenario: str, rank: int, port: int, out: Path, timeout_s: float) -> None:
    import torch.distributed as dist

    import earlystop  # noqa: F401  (imported before the clock of the short timeout starts)

    join_gloo(rank, WORLD, port, timeout_s)
    result = SCENARIOS[scenario](rank, out)
    (out / f"result-{scenario}-{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


# -- the tests (run in pytest) ---------------------------------------------------------------


def _start(scenario: str, out: Path, timeout_s: float) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    port = free_port()
    return [
        subprocess.Popen(
            [sys.executable, str(HERE), scenario, str(rank), str(port), str(out), str(timeout_s)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(WORLD)
    ]


def _finish(procs: list[subprocess.Popen[str]], start: float, budget_s: float) -> list[Any]:
    """Wait for both ranks; (returncode, stderr, seconds since start) each, within budget."""
    results = []
    try:
        for proc in procs:
            remaining = max(1.0, budget_s - (time.monotonic() - start))
            _, err = proc.communicate(timeout=remaining)
            results.append((proc.returncode, err, time.monotonic() - start))
    except subprocess.TimeoutExpired:
        pytest.fail(f"a rank hung for more than {budget_s} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _launch(scenario: str, out: Path, timeout_s: float, budget_s: float) -> list[Any]:
    start = time.monotonic()
    return _finish(_start(scenario, out, timeout_s), start, budget_s)


@pytest.fixture(scope="module")
def fault_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """The two fault scenarios, started together (mostly waiting, they overlap well)."""
    start = time.monotonic()
    procs = {
        "raise": _start("raise", tmp_path_factory.mktemp("ddp-raise"), timeout_s=20.0),
        "too_slow": _start("too_slow", tmp_path_factory.mktemp("ddp-slow"), timeout_s=3.0),
    }
    return {name: _finish(group, start, budget_s=60.0) for name, group in procs.items()}


@pytest.fixture(scope="module")
def rules_run(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ddp-rules")
    runs = _launch("rules", out, timeout_s=30.0, budget_s=90.0)
    for rank, (code, err, _) in enumerate(runs):
        assert code == 0, f"rank {rank} failed:\n{err[-3000:]}"
    return [json.loads((out / f"result-rules-{rank}.json").read_text()) for rank in range(WORLD)]


@pytest.mark.parametrize("rule", list(EXPECTED))
def test_every_rank_takes_the_same_decisions(rules_run: list[dict[str, Any]], rule: str) -> None:
    rank0, rank1 = (run[rule] for run in rules_run)
    assert rank0["decisions"] == rank1["decisions"]
    assert (rank0["stopped"], rank0["best"]) == EXPECTED[rule]
    assert (rank1["stopped"], rank1["best"]) == EXPECTED[rule]


@pytest.mark.parametrize("rule", list(EXPECTED))
def test_one_collective_per_check(rules_run: list[dict[str, Any]], rule: str) -> None:
    for run in rules_run:
        assert run[rule]["collectives"] == len(run[rule]["decisions"])


@pytest.mark.parametrize("rule", list(EXPECTED))
def test_only_rank0_writes_and_every_rank_restores(
    rules_run: list[dict[str, Any]], rule: str
) -> None:
    rank0, rank1 = (run[rule] for run in rules_run)
    assert rank0["wrote_file"] is True  # restored from this file on rank 0
    assert rank1["wrote_file"] is False  # restored from memory on rank 1
    best = float(EXPECTED[rule][1])
    assert rank0["restored"] == best
    assert rank1["restored"] == best


def test_replicas_resume_identically(rules_run: list[dict[str, Any]]) -> None:
    for run in rules_run:
        assert run["all_resumed_stop"] == EXPECTED["all"][0]


def test_nan_on_one_rank_stops_every_rank_and_slow_rank_is_waited_for(
    rules_run: list[dict[str, Any]],
) -> None:
    rank0, rank1 = (run["nan"] for run in rules_run)
    assert rank0["decisions"] == rank1["decisions"]
    assert rank0["stopped"] == 3
    assert rank0["decisions"][-1][3] == "non_finite"
    assert rank0["best"] == rank1["best"] == 2
    assert rank0["restored"] == rank1["restored"] == 2.0


def test_bad_value_on_one_rank_raises_on_every_rank(rules_run: list[dict[str, Any]]) -> None:
    for run in rules_run:
        assert run["bad_value"] == (
            "DistributedValueError: rank(s) 1 gave a monitored value or metric that is not "
            "a real number; every rank stops here"
        )


def test_different_metric_names_raise_on_every_rank(rules_run: list[dict[str, Any]]) -> None:
    assert rules_run[0]["other_names"].startswith(
        "DistributedValueError: the ranks gave different metric names (every rank must pass "
        "the same keyword metrics); this rank gave ['train_loss']"
    )
    assert rules_run[1]["other_names"].endswith("this rank gave ['lr']")


def test_metrics_are_averaged_for_criteria(rules_run: list[dict[str, Any]]) -> None:
    # epoch 2: train_loss 0.40 on rank 0 and 0.50 on rank 1, mean 0.45: not above 0.45.
    # epoch 3: mean train_loss 0.35 > 0.30: "gap" on both ranks at once.
    assert rules_run[0]["criterion_stop"] == rules_run[1]["criterion_stop"] == [3, "gap"]


def test_a_crashing_rank_does_not_hang_the_others(fault_runs: dict[str, list[Any]]) -> None:
    (code0, err0, _), (code1, err1, _) = fault_runs["raise"]
    assert code1 != 0
    assert "rank 1 crashed in its training step" in err1
    assert code0 != 0  # rank 0 fails fast in its collective instead of waiting forever
    assert "Error" in err0


def test_a_rank_slower_than_the_timeout_fails_every_rank_in_bounded_time(
    fault_runs: dict[str, list[Any]],
) -> None:
    runs = fault_runs["too_slow"]
    for code, err, seconds in runs:
        assert code != 0, err
        assert seconds < 45.0
    err0 = runs[0][1]
    assert "_distributed.py" in err0  # rank 0 failed in earlystop's collective, not at init
    assert "Timed out" in err0 or "timeout" in err0.lower()


def test_without_a_process_group_there_is_no_collective() -> None:
    from earlystop import EarlyStopping

    es = EarlyStopping(PATIENCE, path=None, trace_func=None, distributed="all")
    for value in [1.0, 1.0, 1.0]:
        es(value)
    assert es.stopped_epoch == 3
    assert es.distributed.collectives == 0
    assert "distributed" not in es.state_dict()


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        (
            "some",
            r"`distributed` must be one of 'mean', 'rank0', 'any', 'all', 'local', got 'some'",
        ),
        (None, r"`distributed` must be one of .*, got None"),
    ],
)
def test_rule_is_validated(rule: Any, match: str) -> None:
    from earlystop import EarlyStopping

    with pytest.raises(ValueError, match=match):
        EarlyStopping(path=None, distributed=rule)


if __name__ == "__main__":
    name, rank_arg, port_arg, out_arg, timeout_arg = sys.argv[1:6]
    run_rank(lambda: worker(name, int(rank_arg), int(port_arg), Path(out_arg), float(timeout_arg)))
