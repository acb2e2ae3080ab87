"""``earlystop demo``: the two runs, their shared prefix, the outputs, the figure, the CLI."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import earlystop
from earlystop import read_curves
from earlystop._cli.demo import config_from_args
from earlystop._cli.main import build_parser, main
from earlystop._demo.data import PRESETS, DemoData, load_data
from earlystop._demo.plot import GIDS, loss_figure, save_figure
from earlystop._demo.train import CURVE_COLUMNS, RunResult, TrainConfig, train_run
from idx_files import write_mnist

SRC = Path(earlystop.__file__).resolve().parents[1]

# Small enough to take seconds, large enough that early stopping stops before the budget.
SMALL = TrainConfig(
    seed=3, epochs=20, hidden=(64, 64), dropout=0.0, lr=1e-2, batch_size=64, patience=2
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models train faster on one thread than on two shared ones (as the demo does)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits() -> DemoData:
    return load_data("digits", seed=SMALL.seed)


@pytest.fixture(scope="module")
def runs(digits: DemoData) -> tuple[RunResult, RunResult]:
    return (
        train_run(SMALL, digits, early_stopping=False),
        train_run(SMALL, digits, early_stopping=True),
    )


def without_run(record: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in record.items() if key != "run"}


def test_early_stopping_run_is_the_prefix_of_the_full_run(
    runs: tuple[RunResult, RunResult],
) -> None:
    full, early = runs
    assert full.epochs_run == SMALL.epochs
    assert early.stopped_epoch is not None
    assert early.epochs_run == early.stopped_epoch < SMALL.epochs
    # Same initial weights, batch order and losses: exactly equal, not approximately.
    assert [without_run(r) for r in early.records] == [
        without_run(r) for r in full.records[: early.epochs_run]
    ]
    assert full.best_epoch is not None
    assert early.best_epoch == early.restored_epoch
    assert full.best_epoch >= early.best_epoch


def test_the_restored_weights_are_those_of_the_best_epoch(
    runs: tuple[RunResult, RunResult],
) -> None:
    full, early = runs
    assert early.restored_epoch is not None
    best = early.records[early.restored_epoch - 1]
    assert min(r["val_loss"] for r in early.records) == best["val_loss"]
    # Re-evaluating the restored model gives back the numbers recorded at that epoch.
    for key in ("val_loss", "val_acc", "test_loss", "test_acc"):
        assert early.final[key] == pytest.approx(best[key], rel=1e-6, abs=1e-9)
        assert full.final[key] == pytest.approx(full.records[-1][key], rel=1e-6, abs=1e-9)
    assert full.restored_epoch is None
    assert early.wall_time_s > 0
    assert full.wall_time_s > 0


def test_records_have_the_curve_columns(runs: tuple[RunResult, RunResult]) -> None:
    full, early = runs
    for result, name in ((full, "no_early_stopping"), (early, "early_stopping")):
        assert result.run == name
        for epoch, record in enumerate(result.records, start=1):
            assert tuple(record) == CURVE_COLUMNS
            assert record["run"] == name
            assert record["epoch"] == epoch
            assert record["lr"] == SMALL.lr
            assert 0.0 <= record["val_acc"] <= 1.0


def test_training_leaves_the_global_random_state_alone(digits: DemoData) -> None:
    import torch

    config = TrainConfig(seed=0, epochs=1, hidden=(8,), dropout=0.5, lr=1e-3, batch_size=64)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_run(config, digits, early_stopping=True)
    assert torch.equal(torch.rand(3), expected)


def test_plateau_scheduler_lowers_the_learning_rate(digits: DemoData) -> None:
    config = TrainConfig(
        seed=1,
        epochs=12,
        hidden=(64,),
        dropout=0.0,
        lr=5e-2,
        batch_size=64,
        patience=8,
        lr_scheduler="plateau",
        lr_patience=0,
        lr_factor=0.5,
    )
    result = train_run(config, digits, early_stopping=True)
    rates = [r["lr"] for r in result.records]
    assert rates[0] == 5e-2
    assert min(rates) < 5e-2
    assert rates == sorted(rates, reverse=True)
    assert {round(rate / 5e-2, 12) for rate in rates} <= {0.5**k for k in range(16)}


@pytest.mark.parametrize(
    ("patience", "lr_patience"),
    [(5, 4), (5, 5), (3, 7), (1, 0), (0, 0)],
)
def test_stopper_patience_must_exceed_the_scheduler_patience(
    patience: int, lr_patience: int
) -> None:
    config = TrainConfig(
        seed=0,
        epochs=1,
        hidden=(8,),
        dropout=0.0,
        lr=1e-3,
        batch_size=8,
        patience=patience,
        lr_scheduler="plateau",
        lr_patience=lr_patience,
    )
    with pytest.raises(
        ValueError,
        match=rf"^`patience` \({patience}\) must exceed the LR scheduler's patience \+ 1 "
        rf"\({lr_patience + 1}\): the scheduler lowers the learning rate after "
        rf"{lr_patience + 1} epochs without improvement, so training would stop before",
    ):
        config.check()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("monitor", "train_loss", r"`monitor` must be one of val_loss, val_acc, got 'train_loss'"),
        ("lr_scheduler", "cosine", r"`lr_scheduler` must be None or 'plateau', got 'cosine'"),
    ],
)
def test_config_rejects_unknown_names(field: str, value: str, message: str) -> None:
    config = TrainConfig(seed=0, epochs=1, hidden=(8,), dropout=0.0, lr=1e-3, batch_size=8)
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**config.__dict__, field: value}).check()


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["demo", *argv])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), {"mode": "min", "monitor": "val_loss", "epochs": 100, "patience": 10}),
        (("--monitor", "val_acc"), {"mode": "max", "monitor": "val_acc"}),
        (("--monitor", "val_acc", "--mode", "min"), {"mode": "min"}),
        (("--dataset", "mnist"), {"hidden": (128, 128), "dropout": 0.5, "patience": 20}),
        (("--dataset", "mnist"), {"lr": 1e-3, "batch_size": 256, "epochs": 100}),
        (("--patience", "9"), {"patience": 9, "lr_patience": 4, "lr_scheduler": None}),
        (("--lr-scheduler", "plateau", "--lr-patience", "2"), {"lr_scheduler": "plateau"}),
        (("--epochs", "7", "--lr", "0.01", "--batch-size", "5"), {"epochs": 7, "lr": 0.01}),
        (("--min-delta", "0.5", "--seed", "4"), {"min_delta": 0.5, "seed": 4}),
    ],
)
def test_flags_override_the_preset(argv: tuple[str, ...], expected: dict[str, object]) -> None:
    config = config_from_args(parse(*argv))
    for key, value in expected.items():
        assert getattr(config, key) == value, key


def test_presets_reproduce_the_mnist_notebook() -> None:
    mnist = PRESETS["mnist"]
    assert (mnist.hidden, mnist.dropout, mnist.lr) == ((128, 128), 0.5, 1e-3)
    assert (mnist.batch_size, mnist.epochs, mnist.patience) == (256, 100, 20)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--epochs", "0"), r"argument --epochs: expected an int >= 1, got 0"),
        (("--patience", "-1"), r"argument --patience: expected an int >= 0, got -1"),
        (("--patience", "x"), r"argument --patience: expected an int >= 0, got 'x'"),
        (("--min-delta", "-0.1"), r"argument --min-delta: expected a float >= 0.0, got '-0.1'"),
        (("--min-delta", "nan"), r"argument --min-delta: expected a float >= 0.0, got 'nan'"),
        (("--lr", "0"), r"argument --lr: expected a float > 0.0, got '0'"),
        (("--lr-factor", "1"), r"argument --lr-factor: expected a float > 0.0 and < 1.0, got '1'"),
        (("--monitor", "loss"), r"argument --monitor: invalid choice: 'loss'"),
    ],
)
def test_bad_flags_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.replace("\\", "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("--lr-scheduler", "plateau", "--patience", "3", "--lr-patience", "3"),
            "`patience` (3) must exceed the LR scheduler's patience + 1 (4)",
        ),
        (("--dataset", "mnist"), "--data-dir is required with --dataset mnist"),
    ],
)
def test_inconsistent_options_exit_2_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    assert main(["demo", "--out", str(tmp_path / "out"), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"earlystop demo: error: {message}")
    assert captured.err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_smoke_writes_the_table_and_the_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), "--epochs", "20", "--patience", "2", "--batch-size", "128"]
    assert main([*argv, "--quiet"]) == 0
    printed = capsys.readouterr()
    # --quiet: the table and nothing else on stdout, nothing on stderr.
    assert printed.err == ""
    lines = printed.out.splitlines()
    assert all(line.startswith("|") for line in lines), printed.out
    assert [cell.strip() for cell in lines[0].split("|")[1:4]] == [
        "final model",
        "without early stopping",
        "with early stopping",
    ]
    assert lines[2].split("|")[1].strip() == "epochs run"
    assert lines[3].split("|")[1].strip() == "epochs saved"  # the headline, before any time
    assert {p.name for p in out.iterdir()} == {
        "loss.png",
        "curves.csv",
        "summary.json",
        "summary.md",
    }
    summary = json.loads((out / "summary.json").read_text())
    full, early = summary["runs"]["no_early_stopping"], summary["runs"]["early_stopping"]
    assert full["epochs_run"] == 20
    assert early["epochs_run"] == early["stopped_epoch"] < 20
    assert early["final_weights_epoch"] == early["restored_epoch"] == early["best_epoch"]
    assert summary["config"]["patience"] == 2
    # time saved from per-epoch medians, not from the two wall times
    unit = full["median_epoch_s"]
    per_early_epoch = (
        unit - full["median_early_stopping_call_s"] + early["median_early_stopping_call_s"]
    )
    assert summary["time_saved_pct"] == pytest.approx(
        100 * (1 - early["epochs_run"] * per_early_epoch / (20 * unit))
    )
    assert summary["epochs_saved_pct"] == pytest.approx(100 * (1 - early["epochs_run"] / 20))
    row = next(line for line in lines if line.startswith("| epochs run "))
    assert [cell.strip() for cell in row.split("|")[2:4]] == ["20", str(early["epochs_run"])]
    assert printed.out.strip() in (out / "summary.md").read_text()
    with (out / "curves.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == set(CURVE_COLUMNS)
    assert tuple(rows[0])[:3] == ("run", "epoch", "val_loss")  # the replayable curves format
    curves = {curve.run: curve for curve in read_curves(out / "curves.csv")}
    assert len(curves["no_early_stopping"].series("val_loss")) == 20
    # only the full-budget run: the one a replay can measure policies on honestly
    assert [r["run"] for r in rows] == ["no_early_stopping"] * 20
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_prints_progress_and_the_file_list_unless_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(tmp_path), "--epochs", "2", "--patience", "5"]) == 0
    printed = capsys.readouterr()
    assert "without early stopping" in printed.err
    assert "wait 0/5" in printed.err
    assert printed.out.startswith("digits (train 449, val 449, test 899); MLP 64-256-256-10")
    assert f"wrote {tmp_path / 'loss.png'}" in printed.out


def test_python_dash_m_earlystop_demo(tmp_path: Path) -> None:
    # Tiny generated MNIST files: a fresh interpreter need not import scikit-learn.
    folder = write_mnist(tmp_path / "mnist")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    argv = [sys.executable, "-m", "earlystop", "demo", "--quiet", "--epochs", "2"]
    done = subprocess.run(
        [*argv, "--dataset", "mnist", "--data-dir", str(folder), "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "| epochs run" in done.stdout
    assert (tmp_path / "summary.json").is_file()


# -- the figure, through matplotlib objects -------------------------------------------


def lines_by_gid(figure: object, panel: int = 0) -> dict[str, object]:
    axes = figure.axes[panel]  # type: ignore[attr-defined]
    return {line.get_gid(): line for line in axes.get_lines() if line.get_gid()}


def test_figure_shows_both_losses_the_best_epoch_and_the_stop(
    runs: tuple[RunResult, RunResult],
) -> None:
    full, early = runs
    figure = loss_figure(full, early, dataset="digits")
    lines = lines_by_gid(figure)
    assert set(lines) == {
        GIDS[key] for key in ("train", "val", "train_rest", "val_rest", "best", "stopped")
    }
    epochs = list(range(1, early.epochs_run + 1))
    train, val = lines[GIDS["train"]], lines[GIDS["val"]]
    assert list(train.get_xdata()) == epochs  # type: ignore[attr-defined]
    assert list(train.get_ydata()) == [r["train_loss"] for r in early.records]  # type: ignore[attr-defined]
    assert list(val.get_ydata()) == [r["val_loss"] for r in early.records]  # type: ignore[attr-defined]
    assert val.get_label() == "validation loss (monitored)"  # type: ignore[attr-defined]
    best = lines[GIDS["best"]]
    assert list(best.get_xdata()) == [early.restored_epoch] * 2  # type: ignore[attr-defined]
    assert best.get_linestyle() == "--"  # type: ignore[attr-defined]
    # nothing was written to disk: the line is the best epoch, restored from memory
    assert best.get_label() == f"best (restored): epoch {early.restored_epoch}"  # type: ignore[attr-defined]
    stopped = lines[GIDS["stopped"]]
    assert list(stopped.get_xdata()) == [early.stopped_epoch]  # type: ignore[attr-defined]
    assert stopped.get_marker() == "X"  # type: ignore[attr-defined]
    # The run without early stopping continues from the stop to the budget, fainter.
    rest = lines[GIDS["val_rest"]]
    assert list(rest.get_xdata()) == list(range(early.epochs_run, full.epochs_run + 1))  # type: ignore[attr-defined]
    assert rest.get_alpha() < 1  # type: ignore[attr-defined]
    assert val.get_alpha() in (None, 1)  # type: ignore[attr-defined]
    # beside the losses, the validation accuracy (not monitored here)
    accuracy = lines_by_gid(figure, 1)
    assert set(accuracy) == {GIDS["acc"], GIDS["acc_rest"], GIDS["acc_best"]}
    assert accuracy[GIDS["acc"]].get_label() == "validation accuracy"  # type: ignore[attr-defined]
    title = figure.texts[0].get_text()  # the suptitle; no time figure in it
    saved = round(100 * (1 - early.epochs_run / full.epochs_run))
    assert title.startswith(
        f"digits: stopped at epoch {early.stopped_epoch} of 20: {saved}% fewer epochs; "
        f"weights of the best epoch, {early.restored_epoch}\n"
    )
    assert "time" not in title


def test_figure_marks_the_monitored_accuracy_and_a_checkpoint_on_disk(
    runs: tuple[RunResult, RunResult],
) -> None:
    figure = loss_figure(*runs, monitor="val_acc", on_disk=True)
    assert lines_by_gid(figure)[GIDS["val"]].get_label() == "validation loss"  # type: ignore[attr-defined]
    accuracy = lines_by_gid(figure, 1)
    assert accuracy[GIDS["acc"]].get_label() == "validation accuracy (monitored)"  # type: ignore[attr-defined]
    assert accuracy[GIDS["acc_best"]].get_label().startswith("checkpoint: epoch ")  # type: ignore[attr-defined]


def test_figure_marks_learning_rate_drops(digits: DemoData) -> None:
    config = dataclasses.replace(SMALL, lr_scheduler="plateau", lr_patience=0, patience=3)
    full = train_run(config, digits, early_stopping=False)
    early = train_run(config, digits, early_stopping=True)
    drops = [
        r["epoch"]
        for p, r in zip(full.records, full.records[1:], strict=False)
        if r["lr"] < p["lr"]
    ]
    assert drops  # the scheduler lowered the rate at least once
    axes = loss_figure(full, early).axes[0]
    marked = [line.get_xdata()[0] for line in axes.get_lines() if line.get_gid() == GIDS["lr"]]
    assert marked == drops
    labels = [line.get_label() for line in axes.get_lines() if line.get_gid() == GIDS["lr"]]
    assert labels[0] == "learning rate lowered (x0.1)"


def test_figure_names_the_epochs_above_the_loss_axis(runs: tuple[RunResult, RunResult]) -> None:
    full, early = runs
    axes = loss_figure(full, early).axes[0]
    top = axes.get_ylim()[1]
    above = [r["epoch"] for r in full.records if max(r["train_loss"], r["val_loss"]) > top]
    label = axes.xaxis.label
    if above:
        assert label.get_gid() == GIDS["clipped"]
        assert f"epoch {above[0]}: " in label.get_text()
    else:
        assert label.get_text() == "epoch"
    shown = [r["epoch"] for r in full.records if max(r["train_loss"], r["val_loss"]) <= top]
    assert set(above) | set(shown) == set(range(1, full.epochs_run + 1))


def test_figure_without_a_stop_has_no_marker_and_no_faint_curves(
    runs: tuple[RunResult, RunResult],
) -> None:
    full, _ = runs
    no_stop = RunResult(
        run="early_stopping",
        records=full.records,
        epochs_run=full.epochs_run,
        restored_epoch=full.best_epoch,
        final=full.final,
    )
    figure = loss_figure(full, no_stop)
    assert set(lines_by_gid(figure)) == {GIDS["train"], GIDS["val"], GIDS["best"]}
    assert "no stop within 20 epochs: no epoch saved" in figure.texts[0].get_text()


def test_saved_png_is_small(runs: tuple[RunResult, RunResult], tmp_path: Path) -> None:
    path = save_figure(loss_figure(*runs), tmp_path / "loss.png")
    assert 10_000 < path.stat().st_size < 200_000


def test_summary_json_encodes_non_finite_losses_as_strings(
    runs: tuple[RunResult, RunResult], tmp_path: Path
) -> None:
    from earlystop._demo.report import summary, table_markdown, write_summary

    full, early = runs
    diverged = RunResult(
        run=early.run,
        records=early.records,
        epochs_run=early.epochs_run,
        wall_time_s=early.wall_time_s,
        final={**early.final, "val_loss": float("nan"), "test_loss": float("inf")},
    )
    facts = summary(full, diverged, config=SMALL, dataset="digits", sizes={"train": 1})
    table = table_markdown(full, diverged, monitor="val_loss")
    write_summary(tmp_path, facts, table)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["runs"]["early_stopping"]["final_val_loss"] == "nan"
    assert written["runs"]["early_stopping"]["final_test_loss"] == "inf"
    row = next(line for line in table.splitlines() if line.startswith("| test loss "))
    assert row.split("|")[3].strip() == "inf"
    assert (tmp_path / "summary.md").read_text().startswith("# earlystop demo: digits, seed 3")


def test_out_that_is_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "taken"
    target.write_text("")
    assert main(["demo", "--out", str(target), "--epochs", "1", "--patience", "0"]) == 2
    assert capsys.readouterr().err.startswith(
        f"earlystop demo: error: --out {target}: cannot create the folder"
    )


@pytest.mark.parametrize(
    ("argv", "warning"),
    [
        (
            ("--patience", "20", "--epochs", "2"),
            "--patience 20 >= the budget of 2 epochs: early stopping cannot stop before the "
            "budget ends, so both runs train every epoch (lower --patience or raise --epochs)",
        ),
        (("--lr-patience", "1"), "--lr-patience ignored without --lr-scheduler plateau"),
        (("--lr-factor", "0.5"), "--lr-factor ignored without --lr-scheduler plateau"),
        (("--data-dir", "."), "--data-dir ignored with --dataset digits (only mnist reads it)"),
        (
            ("--mode", "max"),
            "--mode max on val_loss: early stopping will treat a higher val_loss as better",
        ),
    ],
)
def test_inconsistent_flags_get_a_one_line_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], warning: str
) -> None:
    base = ["demo", "--out", str(tmp_path), "--quiet", "--epochs", "2", "--patience", "1"]
    assert main([*base, *argv]) == 0
    assert capsys.readouterr().err == f"earlystop demo: warning: {warning}\n"


def test_consistent_flags_get_no_warning() -> None:
    from earlystop._cli.demo import inconsistencies

    args = parse("--lr-scheduler", "plateau", "--lr-patience", "2", "--patience", "5")
    assert inconsistencies(args, config_from_args(args)) == []


def test_cli_json_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--out", str(tmp_path), "--json", "--epochs", "3", "--patience", "1"]
    assert main([*argv, "--batch-size", "256"]) == 0
    printed = capsys.readouterr()
    assert printed.err == ""  # no progress bars
    data = json.loads(printed.out)
    assert data == json.loads((tmp_path / "summary.json").read_text())
    assert data["runs"]["no_early_stopping"]["epochs_run"] == 3
