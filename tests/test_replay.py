"""Replay figures on a tiny curves file whose answers are computed by hand."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop import AUTO_SPEC, Curve, Mode, Stopper, read_curves
from earlystop._cli.main import main
from earlystop._replay.replay import (
    Outcome,
    Summary,
    best_evaluation,
    outcome_at,
    pareto_front,
    replay,
    replay_run,
    stop_evaluation,
    summarize,
)
from earlystop._replay.tune import load_policy

NAN, INF = math.nan, math.inf

# run a: patience=1 stops at 3 (cost 3/6), patience=2 at 4 (the tie at 4 does not improve).
#        The kept evaluation is 2 both times: the tie 0.8 at 4 is later, so 2 stays best
#        (taking 4 would give test_loss 0.5). Reference r = 6 (0.7).
#        regret 1.0 - 0.8 = 0.2, rel 0.25, acc regret 100 * (0.85 - 0.80) = 5 points: a failure.
# run b: the NaN at 2 stops every policy (on_nonfinite="stop") and is never best, although
#        its test loss is the lowest: k = 1, r = 3. regret 4.0 - 0.5 = 3.5, rel 7 -> clipped to 1.
#        No accuracy (empty cells).
# run c: test_loss[r] is NaN: left out of the regret figures, counted. Accuracy regret 0.
CSV = """run,epoch,val_loss,test_loss,test_acc,lr
a,1,1.0,2.0,0.5,0.1
a,2,0.8,1.0,0.8,0.1
a,3,0.9,1.5,0.7,0.1
a,4,0.8,0.5,0.9,0.1
a,5,0.95,3.0,0.6,0.1
a,6,0.7,0.8,0.85,0.1
b,1,2.0,4.0,,0.1
b,2,nan,0.1,,0.1
b,3,1.0,0.5,,0.1
b,4,1.5,0.6,,0.1
b,5,1.6,0.7,,0.1
c,1,1.0,1.0,0.9,0.1
c,2,0.5,nan,0.9,0.1
c,3,0.6,1.0,0.9,0.1
"""


@pytest.fixture
def curves_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    path.write_text(CSV)
    return path


@pytest.mark.parametrize(
    ("spec", "stops", "cost"),
    [
        ("patience=1", [3, 2, 3], (3 / 6 + 2 / 5 + 3 / 3) / 3),
        ("patience=2", [4, 2, 3], (4 / 6 + 2 / 5 + 3 / 3) / 3),
        ("patience=30", [6, 2, 3], (6 / 6 + 2 / 5 + 3 / 3) / 3),
    ],
)
def test_hand_computed_figures(curves_file: Path, spec: str, stops: list[int], cost: float) -> None:
    curves = read_curves(curves_file)
    name, policy = load_policy(spec)
    assert [stop_evaluation(policy, c) for c in curves] == stops
    (summary,) = replay([(name, policy)], curves)
    assert summary.runs == 3
    assert summary.mean_cost == pytest.approx(cost)
    if spec == "patience=30":  # run a kept its reference: regrets 0 and 3.5
        regrets, rel, acc = [0.0, 3.5], [0.0, 1.0], [0.0, 0.0]
    else:
        regrets, rel, acc = [0.2, 3.5], [0.25, 1.0], [5.0, 0.0]
    assert summary.mean_regret == pytest.approx(sum(regrets) / 2)
    assert summary.p90_regret == pytest.approx(regrets[0] + 0.9 * (regrets[1] - regrets[0]))
    assert summary.mean_rel_regret == pytest.approx(sum(rel) / 2)
    assert summary.mean_acc_regret == pytest.approx(sum(acc) / 2)
    assert summary.fail_rate == pytest.approx(0.5 if acc[0] > 0.5 else 0.0)
    assert (summary.left_out, summary.acc_runs) == (1, 2)


def test_outcomes_per_run(curves_file: Path) -> None:
    a, b, c = read_curves(curves_file)
    assert outcome_at(a, 4) == Outcome(
        "a", 6, 4, 2, 6, pytest.approx(0.2), pytest.approx(0.25), pytest.approx(5)
    )
    assert outcome_at(b, 2) == Outcome("b", 5, 2, 1, 3, 3.5, 1.0, None)
    assert outcome_at(c, 3) == Outcome("c", 3, 3, 2, 2, None, None, 0.0)
    assert outcome_at(a, 4).cost == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    ("values", "upto", "mode", "expected"),
    [
        ([3.0, 1.0, NAN, 1.0, 2.0], 5, Mode.MIN, 2),  # ties: earliest
        ([NAN, NAN], 2, Mode.MIN, None),  # non-finite is never best
        ([2.0, -INF, 1.0], 3, Mode.MIN, 3),
        ([0.2, INF, 0.9, 0.9], 4, Mode.MAX, 3),
        ([5.0, 1.0], 1, Mode.MIN, 1),  # only the first `upto` count
        ([], 3, Mode.MIN, None),
    ],
)
def test_best_evaluation(values: list[float], upto: int, mode: Mode, expected: int | None) -> None:
    assert best_evaluation(values, upto, mode) == expected


def test_non_finite_kept_test_loss_counts_as_full_relative_regret() -> None:
    curve = Curve(
        "d",
        [1, 2, 3],
        {"val_loss": [1.0, 2.0, 0.5], "test_loss": [INF, 1.0, 2.0], "test_acc": [NAN, 0.5, 0.6]},
    )
    outcome = outcome_at(curve, 2)
    assert (outcome.kept, outcome.reference) == (1, 3)
    assert outcome.regret == INF
    assert outcome.rel_regret == 1.0
    assert outcome.acc_regret == pytest.approx(60.0)  # a non-finite accuracy counts as 0
    summary = summarize("p", [outcome])
    assert summary.mean_regret == INF
    assert summary.p90_regret == INF
    assert summary.to_dict()["mean_regret"] == "inf"


def test_relative_regret_clips_at_minus_one_too() -> None:
    # test_loss at k far below the reference: an improvement of more than 100% is clipped.
    curve = Curve("e", [1, 2], {"val_loss": [1.0, 0.5], "test_loss": [-5.0, 2.0]})
    assert outcome_at(curve, 1).rel_regret == -1.0


def test_a_run_with_no_finite_validation_value_is_left_out() -> None:
    curve = Curve("f", [1, 2], {"val_loss": [NAN, NAN], "test_loss": [1.0, 1.0]})
    outcome = outcome_at(curve, 1)
    assert (outcome.kept, outcome.reference, outcome.regret) == (None, None, None)
    summary = summarize("p", [outcome])
    assert (summary.left_out, summary.acc_runs) == (1, 0)
    assert math.isnan(summary.mean_rel_regret)
    assert math.isnan(summary.fail_rate)
    assert summary.to_dict()["fail_rate"] is None


def test_outcome_rejects_a_stop_outside_the_run() -> None:
    curve = Curve("g", [1], {"val_loss": [1.0]})
    with pytest.raises(ValueError, match=r"`stop` must be in 1..1 for run 'g', got 2"):
        outcome_at(curve, 2)


class _SeesColumns:
    """A policy whose stopper records what it was given, to prove test_* stay hidden."""

    def __init__(self) -> None:
        self.stoppers: list[Stopper] = []

    def build(self, mode: str = "min") -> Stopper:
        stopper = Stopper(mode=mode, patience=None)
        self.stoppers.append(stopper)
        return stopper


def test_policies_never_see_test_columns(curves_file: Path) -> None:
    policy = _SeesColumns()
    a = read_curves(curves_file)[0]
    assert stop_evaluation(policy, a) == 6
    assert sorted(policy.stoppers[0].history.metrics) == ["lr"]
    assert stop_evaluation(policy, a, monitor="lr") == 6
    assert sorted(policy.stoppers[1].history.metrics) == ["val_loss"]


def _summary(name: str, cost: float, rel: float) -> Summary:
    return Summary(name, 1, cost, rel, rel, rel, 0.0, 0.0, 0, 0)


def test_pareto_front() -> None:
    points = [
        _summary("slow-good", 0.9, 0.0),
        _summary("fast-bad", 0.2, 0.3),
        _summary("dominated", 0.5, 0.3),
        _summary("middle", 0.5, 0.1),
        _summary("nan", 0.1, NAN),
    ]
    assert [s.policy for s in pareto_front(points)] == ["fast-bad", "middle", "slow-good"]


JSON_KEYS = {
    "policy",
    "runs",
    "mean_cost",
    "mean_regret",
    "p90_regret",
    "mean_rel_regret",
    "mean_acc_regret",
    "fail_rate",
    "left_out",
    "acc_runs",
    "spec",
    "mean_loss_regret",
    "share_loss_over_1pct",
}


def test_cli_json(curves_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["replay", str(curves_file), "--policy", "patience=1", "--policy", "patience=2"]
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["policy"] for row in rows] == ["patience=1", "patience=2", "oracle"]
    assert all(set(row) == JSON_KEYS for row in rows)
    assert rows[0]["mean_rel_regret"] == pytest.approx(0.625)
    assert rows[0]["fail_rate"] == pytest.approx(0.5)
    assert rows[0]["mean_loss_regret"] == pytest.approx(0.625)
    assert rows[0]["share_loss_over_1pct"] == pytest.approx(1.0)
    assert rows[2]["mean_cost"] == pytest.approx((6 / 6 + 3 / 5 + 2 / 3) / 3)
    assert rows[2]["mean_loss_regret"] == 0.0


def test_cli_table_and_plot(
    curves_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "pareto.png"
    argv = ["replay", str(curves_file), "--policy", "patience=1", "--plot", str(plot)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "policy",
        "runs",
        "cost%",
        "regret",
        "p90",
        "rel_regret%",
        "acc_regret",
        "fail%",
        "loss_regret%",
        ">1%",
    ]
    assert out.splitlines()[2].split() == [
        "patience=1",
        "3",
        "63.3",
        "1.8500",
        "3.1700",
        "62.50",
        "2.50",
        "50.0",
        "62.50",
        "100.0",
    ]
    assert out.splitlines()[3].split()[:3] == ["oracle", "3", "75.6"]
    assert "1 left out of the regret figures" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_table_prints_auto_with_its_expansion_in_a_footer(
    curves_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(curves_file), "--policy", "auto"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[0] == "auto"
    assert lines[4] == f"auto = {AUTO_SPEC}"


def test_cli_monitor_max_column(curves_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # monitoring test_acc is allowed (any column) and defaults to mode max for *acc*
    argv = ["replay", str(curves_file), "--policy", "patience=1", "--monitor", "test_acc"]
    assert main([*argv, "--json"]) == 0
    row, oracle = json.loads(capsys.readouterr().out)
    assert row["runs"] == 3
    assert oracle["policy"] == "oracle"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--monitor", "val_acc"], r"no column 'val_acc' to monitor; has lr, test_acc"),
        (["--policy", "patience=-1"], r"patience"),
        (
            ["--policy", "gl=5", "--monitor", "test_acc"],
            r"run 'a', evaluation 1: `GL` is defined for losses \(mode='min'\)",
        ),
    ],
)
def test_cli_errors(
    curves_file: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["replay", str(curves_file), "--policy", "patience=1", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("earlystop replay: error: ")
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err)


def test_cli_reports_a_malformed_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("run,epoch,val_loss\na,2,1\na,1,1\n")
    assert main(["replay", str(bad), "--policy", "patience=1"]) == 2
    assert capsys.readouterr().err == (
        f"earlystop replay: error: {bad}:3: column 'epoch': unsorted epoch 1 in run 'a' "
        "(previous epoch 2); epochs must increase within a run\n"
    )


def test_a_policy_error_names_the_run_and_evaluation() -> None:
    curve = Curve("neg", [1, 2], {"val_loss": [1.0, -0.5]})
    _, policy = load_policy("gl=5")
    with pytest.raises(ValueError, match=r"run 'neg', evaluation 2: .*GL"):
        stop_evaluation(policy, curve)


finite_losses = st.lists(
    st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    val=finite_losses,
    test=finite_losses,
    patience=st.integers(min_value=0, max_value=6),
)
def test_replay_properties(val: list[float], test: list[float], patience: int) -> None:
    n = min(len(val), len(test))
    curve = Curve("p", list(range(1, n + 1)), {"val_loss": val[:n], "test_loss": test[:n]})
    _, policy = load_policy(f"patience={patience}")
    outcome = replay_run(policy, curve)
    assert 0 < outcome.cost <= 1
    assert outcome.kept is not None
    assert outcome.reference is not None
    assert outcome.kept <= outcome.stop
    assert val[outcome.reference - 1] <= val[outcome.kept - 1]  # the reference is never worse
    assert val[outcome.reference - 1] == min(val[:n])
    assert outcome.rel_regret is not None
    assert -1 <= outcome.rel_regret <= 1
    # mode max on the negated values stops at the same evaluation and keeps the same one
    mirrored = Curve("p", curve.epochs, {"val_loss": [-v for v in val[:n]], "test_loss": test[:n]})
    flipped = replay_run(policy, mirrored, mode=Mode.MAX)
    assert (flipped.stop, flipped.kept, flipped.reference) == (
        outcome.stop,
        outcome.kept,
        outcome.reference,
    )
    # stopping later never moves the kept evaluation to a worse validation value
    later = outcome_at(curve, n)
    assert val[later.kept - 1] <= val[outcome.kept - 1]  # type: ignore[operator]


def test_cli_by_label_reports_each_value_then_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "labelled.csv"
    rows = ["run,epoch,task,val_loss,test_loss"]
    for run, task, losses in [
        ("a", "easy", [1.0, 0.5, 0.6, 0.7]),
        ("b", "easy", [1.0, 0.9, 0.8, 0.7]),
        ("c", "hard", [1.0, 0.8, 0.9, 0.95]),
    ]:
        rows += [f"{run},{e},{task},{v},{v}" for e, v in enumerate(losses, start=1)]
    path.write_text("\n".join(rows) + "\n")
    argv = ["replay", str(path), "--policy", "patience=1", "--by", "task"]
    assert main([*argv, "--json"]) == 0
    found = [row for row in json.loads(capsys.readouterr().out) if row["policy"] == "patience=1"]
    assert [(row["by"]["task"], row["runs"]) for row in found] == [
        ("easy", 2),
        ("hard", 1),
        (None, 3),
    ]
    # patience=1 stops a at 3 (cost 3/4), b never (1), c at 3 (3/4)
    assert [row["mean_cost"] for row in found] == pytest.approx([0.875, 0.75, 5 / 6])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "task=easy (2 runs):" in out
    assert "task=hard (1 runs):" in out
    assert "all runs (3 runs):" in out
    assert main(["replay", str(path), "--policy", "patience=1", "--by", "val_loss"]) == 2
    assert capsys.readouterr().err == (
        f"earlystop replay: error: {path}: --by val_loss: no text column 'val_loss' "
        "(it holds numbers); text columns: task\n"
    )


def test_cli_prints_policies_as_written_and_no_empty_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "clean.csv"
    path.write_text(
        "run,epoch,val_loss,test_loss\n" + "".join(f"a,{e},{e % 3},1\n" for e in range(1, 7))
    )
    assert main(["replay", str(path), "--policy", "auto", "--policy", "patience=2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].split()[0] == "auto"
    assert out.count(f"auto = {AUTO_SPEC}") == 1  # the expansion, once
    assert "left out" not in out  # nothing was
    assert "patience=2 =" not in out  # written as its own expansion: no footer line


def test_plot_labels_every_policy_without_overlap(tmp_path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from earlystop._replay.plot import place_labels

    figure = Figure(figsize=(6, 4))
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    # a tight cluster, as on the corpus: 12 policies within 1% of cost and regret
    points = [(30 + 0.1 * i, 0.2 + 0.05 * (i % 3), f"patience={i}", "black") for i in range(12)]
    axes.scatter([p[0] for p in points], [p[1] for p in points])
    axes.set_xlim(25, 40)
    axes.set_ylim(0, 0.6)
    renderer = canvas.get_renderer()
    annotations = place_labels(axes, renderer, points)
    assert sorted(a.get_text() for a in annotations) == sorted(p[2] for p in points)
    from matplotlib.text import Text

    canvas.draw()
    boxes = [Text.get_window_extent(a, renderer) for a in annotations]  # without leader lines
    for i, first in enumerate(boxes):
        for second in boxes[i + 1 :]:
            assert not first.overlaps(second), (first, second)
