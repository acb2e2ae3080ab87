"""Smoothing on hand sequences; the stopper's rules read smoothed values, weights follow raw."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop import (
    EMA,
    GL,
    EarlyStopping,
    MovingMean,
    MovingMedian,
    Smoother,
    Stopper,
    parse_policy,
)
from earlystop._core.smoothed import Tail
from earlystop._rules.smoothing import smooth_series

NAN = math.nan


@pytest.mark.parametrize(
    ("smoother", "raw", "expected"),
    [
        # s1 = 4; s2 = 0.5 * 2 + 0.5 * 4 = 3; s3 = 0.5 * 6 + 0.5 * 3 = 4.5
        (EMA(0.5), [4.0, 2.0, 6.0], [4.0, 3.0, 4.5]),
        # s2 = 0.25 * 0 + 0.75 * 4 = 3; s3 = 0.25 * 8 + 0.75 * 3 = 4.25
        (EMA(0.25), [4.0, 0.0, 8.0], [4.0, 3.0, 4.25]),
        (EMA(1.0), [4.0, 0.0, 8.0], [4.0, 0.0, 8.0]),
        # nan passes through and is skipped: s3 = 0.5 * 2 + 0.5 * 4 = 3
        (EMA(0.5), [4.0, NAN, 2.0], [4.0, NAN, 3.0]),
        (EMA(0.5), [NAN, 2.0, 4.0], [NAN, 2.0, 3.0]),
        # means of the last 2: 1, (1 + 3) / 2, (3 + 8) / 2
        (MovingMean(2), [1.0, 3.0, 8.0], [1.0, 2.0, 5.5]),
        (MovingMean(3), [3.0, NAN, 6.0, 9.0], [3.0, NAN, 4.5, 7.5]),
        # medians of the last 3: 1; median(1, 9) = 5; median(1, 9, 2) = 2; median(9, 2, 3) = 3
        (MovingMedian(3), [1.0, 9.0, 2.0, 3.0], [1.0, 5.0, 2.0, 3.0]),
        (MovingMedian(1), [1.0, 9.0, 2.0], [1.0, 9.0, 2.0]),
        (MovingMedian(3), [1.0, math.inf, 2.0], [1.0, math.inf, 1.5]),
    ],
)
def test_smoothers_on_hand_sequences(
    smoother: Smoother, raw: list[float], expected: list[float]
) -> None:
    got = smooth_series(smoother, raw)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert (math.isnan(g) and math.isnan(e)) or g == pytest.approx(e)


def test_tail_is_a_view() -> None:
    values = [0.0, 1.0, 2.0, 3.0]
    tail = Tail(values, 1, 3)
    assert (len(tail), tail[0], tail[-1], list(tail), tail[-5:]) == (
        2,
        1.0,
        2.0,
        [1.0, 2.0],
        [1.0, 2.0],
    )
    with pytest.raises(IndexError, match="Tail index out of range"):
        tail[2]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: EMA(0), "`alpha` must be a float in (0, 1], got 0"),
        (lambda: EMA(1.5), "`alpha` must be a float in (0, 1], got 1.5"),
        (lambda: MovingMean(0), "`window` must be an int >= 1, got 0"),
        (lambda: MovingMedian(2.5), "`window` must be an int >= 1, got 2.5"),
    ],
)
def test_smoother_errors(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build()  # type: ignore[operator]


def test_stopper_rejects_a_non_callable_smoother() -> None:
    with pytest.raises(TypeError, match=r"`smoothing` must be a Smoother or None, got 0.3"):
        Stopper(smoothing=0.3)  # type: ignore[arg-type]


# ema=0.5, patience=2 on raw [1.0, 0.5, 0.9, 0.4, 0.45, 0.6, 0.7]:
# smoothed    1.0, 0.75, 0.825, 0.6125, 0.53125, 0.565625, 0.6328125
# improved    T    T     F      T       T        F         F
# wait        0    0     1      0       0        1         2 -> stop at 7
# best (smoothed) step 5; kept (raw best, 0.4) step 4.
RAW = [1.0, 0.5, 0.9, 0.4, 0.45, 0.6, 0.7]


def test_patience_runs_on_smoothed_values_and_kept_follows_raw() -> None:
    stopper = Stopper(patience=2, smoothing=EMA(0.5))
    decisions = [stopper.step(v) for v in RAW]
    assert [d.value for d in decisions] == RAW  # Decision.value stays raw
    assert stopper.history.values == RAW  # history stays raw
    assert stopper.rules_history.values == pytest.approx(
        [1.0, 0.75, 0.825, 0.6125, 0.53125, 0.565625, 0.6328125]
    )
    assert [d.improved for d in decisions] == [True, True, False, True, True, False, False]
    assert [d.wait for d in decisions] == [0, 0, 1, 0, 0, 1, 2]
    assert [d.should_stop for d in decisions] == [False] * 6 + [True]
    assert (stopper.best_step, stopper.best_value) == (5, 0.53125)
    assert (stopper.kept_step, stopper.kept_value) == (4, 0.4)


def test_unsmoothed_kept_is_best() -> None:
    stopper = Stopper(patience=2, min_delta=0.1)
    for value in RAW:
        stopper.step(value)
    assert (stopper.kept_step, stopper.kept_value) == (stopper.best_step, stopper.best_value)


def test_kept_uses_the_same_delta_and_baseline_rule() -> None:
    # raw 0.45 at step 5 beats 0.4? no. min_delta 0.2: raw kept moves 1.0 -> 0.5 (step 2)
    # only (0.4 is not 0.2 below 0.5).
    stopper = Stopper(patience=None, smoothing=MovingMedian(3), min_delta=0.2)
    for value in RAW:
        stopper.step(value)
    assert stopper.kept_step == 2
    stopper = Stopper(patience=None, smoothing=EMA(0.5), baseline=0.42)
    for value in RAW:
        stopper.step(value)
    assert stopper.kept_step == 4  # only 0.4 beats the baseline


def test_smoothing_skips_warm_up() -> None:
    # Warm-up values 9, 9 pass through; the EMA starts at the first counted value:
    # 1.0, then 0.5 * 2 + 0.5 * 1 = 1.5.
    stopper = Stopper(patience=1, smoothing=EMA(0.5), start_from_epoch=2)
    decisions = [stopper.step(v) for v in [9.0, 9.0, 1.0, 2.0]]
    assert stopper.rules_history.values == [9.0, 9.0, 1.0, 1.5]
    assert [d.should_stop for d in decisions] == [False, False, False, True]
    assert stopper.kept_step == 3


def test_non_finite_raw_value_still_acts() -> None:
    stopper = Stopper(patience=3, smoothing=MovingMean(3))
    stopper.step(1.0)
    assert stopper.step(NAN).reason == "non_finite"
    counting = Stopper(patience=3, smoothing=MovingMean(3), on_nonfinite="count")
    decisions = [counting.step(v) for v in [1.0, NAN, 0.5]]
    assert [d.wait for d in decisions] == [0, 1, 0]  # mean of 1.0 and 0.5 = 0.75 improves
    assert counting.kept_step == 3


def test_thresholds_read_raw_values() -> None:
    # EMA would never reach 0.1 in two steps, the raw value does.
    stopper = Stopper(patience=5, smoothing=EMA(0.1), stopping_threshold=0.1)
    stopper.step(1.0)
    assert stopper.step(0.05).reason == "stopping_threshold"


def test_criteria_read_smoothed_values() -> None:
    # raw [1.0, 0.5, 0.6]: GL on raw = 20%; median(3) gives [1.0, 0.75, 0.6]: no GL.
    raw_only = Stopper(patience=None, criteria=[GL(5)])
    smoothed = Stopper(patience=None, criteria=[GL(5)], smoothing=MovingMedian(3))
    assert [raw_only.step(v).should_stop for v in [1.0, 0.5, 0.6]] == [False, False, True]
    assert not any(smoothed.step(v).should_stop for v in [1.0, 0.5, 0.6])


def test_policy_spec_builds_smoothing() -> None:
    stopper = Stopper.from_policy("ema=0.5,patience=2")
    assert [stopper.step(v).should_stop for v in RAW][-1]
    assert stopper.kept_step == 4


# -- resume: any split point gives the uninterrupted trajectory ----------------------------

SPECS = [
    "ema=0.4,patience=3",
    "median=3,patience=2,any(gl=5,up=1),strip=2",
    "mean=2,patience=4,plateau=4,start_from_epoch=2",
    "ema=0.3,patience=3,min_lr=0.001,lr_restart=true",
]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(SPECS),
    st.lists(st.one_of(st.floats(0.1, 10.0), st.just(NAN)), min_size=1, max_size=25),
    st.data(),
)
def test_state_dict_resume_is_identical(
    spec: str, values: list[float], data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(values)))
    lrs = [0.1 * 0.1 ** (i // 6) for i in range(len(values))]
    policy = parse_policy(spec + ",on_nonfinite=count")
    whole = policy.build()
    expected = [whole.step(v, lr=lr, train_loss=v) for v, lr in zip(values, lrs, strict=True)]
    first = policy.build()
    got = [
        first.step(v, lr=lr, train_loss=v)
        for v, lr in zip(values[:split], lrs[:split], strict=True)
    ]
    resumed = policy.build()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert resumed.kept_step == first.kept_step
    got += [
        resumed.step(v, lr=lr, train_loss=v)
        for v, lr in zip(values[split:], lrs[split:], strict=True)
    ]
    assert got == expected
    assert (resumed.kept_step, resumed.best_step, resumed.wait) == (
        whole.kept_step,
        whole.best_step,
        whole.wait,
    )


# -- EarlyStopping keeps the weights of the best raw value ---------------------------------


def test_early_stopping_restores_the_raw_best_with_smoothing() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(1, 1, bias=False)
    early_stopping = EarlyStopping(
        patience=2, path=None, smoothing=EMA(0.5), restore_best_weights=True, trace_func=None
    )
    for epoch, value in enumerate(RAW, start=1):
        with torch.no_grad():
            model.weight.fill_(float(epoch))  # sentinel: the weight is the epoch
        if early_stopping(value, model):
            break
    assert early_stopping.stopped_epoch == 7
    assert early_stopping.best_epoch == 4
    assert early_stopping.best_value == 0.4
    assert float(model.weight.detach()) == 4.0  # the raw best, not the smoothed best (5)
