"""SPEC parser: canonical round-trip, errors that name the bad token, and what it builds."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop import (
    AUTO_SPEC,
    EMA,
    GL,
    PQ,
    UP,
    AdaptivePatience,
    AllOf,
    AnyOf,
    EarlyStopping,
    MovingMedian,
    Plateau,
    Policy,
    SchedulerAware,
    Stopper,
    parse_policy,
)
from earlystop._rules.policy import Group, Rule


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("patience=7", "patience=7"),
        ("patience=5,min_delta=0.001", "patience=5,min_delta=0.001"),
        (" patience = 5 , ema = 0.30 ", "ema=0.3,patience=5"),
        ("ema=0.3,patience=5", "ema=0.3,patience=5"),
        ("gl=2", "gl=2"),
        ("gl=2.5", "gl=2.5"),
        ("pq=0.5", "pq=0.5"),
        ("up=3", "up=3"),
        ("median=5,patience=10", "median=5,patience=10"),
        ("mean=4", "mean=4,patience=7"),
        ("plateau=10", "plateau=10"),
        ("plateau=10,confidence=0.9", "plateau=10,confidence=0.9"),
        ("any(gl=2,up=3)", "any(gl=2,up=3)"),
        ("all( gl=1 , any(up=2,plateau=5) )", "all(gl=1,any(up=2,plateau=5))"),
        ("up=2,strip=3,patience=20", "patience=20,up=2,strip=3"),
        ("patience=none", "patience=none"),
        ("patience=none,gl=2", "gl=2"),
        ("gl=2,patience=10", "patience=10,gl=2"),
        ("on_nonfinite=count,patience=3", "patience=3,on_nonfinite=count"),
        (
            "min_lr=1e-6,lr_factor=0.5,lr_restart=yes",
            "patience=7,min_lr=1e-06,lr_factor=0.5,lr_restart=true",
        ),
        ("lr_restart=true,patience=4", "patience=4,lr_restart=true"),
        ("baseline=-0.5,start_from_epoch=3", "patience=7,baseline=-0.5,start_from_epoch=3"),
        (
            "stopping_threshold=0.01,divergence_threshold=10",
            "patience=7,stopping_threshold=0.01,divergence_threshold=10",
        ),
        ("min_rel_delta=0.01", "patience=7,min_rel_delta=0.01"),
        ("adaptive=0.3", "adaptive=0.3"),
        ("adaptive=0.3,min_patience=1", "adaptive=0.3"),
        (
            "min_patience=5,start_from_epoch=5,adaptive=0.30,ema=0.3",
            "ema=0.3,start_from_epoch=5,adaptive=0.3,min_patience=5",
        ),
        ("patience=20,adaptive=0.5,min_patience=8", "patience=20,adaptive=0.5,min_patience=8"),
        ("any(adaptive=0.5,gl=5),min_patience=3", "any(adaptive=0.5,gl=5),min_patience=3"),
    ],
)
def test_canonical_spec(spec: str, canonical: str) -> None:
    policy = parse_policy(spec)
    assert str(policy) == canonical
    assert parse_policy(canonical) == policy
    assert repr(policy) == f"parse_policy({canonical!r})"


def test_auto_resolves_to_the_constant() -> None:
    assert parse_policy("auto") == parse_policy(AUTO_SPEC)
    assert parse_policy(" auto ") == parse_policy(AUTO_SPEC)


def test_auto_prints_as_auto_and_round_trips() -> None:
    auto = parse_policy("auto")
    assert str(auto) == "auto"
    assert repr(auto) == "parse_policy('auto')"
    assert auto.expanded() == str(parse_policy(AUTO_SPEC))
    assert parse_policy(str(auto)) == auto
    assert str(parse_policy(AUTO_SPEC)) != "auto"  # written out, it stays written out


def test_auto_name_is_checked() -> None:
    with pytest.raises(ValueError, match=r"`name` must be None or 'auto', got 'fast'"):
        Policy(name="fast")


def test_patience_defaults_to_none_with_criteria_and_7_without() -> None:
    assert parse_policy("gl=2").patience is None
    assert parse_policy("ema=0.5").patience == 7
    assert parse_policy("gl=2,patience=4").patience == 4


KNOWN = (
    "(known: adaptive, all(...), any(...), auto, baseline, budget, confidence, "
    "divergence_threshold, ema, gl, lr_factor, lr_restart, mean, median, min_delta, min_lr, "
    "min_patience, min_rel_delta, noise_delta, noise_patience, noise_window, on_nonfinite, "
    "patience, plateau, pq, rising, start_from_epoch, stopping_threshold, strip, trend, up)"
)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("patince=3", f"unknown policy option 'patince' in 'patince=3' {KNOWN}"),
        (
            "patience=5,mindelta=0.1",
            "unknown policy option 'mindelta' in 'patience=5,mindelta=0.1'",
        ),
        (
            "patience=x",
            "policy option 'patience' must be an int >= 0 or none, got 'x' in 'patience=x'",
        ),
        ("patience=-1", "`patience` must be an int >= 0 or None, got -1 (in policy 'patience=-1')"),
        ("min_delta=abc", "policy option 'min_delta' must be a float >= 0, got 'abc'"),
        ("min_delta=-0.1", "`min_delta` must be a finite float >= 0, got -0.1"),
        ("baseline=nan", "policy option 'baseline' must be a finite float, got 'nan'"),
        ("on_nonfinite=skip", "`on_nonfinite` must be 'stop' or 'count' or 'raise', got 'skip'"),
        ("gl=", "policy option 'gl' needs a value (gl=...) in 'gl='"),
        ("patience", "policy option 'patience' needs a value (patience=...) in 'patience'"),
        ("up=1.5", "policy option 'up' must be an int, got '1.5' in 'up=1.5'"),
        ("gl=two", "policy option 'gl' must be a number, got 'two' in 'gl=two'"),
        (
            "gl=-1",
            "policy criteria: `alpha` must be a finite float >= 0, got -1.0 (in policy 'gl=-1')",
        ),
        ("up=0", "policy criteria: `s` must be an int >= 1, got 0"),
        ("plateau=2", "policy criteria: `window` must be an int >= 3, got 2"),
        ("plateau=5,confidence=0.3", "`confidence` must be a float in (0.5, 1), got 0.3"),
        (
            "ema=2",
            "policy smoothing: `alpha` must be a float in (0, 1], got 2.0 (in policy 'ema=2')",
        ),
        ("median=0", "policy smoothing: `window` must be an int >= 1, got 0"),
        (
            "ema=0.3,median=3",
            "give at most one smoother, got 'ema' and 'median' (in policy 'ema=0.3,median=3')",
        ),
        (
            "patience=3,patience=4",
            "policy option 'patience' is given twice in 'patience=3,patience=4'",
        ),
        (
            "any(patience=3)",
            "policy option 'patience' cannot be inside any(...) in 'any(patience=3)'",
        ),
        ("any(gl=2,ema=0.5)", "policy option 'ema' cannot be inside any(...)"),
        ("any()", "empty group 'any()' in policy 'any()'"),
        (
            "one(gl=2)",
            "unknown policy group 'one(gl=2)' in 'one(gl=2)' (groups: any(...), all(...))",
        ),
        ("any(gl=2", "unbalanced '(' in policy 'any(gl=2'"),
        ("gl=2)", "unbalanced ')' in policy 'gl=2)'"),
        ("gl=2,,up=3", "empty item in policy 'gl=2,,up=3' (two commas in a row?)"),
        ("", "policy SPEC is empty (try 'patience=7' or 'auto')"),
        ("auto,patience=3", "'auto' cannot be combined with other options in 'auto,patience=3'"),
        ("strip=3", "`strip` applies to pq and up, and the policy has neither"),
        (
            "gl=2,confidence=0.9",
            "`confidence` applies to plateau, trend and rising, and the policy has none of them",
        ),
        (
            "min_patience=3",
            "`min_patience` applies to adaptive and budget, and the policy has neither",
        ),
        ("adaptive=x", "policy option 'adaptive' must be a number, got 'x' in 'adaptive=x'"),
        (
            "adaptive=0.3,min_patience=0",
            "policy criteria: `min_patience` must be an int >= 1, got 0 (in policy",
        ),
        ("adaptive=-1", "policy criteria: `fraction` must be a finite float >= 0, got -1.0"),
        (
            "adaptive=0.3,min_patience=2.5",
            "policy option 'min_patience' must be an int >= 1, got '2.5'",
        ),
        ("lr_factor=0.5", "`lr_factor` needs `min_lr`"),
        ("lr_restart=maybe", "policy option 'lr_restart' must be true or false, got 'maybe'"),
        (
            "min_lr=-1",
            "policy min_lr/lr_factor/lr_restart: `min_lr` must be a finite float >= 0, got -1.0",
        ),
    ],
)
def test_errors_name_the_bad_token(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_policy(spec)


def test_non_string_policy_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"`policy` must be a SPEC string or a Policy, got int"):
        parse_policy(3)  # type: ignore[arg-type]


def test_build_configures_a_fresh_stopper() -> None:
    policy = parse_policy(
        "median=3,patience=4,min_delta=0.01,start_from_epoch=2,any(gl=2,up=3),strip=4,"
        "min_lr=0.001,lr_factor=0.5"
    )
    stopper = policy.build(mode="min")
    assert isinstance(stopper, Stopper)
    assert (stopper.patience, stopper.min_delta, stopper.start_from_epoch) == (4, 0.01, 2)
    assert stopper.smoothing == MovingMedian(3)
    assert stopper.criteria == (AnyOf((GL(2.0), UP(3, strip=4))),)
    assert stopper.scheduler == SchedulerAware(hold=True, min_lr=0.001, factor=0.5)
    other = policy.build()
    assert other is not stopper
    assert other.criteria[0] is not stopper.criteria[0]  # caches are never shared


def test_build_each_criterion() -> None:
    built = parse_policy("gl=1,pq=0.5,up=2,plateau=6,all(gl=3,up=1),strip=2,confidence=0.9")
    assert built.build().criteria == (
        GL(1.0),
        PQ(0.5, strip=2),
        UP(2, strip=2),
        Plateau(6, confidence=0.9),
        AllOf((GL(3.0), UP(1, strip=2))),
    )
    assert parse_policy("ema=0.25").build().smoothing == EMA(0.25)
    assert parse_policy("lr_restart=true").scheduler() == SchedulerAware(hold=False, restart=True)


def test_adaptive_gets_the_policys_improvement_rule() -> None:
    policy = parse_policy("adaptive=0.3,min_patience=4,min_delta=0.01,min_rel_delta=0.1,baseline=2")
    assert policy.patience is None
    assert policy.build().criteria == (
        AdaptivePatience(0.3, min_patience=4, min_delta=0.01, min_rel_delta=0.1, baseline=2.0),
    )
    # on the smoothed series, its best step is the stopper's
    stopper = parse_policy("ema=0.5,adaptive=0.5,min_patience=2,min_delta=0.01").build()
    criterion = stopper.criteria[0]
    assert isinstance(criterion, AdaptivePatience)
    # smoothed: 1.0, 0.9, 0.86, 0.78, 0.765, 0.7525 (each better by more than 0.01), then
    # 0.75625, 0.778, 0.839: best at 6, wait max(2, ceil(0.5 * 6)) = 3 -> stop at 9
    stops = []
    for value in [1.0, 0.8, 0.82, 0.7, 0.75, 0.74, 0.76, 0.8, 0.9]:
        decision = stopper.step(value)
        assert criterion.best_step(stopper.rules_history) == stopper.best_step
        stops.append(decision.should_stop)
    assert stops == [False] * 8 + [True]
    assert decision.reason == (
        "adaptive=0.5 (no improvement for 3 evaluations >= max(2, ceil(0.5 * 6)); best at 6)"
    )


def test_build_in_mode_max_and_bad_mode() -> None:
    assert parse_policy("patience=3").build(mode="max").mode.value == "max"
    with pytest.raises(ValueError, match=r"`mode` must be 'min' or 'max', got 'up'"):
        Stopper.from_policy("patience=3", mode="up")


def test_stopper_from_policy_matches_explicit_options() -> None:
    values = [1.0, 0.9, 0.95, 0.97, 0.99, 0.5, 0.6, 0.7, 0.8]
    a = Stopper.from_policy("patience=2,min_delta=0.01")
    b = Stopper(patience=2, min_delta=0.01)
    assert [a.step(v) for v in values] == [b.step(v) for v in values]


# -- hypothesis: any policy's canonical text parses back to the same policy ----------------

numbers = st.one_of(
    st.integers(0, 50).map(float),
    st.floats(0.0, 100.0, allow_nan=False, allow_infinity=False),
    st.floats(1e-9, 1e-3),
)
rules = st.one_of(
    st.builds(Rule, st.just("gl"), numbers),
    st.builds(Rule, st.just("pq"), numbers),
    st.builds(Rule, st.just("up"), st.integers(1, 9).map(float)),
    st.builds(Rule, st.just("plateau"), st.integers(3, 30).map(float)),
    st.builds(Rule, st.just("adaptive"), numbers),
    st.builds(Rule, st.sampled_from(["trend", "rising"]), st.integers(4, 30).map(float)),
    st.builds(Rule, st.sampled_from(["noise_delta", "budget"]), numbers),
)
terms = st.recursive(
    rules,
    lambda inner: st.builds(
        Group, st.sampled_from(["any", "all"]), st.lists(inner, min_size=1, max_size=3).map(tuple)
    ),
    max_leaves=6,
)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    criteria = tuple(draw(st.lists(terms, max_size=3)))
    names = str(criteria)
    smoother = draw(st.sampled_from(["", "ema", "mean", "median"]))
    hold = draw(st.booleans())
    return Policy(
        patience=draw(st.one_of(st.none(), st.integers(0, 100))),
        min_delta=draw(numbers),
        min_rel_delta=draw(numbers),
        baseline=draw(st.one_of(st.none(), st.floats(-1e6, 1e6))),
        start_from_epoch=draw(st.integers(0, 10)),
        stopping_threshold=draw(st.one_of(st.none(), st.floats(-1e6, 1e6))),
        divergence_threshold=draw(st.one_of(st.none(), st.floats(-1e6, 1e6))),
        on_nonfinite=draw(st.sampled_from(["stop", "count", "raise"])),
        ema=draw(st.floats(0.01, 1.0)) if smoother == "ema" else None,
        mean=draw(st.integers(1, 20)) if smoother == "mean" else None,
        median=draw(st.integers(1, 20)) if smoother == "median" else None,
        criteria=criteria,
        strip=draw(st.integers(1, 10)) if "'pq'" in names or "'up'" in names else 5,
        confidence=draw(st.floats(0.51, 0.999))
        if any(f"'{n}'" in names for n in ("plateau", "trend", "rising"))
        else 0.95,
        min_patience=draw(st.integers(1, 30))
        if "'adaptive'" in names or "'budget'" in names
        else 1,
        noise_patience=draw(st.integers(1, 30)) if "'noise_delta'" in names else 10,
        noise_window=draw(st.integers(4, 40)) if "'noise_delta'" in names else 20,
        min_lr=draw(st.floats(0.0, 0.1)) if hold else None,
        lr_factor=draw(st.floats(0.0, 0.99)) if hold else 0.1,
        lr_restart=draw(st.booleans()),
    )


@settings(max_examples=150, deadline=None)
@given(policies())
def test_canonical_spec_round_trips(policy: Policy) -> None:
    text = str(policy)
    again = parse_policy(text)
    assert again == policy
    assert str(again) == text


def test_early_stopping_accepts_a_policy() -> None:
    early_stopping = EarlyStopping(policy="gl=5", path=None, mode="min")
    assert early_stopping.stopper.patience is None
    assert early_stopping.stopper.criteria == (GL(5.0),)
    decisions = [early_stopping(v) for v in [1.0, 0.8, 0.83, 0.9]]
    assert [d.should_stop for d in decisions] == [False, False, False, True]
    assert decisions[-1].reason == "gl=5 (GL 12.5% > 5%)"  # 100 * (0.9 / 0.8 - 1)


def test_early_stopping_policy_excludes_rule_options() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape("`policy` replaces the rule options; got policy='gl=2' and patience=3"),
    ):
        EarlyStopping(3, policy="gl=2", path=None)
    with pytest.raises(ValueError, match=r"got policy='auto' and min_delta=0.1"):
        EarlyStopping(policy="auto", min_delta=0.1, path=None)
    with pytest.raises(ValueError, match=r"got policy='auto' and smoothing=EMA\(alpha=0.5\)"):
        EarlyStopping(policy="auto", smoothing=EMA(0.5), path=None)
    with pytest.raises(ValueError, match=r"got policy='up=2' and criteria=\[GL\(alpha=1.0\)\]"):
        EarlyStopping(policy="up=2", criteria=[GL(1)], path=None)
    # options at their defaults are accepted; mode is not a rule option
    accepted = EarlyStopping(policy="up=2", criteria=[], on_nonfinite="stop", mode="max", path=None)
    assert accepted.stopper.mode.value == "max"


def test_early_stopping_auto_uses_the_auto_spec() -> None:
    early_stopping = EarlyStopping(policy="auto", path=None)
    expected = parse_policy(AUTO_SPEC)
    assert early_stopping.stopper.smoothing == expected.smoother()
    assert early_stopping.patience == expected.patience
    assert early_stopping.stopper.criteria == tuple(expected.build_criteria())


def test_early_stopping_auto_says_how_long_it_waits() -> None:
    lines: list[str] = []
    early_stopping = EarlyStopping(policy="auto", path=None, verbose=True, trace_func=lines.append)
    # best at 4, then a steady climb: the over-fitting detector stops well before patience 25
    decisions = [
        early_stopping(v) for v in [5.0, 4.0, 3.0, 1.0, *(1 + 0.01 * i for i in range(1, 18))]
    ]
    assert [d.should_stop for d in decisions] == [False] * 20 + [True]  # patience=20: 24
    assert lines[4:6] == [
        "EarlyStopping counter: 1 out of 25",
        "EarlyStopping counter: 2 out of 25",
    ]
    assert lines[-1] == (
        "EarlyStopping: stop at evaluation 21: criterion rising=20 (worsening trend in the "
        "last 20: Mann-Kendall z=3.76, Theil-Sen 0.01 per evaluation)"
    )
    # a flat tail (ties) is no trend: patience 25 stops it
    flat = EarlyStopping(policy="auto", path=None)
    decisions = [flat(v) for v in [5.0, 4.0, 3.0, 1.0, *[2.0] * 25]]
    assert [d.should_stop for d in decisions].index(True) == 28
    assert decisions[-1].reason == "patience"
