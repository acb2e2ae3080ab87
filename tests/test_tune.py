"""``earlystop tune``: cross-validated choice on synthetic corpora whose answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from earlystop import Curve, CurveRecorder, Mode, Summary
from earlystop._cli.main import main
from earlystop._replay.tune import (
    cross_validate,
    load_policy,
    outcomes_for,
    patience_guidance,
    select,
)

NAN = float("nan")
CANDIDATES = ["patience=1", "patience=2", "patience=3", "patience=5"]


def stalling_run(name: str, stall: int, length: int = 12) -> Curve:
    """Improves, then stalls for ``stall`` evaluations, then improves a lot.

    Stopping inside the stall keeps test loss 2.0 instead of the reference's 1.0 (a
    relative regret of 1), so only patience > ``stall`` loses nothing.
    """
    val = [2.0, 1.5] + [1.6] * stall + [0.5] + [0.6] * (length - 3 - stall)
    test = [3.0, 2.0] + [2.5] * stall + [1.0] + [1.2] * (length - 3 - stall)
    return Curve(name, list(range(1, length + 1)), {"val_loss": val, "test_loss": test})


def outcomes(curves: list[Curve]) -> dict[str, list]:  # type: ignore[type-arg]
    return outcomes_for([load_policy(c) for c in CANDIDATES], curves, "val_loss", Mode.MIN)


def test_recommends_the_cheapest_policy_that_loses_nothing() -> None:
    curves = [stalling_run(f"run{i}", stall=2) for i in range(10)]
    result = cross_validate(outcomes(curves), max_regret=0.01, folds=5)
    assert result.recommended == "patience=3"
    assert [f.chosen for f in result.folds] == ["patience=3"] * 5
    assert all(f.held_out.runs == 2 for f in result.folds)
    assert result.cross_validated.runs == 10
    assert result.cross_validated.mean_rel_regret == 0.0
    figures = {s.policy: s for s in result.candidates}
    assert figures["patience=1"].mean_rel_regret == 1.0
    assert figures["patience=3"].mean_cost < figures["patience=5"].mean_cost


def test_cross_validation_scores_runs_the_choice_was_not_made_on() -> None:
    # One run in five needs patience 5. In-sample, patience=5 is needed to stay under the
    # bound; with that run held out, the other runs choose patience=3, which fails on it.
    curves = [stalling_run(f"run{i}", stall=2) for i in range(4)]
    curves.append(stalling_run("odd", stall=4))
    result = cross_validate(outcomes(curves), max_regret=0.05, folds=5)
    assert result.recommended == "patience=5"
    assert sorted(f.chosen for f in result.folds) == ["patience=3"] + ["patience=5"] * 4
    assert all(f.held_out.runs == 1 for f in result.folds)
    assert result.cross_validated.mean_rel_regret == pytest.approx(1 / 5)


def test_groups_stay_together() -> None:
    curves = [stalling_run(f"{g}/run{i}", stall=2) for g in "abc" for i in range(3)]
    result = cross_validate(outcomes(curves), max_regret=0.01, folds=5, group_depth=1)
    assert len(result.folds) == 3  # at most one fold per group
    assert sorted(f.held_out.runs for f in result.folds) == [3, 3, 3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 1}, r"`folds` must be an int >= 2, got 1"),
        ({"group_depth": 1}, r"cross-validation needs at least 2 groups of runs, got 1"),
    ],
)
def test_cross_validation_errors(kwargs: dict[str, int], message: str) -> None:
    curves = [stalling_run(f"g/run{i}", stall=2) for i in range(3)]
    with pytest.raises(ValueError, match=message):
        cross_validate(outcomes(curves), max_regret=0.01, **kwargs)
    with pytest.raises(ValueError, match=r"`outcomes` must hold at least one candidate"):
        cross_validate({}, max_regret=0.01)


def _summary(name: str, cost: float, rel: float) -> Summary:
    return Summary(name, 1, cost, 0.0, 0.0, rel, 0.0, 0.0, 0, 0)


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        (0.05, "cheap"),  # cheapest under the bound
        (0.02, "mid"),
        (0.001, "slow"),  # none under the bound: the lowest regret
    ],
)
def test_select(bound: float, expected: str) -> None:
    summaries = [
        _summary("slow", 0.9, 0.01),
        _summary("mid", 0.5, 0.02),
        _summary("cheap", 0.2, 0.05),
    ]
    assert select(summaries, bound) == expected


@pytest.mark.parametrize(
    ("samples", "expected"),
    [(1, (7, 10)), (9_999, (7, 10)), (10_000, (10, 20)), (10**7, (10, 20))],
)
def test_patience_guidance(samples: int, expected: tuple[int, int]) -> None:
    # under 10k samples, what the corpus measured; above, a patient guess
    assert patience_guidance(samples) == expected


@pytest.mark.parametrize("samples", [0, -3, 2.5, True])
def test_patience_guidance_errors(samples: object) -> None:
    with pytest.raises(ValueError, match=r"`samples` must be an int >= 1, got"):
        patience_guidance(samples)  # type: ignore[arg-type]


def write_corpus(path: Path, curves: list[Curve]) -> None:
    with CurveRecorder(path, columns=["test_loss"]) as recorder:
        for curve in curves:
            for index, epoch in enumerate(curve.epochs):
                recorder.record(
                    curve.run,
                    epoch,
                    curve.columns["val_loss"][index],
                    test_loss=curve.columns["test_loss"][index],
                )


def test_cli_prints_the_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.csv.gz"
    write_corpus(path, [stalling_run(f"run{i}", stall=2) for i in range(6)])
    policies = [arg for spec in CANDIDATES for arg in ("--policy", spec)]
    assert main(["tune", str(path), *policies, "--folds", "3"]) == 0
    out = capsys.readouterr().out
    assert "Candidates on all 6 runs (* = recommended):" in out
    assert "patience=3 *" in out
    assert "fold 3: patience=3" in out
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith(
            "Recommended: patience=3  (cheapest policy with mean relative regret <= 1% on all runs)"
        )
    )
    assert main(["tune", str(path), *policies, "--json", "--max-regret", "0.5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recommended"] == "patience=3"
    assert set(data) == {
        "recommended",
        "max_regret",
        "max_fail_rate",
        "cross_validated",
        "folds",
        "candidates",
        "expansions",
        "warnings",
    }
    assert data["warnings"][0].startswith("only 6 runs: a policy chosen on fewer than 20")
    assert len(data["folds"]) == 5


def test_cli_guidance_without_curves(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "--samples", "50000"]) == 0
    assert capsys.readouterr().out.startswith(
        "50000 training samples: try patience 10-20, a patient guess: the committed corpus "
        "holds no run over 10k samples, so this is not measured."
    )
    assert main(["tune", "--samples", "500"]) == 0
    assert capsys.readouterr().out.startswith(
        "500 training samples: try patience 7-10. On the committed corpus (400 runs of "
        "98-2,200 training samples, docs/stopping.md) patience 3-5 lost more than 0.5 accuracy "
        "point on 3-8% of the runs, 7-10 on 0.3-0.6% at 34-38% of the budget."
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tune"], "earlystop tune: error: give CURVES, or --samples N for guidance\n"),
        (
            ["tune", "--samples", "0"],
            "earlystop tune: error: `samples` must be an int >= 1, got 0\n",
        ),
    ],
)
def test_cli_tune_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err == message


def test_cli_tune_rejects_a_bad_bound(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.csv"
    write_corpus(path, [stalling_run(f"run{i}", stall=2) for i in range(3)])
    assert main(["tune", str(path), "--max-regret", "5"]) == 2
    assert capsys.readouterr().err == (
        "earlystop tune: error: `--max-regret` must be a fraction in [0, 1], got 5.0\n"
    )


def test_cli_default_candidates_skip_what_does_not_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # accuracy in mode max: GL and PQ are defined for losses only and are skipped
    path = tmp_path / "acc.csv"
    path.write_text(
        "run,epoch,val_loss,val_acc,test_loss\n"
        + "".join(
            f"r{r},{e},1,{0.5 + 0.01 * e},{1 - 0.01 * e}\n" for r in range(3) for e in range(1, 9)
        )
    )
    assert main(["tune", str(path), "--monitor", "val_acc", "--folds", "3"]) == 0
    captured = capsys.readouterr()
    assert "earlystop tune: warning: skipped gl=2: " in captured.err
    assert "Recommended: " in captured.out


def test_failure_bound() -> None:
    # "cheap" loses little loss but fails often; a failure bound moves the choice to "slow"
    cheap = Summary("cheap", 1, 0.2, 0.0, 0.0, 0.0, 1.0, 0.5, 0, 4)
    slow = Summary("slow", 1, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 4)
    no_acc = Summary("no-acc", 1, 0.1, 0.0, 0.0, 0.0, NAN, NAN, 0, 0)
    assert select([cheap, slow], 0.01) == "cheap"
    assert select([cheap, slow], 0.01, max_fail=0.1) == "slow"
    assert select([cheap, slow, no_acc], 0.01, max_fail=0.1) == "no-acc"  # nan passes


def test_cli_failure_bound(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.csv"
    write_corpus(path, [stalling_run(f"run{i}", stall=2) for i in range(4)])
    argv = ["tune", str(path), "--policy", "patience=3", "--folds", "2", "--max-fail-rate"]
    assert main([*argv, "0.1"]) == 0
    out = capsys.readouterr().out
    assert "relative regret <= 1% and failure rate <= 10% on all runs" in out
    assert main([*argv, "2"]) == 2
    assert capsys.readouterr().err == (
        "earlystop tune: error: `--max-fail-rate` must be a fraction in [0, 1], got 2.0\n"
    )


@pytest.mark.parametrize(
    ("runs", "folds", "warnings"),
    [
        (25, 5, []),
        (
            6,
            5,
            [
                "only 6 runs: a policy chosen on fewer than 20 is weak evidence; record more "
                "curves before trusting it"
            ],
        ),
        (
            3,
            5,
            [
                "only 3 runs: a policy chosen on fewer than 20 is weak evidence; record more "
                "curves before trusting it",
                "--folds 5 but only 3 runs: cross-validating with 3 folds (one per run)",
            ],
        ),
    ],
)
def test_cli_warns_on_thin_evidence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], runs: int, folds: int, warnings: list[str]
) -> None:
    path = tmp_path / "c.csv"
    write_corpus(path, [stalling_run(f"run{i}", stall=2) for i in range(runs)])
    argv = ["tune", str(path), "--policy", "patience=3", "--folds", str(folds)]
    assert main(argv) == 0
    assert capsys.readouterr().err == "".join(f"earlystop tune: warning: {w}\n" for w in warnings)
