"""Trend, rising, noise-scaled delta and budget criteria: hand tables, references, SPECs."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop import (
    BudgetPatience,
    Criterion,
    EarlyStopping,
    History,
    Mode,
    NoiseDelta,
    Rising,
    Stopper,
    Trend,
    mann_kendall,
    parse_policy,
    theil_sen,
)
from earlystop._rules.noise import robust_noise

NAN = math.nan


def stop_step(criterion: Criterion, values: Sequence[float], **options: object) -> int | None:
    stopper = Stopper(patience=None, criteria=[criterion], on_nonfinite="count", **options)  # type: ignore[arg-type]
    for index, value in enumerate(values):
        if stopper.step(value).should_stop:
            return index + 1
    return None


# -- Mann-Kendall and Theil-Sen against scipy ----------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(-10, 10, allow_nan=False), st.sampled_from([0.0, 1.0, 2.0])),
        min_size=3,
        max_size=30,
    )
)
def test_mann_kendall_matches_scipy_kendalltau(values: list[float]) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    result = mann_kendall(values)
    if len(set(values)) == 1:
        assert (result.s, result.z) == (0, 0.0)
        return
    reference = scipy_stats.kendalltau(range(len(values)), values, method="asymptotic")
    two_sided = 2 * min(result.p_down(), result.p_up())
    assert two_sided == pytest.approx(reference.pvalue, rel=1e-6, abs=1e-12)
    assert math.copysign(1, result.s) == math.copysign(1, reference.statistic) or result.s == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=2, max_size=30))
def test_theil_sen_matches_scipy_theilslopes(values: list[float]) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    slope = scipy_stats.theilslopes(values, range(len(values))).slope
    assert theil_sen(values) == pytest.approx(slope, rel=1e-9, abs=1e-12)


def test_mann_kendall_hand_computed_with_ties() -> None:
    # pairs: 10 in all; (4.0, 4.0) is a tie: S = -9; var = (5*4*15 - 2*1*9) / 18 = 15.667
    result = mann_kendall([5.0, 4.0, 4.0, 2.0, 1.0])
    assert result.s == -9
    assert result.variance == pytest.approx(282 / 18)
    assert result.z == pytest.approx(-9 / math.sqrt(282 / 18))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mann_kendall([1.0]), r"`values` must hold at least 2 values, got 1"),
        (lambda: mann_kendall([1.0, NAN]), r"`values` must all be finite"),
        (lambda: theil_sen([]), r"`values` must hold at least 2 values, got 0"),
        (lambda: theil_sen([1.0, math.inf]), r"`values` must all be finite"),
        (lambda: Trend(3), r"`window` must be an int >= 4, got 3"),
        (lambda: Rising(True), r"`window` must be an int >= 4, got True"),
        (lambda: Trend(10, confidence=1.0), r"`confidence` must be a float in \(0.5, 1\), got 1.0"),
        (lambda: NoiseDelta(-1.0), r"`scale` must be a finite float >= 0, got -1.0"),
        (lambda: NoiseDelta(math.inf), r"`scale` must be a finite float >= 0, got inf"),
        (lambda: NoiseDelta(1.0, patience=0), r"`patience` must be an int >= 1, got 0"),
        (lambda: NoiseDelta(1.0, window=3), r"`window` must be an int >= 4, got 3"),
        (lambda: BudgetPatience(-0.1, 10), r"`fraction` must be a finite float >= 0, got -0.1"),
        (lambda: BudgetPatience(0.1, 0), r"`max_epochs` must be an int >= 1, got 0"),
        (lambda: BudgetPatience(0.1, 10, min_patience=0), r"`min_patience` must be an int >= 1"),
    ],
)
def test_construction_errors(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


# -- Trend and Rising ------------------------------------------------------------------------

FALLING = [1.0, 0.9, 0.95, 0.8, 0.85, 0.7, 0.75, 0.6, 0.65, 0.5]
FLAT = [0.6, 0.7, 0.6, 0.65, 0.62, 0.7, 0.6, 0.66, 0.61, 0.69]
CLIMB = [0.5, 0.52, 0.51, 0.55, 0.56, 0.58, 0.57, 0.6, 0.62, 0.61]


@pytest.mark.parametrize(
    ("criterion", "values", "expected"),
    [
        (Trend(6), FALLING, None),  # a noisy fall keeps going
        (Trend(6), FLAT, 6),  # the first full window is flat
        (Trend(6), [*FALLING, *[0.5] * 6], 13),  # 3 evaluations into the flat tail
        (Trend(4), [1.0, 0.9, 0.8, 0.7], None),  # S = -6, z = -2.04, p = 0.021 < 0.05
        (Rising(6), CLIMB, 6),
        (Rising(6), FLAT, None),
        (Rising(6), FALLING, None),
        (Rising(6, confidence=0.99), CLIMB, 6),  # S = 13, z = 2.44, p = 0.0073 < 0.01
        (Rising(6, confidence=0.99), [0.5, 0.52, 0.51, 0.5, 0.52, 0.51], None),
    ],
)
def test_trend_tables(criterion: Criterion, values: list[float], expected: int | None) -> None:
    assert stop_step(criterion, values) == expected


def test_trend_reason_and_mode_max_is_mode_min_negated() -> None:
    history = History(Mode.MIN, values=FLAT[:8])
    reason = Trend(8)(history)
    assert reason == "trend=8 (no downward trend in the last 8: Mann-Kendall z=0.514, p=0.7)"
    mirrored = Trend(8)(History(Mode.MAX, values=[-v for v in FLAT[:8]]))
    assert mirrored == reason.replace("downward", "upward")
    assert Rising(6)(History(Mode.MAX, values=[-v for v in CLIMB[:6]])) is not None


def test_trend_ignores_warm_up_and_non_finite_values() -> None:
    # the window counts evaluations; NaN in it is left out, under 4 finite values waits
    assert Trend(6)(History(Mode.MIN, values=FLAT[:6], start_from=1)) is None
    assert Trend(6)(History(Mode.MIN, values=[NAN, NAN, NAN, 0.6, 0.7, 0.6])) is None
    assert Trend(6)(History(Mode.MIN, values=[NAN, NAN, 0.6, 0.7, 0.6, 0.65])) is not None


# -- NoiseDelta ------------------------------------------------------------------------------


def test_robust_noise_is_the_gaussian_sigma_on_average() -> None:
    import random

    rng = random.Random(0)
    values = [rng.gauss(0.0, 0.2) for _ in range(4000)]
    assert robust_noise(values) == pytest.approx(0.2, rel=0.05)
    assert robust_noise([1.0, 2.0, 3.0]) == 0.0  # too few to say


@pytest.mark.parametrize(
    ("scale", "patience", "values", "expected"),
    [
        # noise 0.0524 on the first six values: 0.87 at 6 is not 0.0524 below 0.88
        (1.0, 3, [1.0, 0.9, 0.95, 0.88, 0.93, 0.87, 0.92], 7),
        (0.0, 3, [1.0, 0.9, 0.95, 0.88, 0.93, 0.87, 0.92], None),  # plain patience
        (1.0, 3, [1.0, 0.8, 0.6, 0.4, 0.2, 0.0, -0.2], None),  # real progress goes on
        (1.0, 2, [1.0, NAN, NAN, 0.5], 3),  # non-finite values never improve
    ],
)
def test_noise_delta_table(
    scale: float, patience: int, values: list[float], expected: int | None
) -> None:
    assert stop_step(NoiseDelta(scale, patience=patience, window=6), values) == expected


def test_noise_delta_mode_max_mirrors_and_cache_follows_a_new_history() -> None:
    values = [1.0, 0.9, 0.95, 0.88, 0.93, 0.87, 0.92]
    rule = NoiseDelta(1.0, patience=3, window=6)
    low = rule(History(Mode.MIN, values=values))
    high = rule(History(Mode.MAX, values=[-v for v in values]))  # another history: rescans
    assert low == high is not None
    assert rule(History(Mode.MIN, values=values[:4])) is None


# -- BudgetPatience and max_epochs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "budget", "min_patience", "wait"),
    [(0.05, 100, 1, 5), (0.05, 101, 1, 6), (0.1, 30, 5, 5), (0.3, 10, 1, 3), (0.0, 50, 2, 2)],
)
def test_budget_wait(fraction: float, budget: int, min_patience: int, wait: int) -> None:
    rule = BudgetPatience(fraction, max_epochs=budget, min_patience=min_patience)
    assert rule.wait == wait
    values = [1.0, 0.5] + [0.6] * 20
    assert stop_step(rule, values) == 2 + wait


def test_budget_needs_max_epochs_from_the_user() -> None:
    with pytest.raises(ValueError, match=re.escape("`budget=0.05` needs the budget: give")):
        Stopper.from_policy("budget=0.05")
    with pytest.raises(ValueError, match=re.escape("`budget=0.05` needs the budget")):
        EarlyStopping(policy="budget=0.05", path=None)
    stopper = Stopper.from_policy("budget=0.05", max_epochs=200)
    assert stopper.criteria == (BudgetPatience(0.05, max_epochs=200),)
    early = EarlyStopping(policy="budget=0.05,min_patience=3", path=None, max_epochs=40)
    assert early.max_epochs == 40
    assert early.stopper.criteria == (BudgetPatience(0.05, max_epochs=40, min_patience=3),)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_max_epochs_is_checked(bad: object) -> None:
    message = re.escape(f"`max_epochs` must be an int >= 1 or None, got {bad!r}")
    with pytest.raises(ValueError, match=message):
        Stopper.from_policy("patience=3", max_epochs=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        EarlyStopping(path=None, max_epochs=bad)  # type: ignore[arg-type]


# -- SPECs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "built"),
    [
        ("trend=15", (Trend(15),)),
        ("rising=10,confidence=0.99", (Rising(10, confidence=0.99),)),
        ("noise_delta=2,noise_patience=6,noise_window=12", (NoiseDelta(2.0, 6, 12),)),
        (
            "patience=20,all(trend=15,adaptive=0.1),min_patience=6",
            None,  # a group: checked by its text below
        ),
    ],
)
def test_specs_build_the_criteria(spec: str, built: tuple[Criterion, ...] | None) -> None:
    policy = parse_policy(spec)
    assert str(parse_policy(str(policy))) == str(policy)
    if built is not None:
        assert tuple(policy.build().criteria) == built


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("trend=3", "policy criteria: `window` must be an int >= 4, got 3"),
        ("trend=4.5", "policy option 'trend' must be an int, got '4.5'"),
        ("noise_patience=3", "`noise_patience` applies to noise_delta, and the policy has none"),
        ("noise_delta=1,noise_window=2", "policy criteria: `window` must be an int >= 4, got 2"),
        ("budget=-1", "policy criteria: `fraction` must be a finite float >= 0, got -1.0"),
        ("rising=8,confidence=2", "`confidence` must be a float in (0.5, 1), got 2.0"),
    ],
)
def test_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_policy(spec)


SPECS = [
    "patience=20,all(trend=8,adaptive=0.1),min_patience=3",
    "patience=12,noise_delta=1,noise_patience=4,noise_window=6",
    "patience=10,rising=6",
    "patience=none,budget=0.1,min_patience=2",
]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(SPECS),
    st.lists(st.one_of(st.floats(-50.0, 50.0), st.just(NAN)), min_size=1, max_size=40),
)
def test_min_on_x_is_max_on_minus_x(spec: str, values: list[float]) -> None:
    policy = parse_policy(spec + ",on_nonfinite=count")
    low, high = policy.build("min", max_epochs=40), policy.build("max", max_epochs=40)
    for value in values:
        a, b = low.step(value), high.step(-value)
        assert (a.should_stop, a.improved, a.wait) == (b.should_stop, b.improved, b.wait)
        assert (a.reason or "").replace("upward", "downward") == (b.reason or "").replace(
            "upward", "downward"
        )


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(SPECS),
    st.lists(st.floats(0.0, 2.0), min_size=2, max_size=40),
    st.integers(1, 39),
)
def test_resume_is_replay(spec: str, values: list[float], cut: int) -> None:
    # criteria are functions of the history: a stopper restored mid-run decides the same
    cut = min(cut, len(values) - 1)
    policy = parse_policy(spec)
    whole = policy.build(max_epochs=40)
    expected = [whole.step(v).should_stop for v in values]
    first = policy.build(max_epochs=40)
    got = [first.step(v).should_stop for v in values[:cut]]
    second = policy.build(max_epochs=40)
    second.load_state_dict(first.state_dict())
    got += [second.step(v).should_stop for v in values[cut:]]
    assert got == expected
