"""Criteria on hand-computed sequences, composition, and scheduler awareness."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop import (
    GL,
    PQ,
    UP,
    AdaptivePatience,
    Criterion,
    EarlyStopping,
    History,
    Mode,
    Plateau,
    SchedulerAware,
    Stopper,
    all_of,
    any_of,
    composite,
    parse_policy,
)
from earlystop._rules.criteria import student_t_quantile, student_t_sf

NAN = math.nan


def stop_step(
    criterion: Criterion,
    values: Sequence[float],
    *,
    mode: str = "min",
    start_from_epoch: int = 0,
    **metrics: Sequence[float],
) -> int | None:
    """Feed a criterion-only stopper; the 1-based step it stops at, ``None`` if never."""
    stopper = Stopper(
        mode=mode,
        patience=None,
        criteria=[criterion],
        start_from_epoch=start_from_epoch,
        on_nonfinite="count",
    )
    for index, value in enumerate(values):
        extra = {name: series[index] for name, series in metrics.items()}
        if stopper.step(value, **extra).should_stop:
            return index + 1
    return None


# -- GL_alpha: GL(t) = 100 * (E_va(t) / E_opt(t) - 1) -----------------------------------

GL_VALUES = [1.0, 0.8, 0.82, 0.85, 0.83]
# E_opt = 0.8 from step 2 on. GL(3) = 100 * (0.82 / 0.8 - 1) = 2.5,
# GL(4) = 100 * (0.85 / 0.8 - 1) = 6.25, GL(5) = 100 * (0.83 / 0.8 - 1) = 3.75.


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [
        (2.0, 3),  # 2.5 > 2
        (2.5, 4),  # 2.5 is not > 2.5 (strict); 6.25 > 2.5
        (5.0, 4),  # 6.25 > 5
        (6.25, None),  # never strictly above
        (0.0, 3),  # any loss above the best
    ],
)
def test_gl_hand_computed(alpha: float, expected: int | None) -> None:
    assert stop_step(GL(alpha), GL_VALUES) == expected


def test_gl_reason_names_the_value() -> None:
    history = History(Mode.MIN, values=GL_VALUES[:4])
    assert GL(5)(history) == "gl=5 (GL 6.25% > 5%)"


def test_gl_ignores_warm_up() -> None:
    # Warm-up 0.5 and 0.6 are not E_opt: E_opt = 1.0, GL(5) = 100 * (1.06 / 1.0 - 1) = 6.
    values = [0.5, 0.6, 1.0, 1.04, 1.06]
    assert stop_step(GL(5), values, start_from_epoch=2) == 5
    assert stop_step(GL(5), values) == 2  # without warm-up: 100 * (0.6 / 0.5 - 1) = 20


def test_gl_non_finite_never_stops_nor_becomes_best() -> None:
    # nan at step 2 is skipped; E_opt stays 1.0, GL(3) = 100 * (1.1 / 1.0 - 1) = 10 > 5.
    assert stop_step(GL(5), [1.0, NAN, 1.1]) == 3
    assert stop_step(GL(5), [1.0, -math.inf, 1.01]) is None  # -inf is not E_opt


def test_gl_refuses_mode_max_and_non_positive_losses() -> None:
    with pytest.raises(
        ValueError, match=r"`GL` is defined for losses \(mode='min'\), got mode='max'"
    ):
        stop_step(GL(2), [0.5, 0.6], mode="max")
    with pytest.raises(ValueError, match=r"`GL` needs losses >= 0: the lowest .* is -0.5"):
        stop_step(GL(2), [1.0, -0.5])


def test_gl_with_a_zero_best_loss_is_the_limit() -> None:
    # E_opt = 0: GL = 0 while the loss stays 0, inf as soon as it rises.
    assert stop_step(GL(1000), [1.0, 0.0, 0.0, 1e-9]) == 4


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(0.01, 100.0), st.just(NAN), st.just(math.inf)), min_size=1, max_size=40
    ),
    st.integers(0, 5),
)
def test_gl_incremental_cache_equals_the_definition(values: list[float], start: int) -> None:
    cached = GL(3.0)
    history = History(Mode.MIN, start_from=start)
    for value in values:
        history.append(value, {})
        counted = [v for v in history.values[start:] if math.isfinite(v)]
        expected = None
        if len(history) > start and math.isfinite(value) and counted:
            gl = 100.0 * (value / min(counted) - 1.0)
            expected = gl > 3.0
        got = cached(history)
        assert (got is not None) == bool(expected)
        assert GL(3.0)(history) == got  # a fresh criterion recomputes from scratch


def test_gl_cache_follows_a_replaced_history() -> None:
    criterion = GL(10)
    assert criterion(History(Mode.MIN, values=[0.5, 0.52])) is None
    # A new history with a higher minimum must not reuse the old minimum 0.5.
    assert criterion(History(Mode.MIN, values=[1.0, 1.05])) is None


# -- PQ_alpha: P_k(t) = 1000 * (sum(strip) / (k * min(strip)) - 1), PQ = GL / P_k ------------

PQ_VAL = [1.0, 0.9, 0.8, 0.75, 0.7, 0.72, 0.74, 0.73, 0.76, 0.77]
PQ_TRAIN = [1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.43, 0.425, 0.42, 0.418]
# Strip ends (k=5): t=5: GL = 0 (0.7 is the best), PQ = 0.
# t=10: GL = 100 * (0.77 / 0.7 - 1) = 10.0; strip [0.44, 0.43, 0.425, 0.42, 0.418]:
#   sum 2.133, min 0.418, P_5 = 1000 * (2.133 / 2.09 - 1) = 20.574, PQ = 0.486.
# Checked every step instead, t=9 would give GL 8.571, P_5 = 1000 * (2.165 / 2.1 - 1) =
#   30.95, PQ = 0.277: PQ_0.1 stops at 10, not 9, because only strip ends count.


@pytest.mark.parametrize(
    ("alpha", "strip", "expected"),
    [
        (0.1, 5, 10),
        (0.4, 5, 10),
        (0.5, 5, None),  # 0.486 <= 0.5
        (0.1, 1, 6),  # P_1 = 0 always: any GL > 0 stops (GL(6) = 2.86)
    ],
)
def test_pq_hand_computed(alpha: float, strip: int, expected: int | None) -> None:
    assert stop_step(PQ(alpha, strip=strip), PQ_VAL, train_loss=PQ_TRAIN) == expected


def test_pq_reason_and_strip_quotient() -> None:
    history = History(Mode.MIN, values=PQ_VAL, metrics={"train_loss": PQ_TRAIN})
    assert PQ(0.4)(history) == "pq=0.4 (GL/P 0.486 > 0.4)"


def test_pq_needs_train_loss_and_positive_losses() -> None:
    with pytest.raises(KeyError, match=r"no series named 'train_loss'; recorded series: value"):
        stop_step(PQ(0.5, strip=2), [1.0, 1.1])
    with pytest.raises(
        ValueError, match=r"`PQ` needs training losses >= 0 in `train_loss`, got -1.0"
    ):
        stop_step(PQ(0.5, strip=2), [1.0, 1.1], train_loss=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"`PQ` is defined for losses"):
        stop_step(PQ(0.5, strip=2), [1.0, 1.1], mode="max", train_loss=[1.0, 1.0])


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ([1.0, 1.0, 0.0, 0.0], 4),  # last strip all zero: P = 0 and GL 10% > 0: stop
        ([1.0, 1.0, 0.5, 0.0], None),  # min 0 with sum > 0: P = inf, PQ = 0
    ],
)
def test_pq_with_zero_training_loss_is_the_limit(train: list[float], expected: int | None) -> None:
    assert stop_step(PQ(0.5, strip=2), [1.0, 1.0, 1.0, 1.1], train_loss=train) == expected


def test_pq_skips_a_strip_with_non_finite_training_loss() -> None:
    train = [*PQ_TRAIN[:7], NAN, *PQ_TRAIN[8:]]
    assert stop_step(PQ(0.1), PQ_VAL, train_loss=train) is None


def test_pq_custom_train_key_and_warm_up() -> None:
    # With 5 warm-up evaluations the strips end at steps 10 and 15.
    values = [9.0] * 5 + PQ_VAL
    train = [9.0] * 5 + PQ_TRAIN
    assert stop_step(PQ(0.1, train_key="tl"), values, start_from_epoch=5, tl=train) == 15


# -- UP_s: worse at the end of s successive strips of length k --------------------------

UP_VALUES = [1.0, 0.8, 0.7, 0.75, 0.74, 0.78, 0.76, 0.79]
# Strip ends with k=2 (steps 2, 4, 6, 8): E = 0.8, 0.75, 0.78, 0.79.
# UP_1: step 4: 0.75 > 0.8? no; step 6: 0.78 > 0.75 yes -> 6.
# UP_2: step 6: 0.78 > 0.75 but 0.75 > 0.8 no; step 8: 0.79 > 0.78 and 0.78 > 0.75 -> 8.
# UP_3: step 8 needs 4 strip ends with 3 rises: only 2 -> never.


@pytest.mark.parametrize(
    ("s", "strip", "expected"),
    [
        (1, 2, 6),
        (2, 2, 8),
        (3, 2, None),
        (1, 1, 4),  # every step: 0.75 > 0.7 at step 4
        (2, 1, None),  # 0.75 > 0.7, 0.78 > 0.74 and 0.79 > 0.76, but never twice in a row
        (1, 4, 8),  # strip ends 4 and 8: 0.79 > 0.75
    ],
)
def test_up_hand_computed(s: int, strip: int, expected: int | None) -> None:
    assert stop_step(UP(s, strip=strip), UP_VALUES) == expected


def test_up_mode_max_is_mode_min_on_negated_values() -> None:
    negated = [-v for v in UP_VALUES]
    for s, strip in [(1, 2), (2, 2), (1, 1)]:
        assert stop_step(UP(s, strip=strip), negated, mode="max") == stop_step(
            UP(s, strip=strip), UP_VALUES
        )


def test_up_non_finite_breaks_the_run() -> None:
    values = [*UP_VALUES[:5], NAN, *UP_VALUES[6:]]  # strip end at step 6 is nan
    assert stop_step(UP(1, strip=2), values) is None
    assert stop_step(UP(1, strip=2), [*values[:7], 0.7, 0.9, 0.95]) == 10  # 0.95 > 0.7


def test_up_ignores_warm_up() -> None:
    # 0.1 is warm-up; strip ends (k=2) at steps 3 and 5: 0.8, 0.9 -> UP_1 stops at 5.
    assert stop_step(UP(1, strip=2), [0.1, 1.0, 0.8, 0.85, 0.9], start_from_epoch=1) == 5


# -- Plateau: one-sided t test on the slope of the last window ---------------------------


def test_plateau_hand_computed() -> None:
    # [1.0, 1.1, 0.9, 1.0]: slope -0.02, residuals -0.03, 0.09, -0.09, 0.03 (SSR 0.018),
    # stderr sqrt(0.018 / 2 / 5) = 0.0424, t = -0.471 > -t(0.95, 2) = -2.92: stop.
    history = History(Mode.MIN, values=[1.0, 1.1, 0.9, 1.0])
    assert Plateau(4)(history) == "plateau=4 (slope t=-0.471 > -2.92 at 95%)"
    # [4.0, 3.1, 1.9, 1.0]: slope -1.01, residuals 0.015, 0.125, -0.065, -0.075 (SSR 0.0285),
    # stderr 0.0534, t = -18.9 < -2.92: still improving.
    assert Plateau(4)(History(Mode.MIN, values=[4.0, 3.1, 1.9, 1.0])) is None


@pytest.mark.parametrize(
    ("values", "window", "expected"),
    [
        ([10.0 - i for i in range(20)], 5, None),  # exact improving line: t = -inf
        ([1.0] * 10, 5, 5),  # exactly flat: t = 0
        ([1.0 + 0.1 * i for i in range(10)], 3, 3),  # getting worse
        ([5.0, 4.0, NAN, NAN, NAN, 3.0], 5, None),  # fewer than 3 finite values in window
        ([5.0, 4.0, 3.0, NAN, 2.0, 1.0], 5, None),  # nan skipped, still a line
    ],
)
def test_plateau_table(values: list[float], window: int, expected: int | None) -> None:
    assert stop_step(Plateau(window), values) == expected


def test_plateau_mode_max_is_mode_min_on_negated_values() -> None:
    values = [3.0, 2.5, 2.6, 2.2, 2.3, 2.25, 2.3, 2.28, 2.31, 2.3]
    assert stop_step(Plateau(5), values) == stop_step(Plateau(5), [-v for v in values], mode="max")
    # Step 5, window [3.0, 2.5, 2.6, 2.2, 2.3]: slope -0.17, SSR 0.099, stderr 0.0574,
    # t = -2.96 < -t(0.95, 3) = -2.353: improving. Step 6, [2.5, 2.6, 2.2, 2.3, 2.25]:
    # slope -0.08, SSR 0.054, stderr 0.0424, t = -1.89 > -2.353: plateau.
    assert stop_step(Plateau(5), values) == 6


@pytest.mark.parametrize(("probability", "df"), [(0.9, 1), (0.95, 2), (0.95, 8), (0.99, 30)])
def test_student_t_quantile_matches_scipy(probability: float, df: int) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = float(scipy_stats.t.ppf(probability, df))
    assert student_t_quantile(probability, df) == pytest.approx(expected, rel=1e-9)
    assert student_t_sf(expected, df) == pytest.approx(1 - probability, rel=1e-9)


# -- AdaptivePatience: wait max(min_patience, ceil(fraction * best_step)) --------------------

ADAPTIVE_VALUES = [1.0, 0.9, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89]
# Best at step 3 (0.8); the waits after it are 1, 2, 3, ... at steps 4, 5, 6, ...
RAMP = [10.0 - 0.1 * i for i in range(20)] + [9.0] * 10  # best at step 20 (8.1), then flat
TEN = [10.0 - i for i in range(10)] + [9.5] * 5  # best at step 10 (1.0)


@pytest.mark.parametrize(
    ("criterion", "values", "expected"),
    [
        (AdaptivePatience(0.5, min_patience=2), ADAPTIVE_VALUES, 5),  # max(2, ceil(1.5)) = 2
        (AdaptivePatience(1.0, min_patience=2), ADAPTIVE_VALUES, 6),  # max(2, 3) = 3
        (AdaptivePatience(1.0, min_patience=4), ADAPTIVE_VALUES, 7),  # the floor: 4
        (AdaptivePatience(2.0), ADAPTIVE_VALUES, None),  # 6 evaluations after step 3: never
        (AdaptivePatience(0.3), RAMP, 26),  # ceil(0.3 * 20) = 6 after step 20
        (AdaptivePatience(0.25), RAMP, 25),  # 0.25 * 20 = 5
        (AdaptivePatience(0.3, min_patience=8), RAMP, 28),  # the floor wins over 6
        (AdaptivePatience(0.3), TEN, 13),  # 0.3 * 10 is 3.0000000000000004 in floats: 3
        (AdaptivePatience(0.0, min_patience=3), [1.0, NAN, NAN, NAN], 4),  # nan never improves
        (AdaptivePatience(0.0, min_patience=3), [1.0, NAN, 0.9, NAN, NAN, NAN], 6),
        (AdaptivePatience(0.0, min_patience=3, min_delta=0.05), [1.0, 0.97, 0.96, 0.99], 4),
        (AdaptivePatience(0.0, min_patience=3), [1.0, 0.97, 0.96, 0.99, 0.98], None),
        (AdaptivePatience(0.0, min_patience=2, min_rel_delta=0.1), [10.0, 9.5, 9.1, 8.9], 3),
        # a baseline never beaten: the wait runs from the start, as the stopper's does
        (AdaptivePatience(0.5, min_patience=2, baseline=0.5), [1.0, 0.9, 0.8], 2),
    ],
)
def test_adaptive_patience_hand_computed(
    criterion: AdaptivePatience, values: list[float], expected: int | None
) -> None:
    assert stop_step(criterion, values) == expected


def test_adaptive_patience_reason_names_the_rule() -> None:
    history = History(Mode.MIN, values=RAMP[:26])
    assert AdaptivePatience(0.3, min_patience=4)(history) == (
        "adaptive=0.3 (no improvement for 6 evaluations >= max(4, ceil(0.3 * 20)); best at 20)"
    )
    never = History(Mode.MIN, values=[1.0, 0.9])
    assert AdaptivePatience(0.5, min_patience=2, baseline=0.5)(never) == (
        "adaptive=0.5 (no improvement for 2 evaluations >= max(2, ceil(0.5 * 0)); "
        "no improvement yet)"
    )
    assert AdaptivePatience(0.5).spec() == "adaptive=0.5"


def test_adaptive_patience_ignores_warm_up() -> None:
    # Warm-up 0.1 and 0.2 are never best: best at step 3 (1.0), ceil(0.5 * 3) = 2 -> step 5.
    values = [0.1, 0.2, 1.0, 1.1, 1.2, 1.3]
    assert stop_step(AdaptivePatience(0.5), values, start_from_epoch=2) == 5
    assert stop_step(AdaptivePatience(0.5), values) == 2  # best at 1: max(1, ceil(0.5)) = 1
    # before any counted value it never stops; the count runs from the last warm-up one
    assert AdaptivePatience(0.0)(History(Mode.MIN, values=[1.0, 2.0], start_from=2)) is None
    warm_nan = History(Mode.MIN, values=[1.0, 2.0, NAN, NAN], start_from=2)
    assert AdaptivePatience(0.5, min_patience=2)(warm_nan) == (
        "adaptive=0.5 (no improvement for 2 evaluations >= max(2, ceil(0.5 * 2)); "
        "no improvement yet)"
    )


def test_adaptive_patience_mode_max_is_mode_min_on_negated_values() -> None:
    for criterion in (AdaptivePatience(0.5, min_patience=2), AdaptivePatience(0.3)):
        for values in (ADAPTIVE_VALUES, RAMP, TEN):
            negated = [-v for v in values]
            assert stop_step(criterion, negated, mode="max") == stop_step(criterion, values)
    assert stop_step(AdaptivePatience(1.0, min_patience=2), [-v for v in ADAPTIVE_VALUES]) == 3


def test_adaptive_patience_required_wait() -> None:
    criterion = AdaptivePatience(0.3, min_patience=5)
    steps = (1, 5, 10, 16, 17, 20, 40, 100)  # the table of docs/stopping.md
    assert [criterion.required(step) for step in steps] == [5, 5, 5, 5, 6, 6, 12, 30]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(-5.0, 5.0), st.just(NAN), st.just(-math.inf)), min_size=1, max_size=40
    ),
    st.integers(0, 4),
    st.sampled_from([0.0, 0.05, 0.5]),
    st.sampled_from([0.0, 0.01, 0.2]),
    st.one_of(st.none(), st.floats(-5.0, 5.0)),
    st.sampled_from(["min", "max"]),
)
def test_adaptive_patience_uses_the_stoppers_improvement_rule(
    values: list[float],
    start: int,
    min_delta: float,
    min_rel_delta: float,
    baseline: float | None,
    mode: str,
) -> None:
    """Its best step is the stopper's at every step (cached or fresh), and with
    ``fraction=0`` it stops exactly where ``patience=min_patience`` does."""
    rule = {"min_delta": min_delta, "min_rel_delta": min_rel_delta, "baseline": baseline}
    cached = AdaptivePatience(0.0, min_patience=3, **rule)
    core = Stopper(mode=mode, patience=3, start_from_epoch=start, on_nonfinite="count", **rule)
    for value in values:
        decision = core.step(value)
        history = core.history
        assert cached.best_step(history) == core.best_step
        assert AdaptivePatience(0.0, min_patience=3, **rule).best_step(history) == core.best_step
        if len(history) > start:
            assert (cached(history) is not None) == decision.should_stop


def test_adaptive_patience_cache_follows_a_replaced_history() -> None:
    criterion = AdaptivePatience(0.0, min_patience=2)
    assert criterion(History(Mode.MIN, values=[0.5, 0.6])) is None
    assert criterion(History(Mode.MIN, values=[0.5, 0.6, 0.7])) is not None
    assert criterion(History(Mode.MIN, values=[0.9, 0.8, 0.7])) is None  # not the old best
    assert criterion.best_step(History(Mode.MIN, values=[0.9, 0.8, 0.7], start_from=3)) is None


# -- construction errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: GL(-1), "`alpha` must be a finite float >= 0, got -1"),
        (lambda: GL(math.inf), "`alpha` must be a finite float >= 0, got inf"),
        (lambda: PQ(0.5, strip=0), "`strip` must be an int >= 1, got 0"),
        (lambda: UP(0), "`s` must be an int >= 1, got 0"),
        (lambda: UP(True), "`s` must be an int >= 1, got True"),
        (lambda: Plateau(2), "`window` must be an int >= 3, got 2"),
        (lambda: Plateau(5, confidence=1.0), "`confidence` must be a float in (0.5, 1), got 1.0"),
        (lambda: any_of(), "`any_of` needs at least one criterion, got none"),
        (lambda: all_of(), "`all_of` needs at least one criterion, got none"),
        (lambda: SchedulerAware(factor=1.0), "`factor` must be a float in [0, 1), got 1.0"),
        (lambda: SchedulerAware(min_lr=-1), "`min_lr` must be a finite float >= 0, got -1"),
        (lambda: SchedulerAware(hold=False), "`hold` and `restart` are both False"),
        (lambda: composite(len), "`names` must name at least one metric, got none"),
        (lambda: AdaptivePatience(-0.1), "`fraction` must be a finite float >= 0, got -0.1"),
        (
            lambda: AdaptivePatience(0.3, min_patience=0),
            "`min_patience` must be an int >= 1, got 0",
        ),
        (
            lambda: AdaptivePatience(0.3, min_delta=-1.0),
            "`min_delta` must be a finite float >= 0, got -1.0",
        ),
        (
            lambda: AdaptivePatience(0.3, baseline=math.nan),
            "`baseline` must be a finite float or None, got nan",
        ),
    ],
)
def test_construction_errors(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build()  # type: ignore[operator]


def test_any_of_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match=r"`any_of` argument 1 must be callable .*got int"):
        any_of(GL(1), 3)  # type: ignore[arg-type]


# -- composition -----------------------------------------------------------------------------


def test_any_of_and_all_of() -> None:
    values = UP_VALUES  # GL_2 stops at 4 (0.75 / 0.7 = 7.1%), UP_1 (k=2) at 6
    assert stop_step(GL(2), values) == 4
    assert stop_step(any_of(UP(1, strip=2), GL(2)), values) == 4
    assert stop_step(all_of(UP(1, strip=2), GL(2)), values) == 6
    assert stop_step(all_of(UP(2, strip=2), GL(20)), values) is None
    history = History(Mode.MIN, values=values[:6])
    assert any_of(UP(1, strip=2), GL(2))(history) == "up=1 (worse at 1 successive strip ends)"
    assert all_of(GL(2), UP(1, strip=2))(history) == (
        "gl=2 (GL 11.4% > 2%) & up=1 (worse at 1 successive strip ends)"
    )


def test_composition_of_user_criteria() -> None:
    calls: list[int] = []

    def spy(history: History) -> str | None:
        calls.append(len(history))
        return None

    assert stop_step(any_of(GL(0), spy), [1.0, 2.0]) == 2
    assert calls == [1, 2]  # no short circuit: every member sees every evaluation
    assert any_of(GL(0), spy).spec() == "any(gl=0,function)"


def test_composite_monitored_value() -> None:
    score = composite(lambda val_loss, val_acc: val_loss - 0.5 * val_acc, "val_loss", "val_acc")
    metrics = {"val_loss": 0.5, "val_acc": 0.8, "lr": 0.1}
    assert score(metrics) == pytest.approx(0.1)
    with pytest.raises(KeyError, match=r"composite value needs metric 'val_acc'; given: val_loss"):
        score(val_loss=0.5)
    stopper = Stopper(patience=1)
    for loss, acc in [(0.5, 0.5), (0.5, 0.7), (0.6, 0.6)]:
        decision = stopper.step(score(val_loss=loss, val_acc=acc), val_loss=loss, val_acc=acc)
    assert (decision.should_stop, stopper.best_step) == (True, 2)  # 0.25, 0.15, 0.3
    assert score.series(stopper.history) == pytest.approx([0.25, 0.15, 0.3])


# -- scheduler awareness with a real ReduceLROnPlateau --------------------------------------


def run_with_scheduler(aware: SchedulerAware | None, patience: int, evaluations: int) -> list[int]:
    """A plateaued loss (1.0 forever) under ReduceLROnPlateau(patience=1, factor=0.1,
    min_lr=1e-3); returns the steps at which the stopper says stop."""
    torch = pytest.importorskip("torch")
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, patience=1, factor=0.1, min_lr=1e-3
    )
    if aware is not None:
        aware = SchedulerAware.from_scheduler(scheduler, hold=aware.hold, restart=aware.restart)
    stopper = Stopper(patience=patience, scheduler=aware)
    stops = []
    for _ in range(evaluations):
        lr = optimizer.param_groups[0]["lr"]  # the rate that produced this evaluation
        if stopper.step(1.0, lr=lr).should_stop:
            stops.append(stopper.step_count)
        scheduler.step(1.0)
    return stops


def test_hold_waits_until_the_scheduler_has_no_reduction_left() -> None:
    # The scheduler reduces after 2 bad epochs: rates at evaluations 1-7 are
    # 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001 (min_lr reached at 6, no further reduction).
    # Patience 2 alone stops at 3; held, it can stop first at 6 (wait 5 >= 2).
    assert run_with_scheduler(None, patience=2, evaluations=8)[0] == 3
    assert run_with_scheduler(SchedulerAware(), patience=2, evaluations=8) == [6, 7, 8]


def test_restart_counts_patience_from_the_last_reduction() -> None:
    # patience 3: wait 1, 2 at steps 2-3; rate drops at 4 -> wait 1, 2 at 4-5;
    # drops at 6 -> wait 1, 2 at 6-7; wait 3 at 8: stop. Without restart: stop at 4.
    assert run_with_scheduler(None, patience=3, evaluations=10)[0] == 4
    restart = SchedulerAware(hold=False, restart=True)
    assert run_with_scheduler(restart, patience=3, evaluations=10)[0] == 8


def test_scheduler_awareness_errors() -> None:
    stopper = Stopper(patience=1, scheduler=SchedulerAware())
    with pytest.raises(KeyError, match=r"no series named 'lr'; recorded series: value"):
        stopper.step(1.0)
    stopper = Stopper(patience=1, scheduler=SchedulerAware())
    stopper.step(1.0, lr=0.1)
    with pytest.raises(
        ValueError, match=r"needs the `lr` metric at every evaluation, got nan at evaluation 2"
    ):
        stopper.step(1.1, other=1.0)
    with pytest.raises(TypeError, match=r"`scheduler` must be a ReduceLROnPlateau .* got int"):
        SchedulerAware.from_scheduler(3)
    with pytest.raises(TypeError, match=r"`scheduler` must be a SchedulerAware or None, got 'lr'"):
        Stopper(scheduler="lr")  # type: ignore[arg-type]


def test_hold_does_not_veto_non_finite_or_thresholds() -> None:
    held = SchedulerAware()
    stopper = Stopper(patience=1, scheduler=held, divergence_threshold=5.0)
    assert not stopper.step(1.0, lr=0.1).should_stop
    held_decision = stopper.step(2.0, lr=0.1)
    assert not held_decision.should_stop  # patience held
    assert held_decision.detail == (
        "no improvement (1 of 1); best 1; held: the learning rate can still be reduced"
    )
    assert stopper.step(NAN, lr=0.1).reason == "non_finite"
    stopper = Stopper(patience=1, scheduler=held, divergence_threshold=5.0)
    assert stopper.step(6.0, lr=0.1).reason == "divergence_threshold"


# -- properties over whole policies ---------------------------------------------------------

MIRRORED_SPECS = [
    "patience=3,up=1,strip=2",
    "ema=0.5,patience=2,plateau=4",
    "median=3,patience=none,any(up=2,plateau=5),strip=1",
    "mean=2,patience=4,all(up=1,plateau=3),strip=3",
    "ema=0.5,adaptive=0.5,min_patience=2",
    "patience=6,adaptive=0.3,min_patience=2,min_rel_delta=0.05",
]


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(MIRRORED_SPECS),
    st.lists(st.one_of(st.floats(-50.0, 50.0), st.just(NAN)), min_size=1, max_size=30),
)
def test_min_on_x_is_max_on_minus_x(spec: str, values: list[float]) -> None:
    policy = parse_policy(spec + ",on_nonfinite=count")
    low, high = policy.build(mode="min"), policy.build(mode="max")
    for value in values:
        a, b = low.step(value), high.step(-value)
        assert (a.should_stop, a.improved, a.wait, a.reason) == (
            b.should_stop,
            b.improved,
            b.wait,
            b.reason,
        )
    assert low.kept_step == high.kept_step


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(
        [
            "patience=1",
            "gl=0",
            "pq=0",
            "up=1,strip=1",
            "ema=0.2,patience=1",
            "median=4,patience=1",
            "adaptive=0",
            "ema=0.3,adaptive=0.3,start_from_epoch=2",
        ]
    ),
    st.lists(st.floats(0.001, 1.0), min_size=1, max_size=30, unique=True),
)
def test_a_strictly_improving_stream_never_stops(spec: str, steps: list[float]) -> None:
    stopper = parse_policy(spec).build()
    loss = 1000.0
    for step in steps:
        loss -= step
        assert not stopper.step(loss, train_loss=loss).should_stop


def test_composite_with_early_stopping_as_documented() -> None:
    score = composite(lambda loss, acc: loss - 0.5 * acc, "loss", "acc")
    early_stopping = EarlyStopping(patience=1, path=None, trace_func=None)
    for loss, acc in [(0.5, 0.5), (0.45, 0.8), (0.5, 0.7)]:
        metrics = {"loss": loss, "acc": acc}
        decision = early_stopping(score(metrics), None, **metrics)
    assert decision.should_stop
    assert early_stopping.best_epoch == 2
    assert early_stopping.stopper.history.metrics["acc"] == [0.5, 0.8, 0.7]


@pytest.mark.parametrize(
    "aware",
    [
        SchedulerAware(),
        SchedulerAware(min_lr=1e-3, factor=0.5, restart=True),
        SchedulerAware(hold=False, restart=True),
    ],
)
def test_scheduler_spec_parses_back(aware: SchedulerAware) -> None:
    assert parse_policy(f"patience=3,{aware.spec()}").scheduler() == aware


def test_early_stopping_with_scheduler_awareness_as_documented() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, patience=1, factor=0.1, min_lr=1e-3
    )
    early_stopping = EarlyStopping(
        patience=2, path=None, scheduler=SchedulerAware.from_scheduler(scheduler)
    )
    epochs = 0
    for _ in range(20):
        epochs += 1
        val_loss = 1.0  # plateaued: see test_hold_waits_until_the_scheduler_has_no_reduction_left
        if early_stopping(val_loss, model, lr=optimizer.param_groups[0]["lr"]):
            break
        scheduler.step(val_loss)
    assert epochs == early_stopping.stopped_epoch == 6
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("confidence", "slope", "low", "high"),
    [
        (0.95, 0.0, 0.93, 0.97),  # flat noise: stops with probability ~confidence
        (0.8, 0.0, 0.77, 0.83),
        (0.95, -0.05, 0.0, 0.03),  # a real downward trend (0.5 noise sds per step) goes on
    ],
)
def test_plateau_confidence_is_calibrated(
    confidence: float, slope: float, low: float, high: float
) -> None:
    rng = random.Random(0)
    trials = 2000
    criterion = Plateau(10, confidence=confidence)
    stops = sum(
        criterion(History(Mode.MIN, values=[1 + slope * i + rng.gauss(0, 0.1) for i in range(10)]))
        is not None
        for _ in range(trials)
    )
    assert low <= stops / trials <= high
