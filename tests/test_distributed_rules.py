"""The agreement rules, checked in one process: ranks are threads, the collective a barrier.

The real collective is exercised by ``test_distributed.py`` (two processes, gloo); here a
fake ``all_reduce`` lets hypothesis try hundreds of value streams per rule quickly.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import earlystop._frontend.distributed as distributed
from earlystop import Decision, EarlyStopping, Stopper

_local = threading.local()


class FakeGroup:
    """Sums the rows of ``world`` threads, like ``all_reduce(SUM)`` of their buffers."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.rows: list[list[float]] = [[] for _ in range(world)]
        self.barrier = threading.Barrier(world, timeout=10)

    def exchange(self, sync: Any, row: list[float], rank: int, world: int) -> list[list[float]]:
        self.rows[rank] = row
        self.barrier.wait()  # every row written
        table = [list(r) for r in self.rows]
        self.barrier.wait()  # every row read before anyone writes the next one
        sync.collectives += 1
        return table


@pytest.fixture(scope="module")
def fake_group() -> Iterator[None]:
    """Ranks are threads: each reads its rank from a thread-local, every sync is active."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distributed, "rank_and_world", lambda: (_local.rank, _local.world))
        patch.setattr(distributed.DistributedSync, "active", property(lambda self: True))
        yield


def run_ranks(rule: str, streams: list[list[float]], **options: Any) -> list[list[Decision]]:
    world = len(streams)
    group = FakeGroup(world)
    results: list[list[Decision]] = [[] for _ in range(world)]
    errors: list[BaseException] = []

    def rank_main(rank: int) -> None:
        _local.rank, _local.world = rank, world
        es = EarlyStopping(path=None, trace_func=None, distributed=rule, **options)
        es.distributed._exchange = lambda row, r, w: group.exchange(es.distributed, row, r, w)  # type: ignore[method-assign]
        try:
            for value in streams[rank]:
                decision = es(value)
                results[rank].append(decision)
                if decision.should_stop:
                    break
        except BaseException as exc:  # surfaced in the main thread; a rank left waiting
            errors.append(exc)  # gets BrokenBarrierError from the barrier's timeout

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return results


def reference_stop(rule: str, streams: list[list[float]], **options: Any) -> int | None:
    """The first evaluation (1-based) at which the rule stops, computed without any sync."""
    length = len(streams[0])
    if rule in ("mean", "rank0"):
        stopper = Stopper(**options)
        for step in range(length):
            column = [s[step] for s in streams]
            value = distributed._mean(column) if rule == "mean" else column[0]
            if stopper.step(value).should_stop:
                return step + 1
        return None
    stoppers = [Stopper(**options) for _ in streams]
    for step in range(length):
        stops = [st_.step(s[step]).should_stop for st_, s in zip(stoppers, streams, strict=True)]
        if (any if rule == "any" else all)(stops):
            return step + 1
    return None


VALUES = st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.5, 1.0, 2.0, math.nan, math.inf])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, list[list[float]], dict[str, Any]]:
    world = draw(st.integers(2, 3))
    length = draw(st.integers(1, 10))
    streams = [draw(st.lists(VALUES, min_size=length, max_size=length)) for _ in range(world)]
    rule = draw(st.sampled_from(["mean", "rank0", "any", "all"]))
    options = {
        "patience": draw(st.integers(0, 3)),
        "on_nonfinite": draw(st.sampled_from(["stop", "count"])),
        "min_delta": draw(st.sampled_from([0.0, 0.1])),
        "mode": draw(st.sampled_from(["min", "max"])),
    }
    return rule, streams, options


@settings(max_examples=150, deadline=None)
@given(scenario=scenarios())
def test_every_rank_gets_the_decision_of_the_rule(
    fake_group: None, scenario: tuple[str, list[list[float]], dict[str, Any]]
) -> None:
    rule, streams, options = scenario
    results = run_ranks(rule, streams, **options)
    for other in results[1:]:
        assert other == results[0]  # identical Decision objects, evaluation by evaluation
    stops = [d.step for d in results[0] if d.should_stop]
    assert (stops[0] if stops else None) == reference_stop(rule, streams, **options)


@pytest.mark.parametrize(
    ("rule", "streams", "expected"),
    [
        (
            "any",
            [[1.0, 0.5], [1.0, math.nan]],
            (True, "non_finite", "rank 1: monitored value is nan (distributed='any')", 2),
        ),
        (
            "all",
            [[1.0, math.nan], [1.0, 0.5]],
            (
                False,
                None,
                "monitored value is nan; not stopping: rank(s) 1 do not agree (distributed='all')",
                1,
            ),
        ),
    ],
)
def test_vote_explains_itself(
    fake_group: None, rule: str, streams: list[list[float]], expected: tuple[Any, ...]
) -> None:
    for decisions in run_ranks(rule, streams, patience=3):
        last = decisions[-1]  # best step follows rank 0's values
        assert (last.should_stop, last.reason, last.detail, last.best_step) == expected


def test_nonfinite_raise_raises_on_every_rank(fake_group: None) -> None:
    nan = r"ValueError\(\"monitored value is nan at evaluation 2 \(on_nonfinite='raise'\)\"\)"
    with pytest.raises(AssertionError, match=rf"^\[{nan}, {nan}\]"):
        run_ranks("mean", [[1.0, 0.5], [1.0, math.nan]], on_nonfinite="raise")
