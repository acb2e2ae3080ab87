"""The CLI conventions: --version, --json/--quiet, and every failure as one line, exit 2.

Each command is run with each failure a new user meets: a bad flag, a missing optional
package (simulated by a ``sys.modules`` entry set to ``None``, which makes its import fail),
a missing or malformed file, and a figure path that cannot be written. The error must be
one line on stderr, name what to do, and come before any result is printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import earlystop
from earlystop._cli.main import main

SRC = Path(earlystop.__file__).resolve().parents[1]


@pytest.fixture
def curves(tmp_path: Path) -> Path:
    path = tmp_path / "curves.csv"
    rows = ["run,epoch,task,val_loss,test_loss"]
    for run in range(4):
        task = "small" if run < 2 else "large"
        for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.7, 0.8, 0.9], start=1):
            rows.append(f"r{run},{epoch},{task},{loss + run / 10},{loss}")
    path.write_text("\n".join(rows) + "\n")
    return path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_error_line(err: str, command: str, message: str) -> None:
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    assert err.startswith(f"earlystop {command}: error: "), err
    assert message in err, err
    assert "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"earlystop {earlystop.__version__}\n"
    pyproject = (SRC.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert f'\nversion = "{earlystop.__version__}"\n' in pyproject  # one version, two places


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--epochs", "x"], "earlystop demo: error: argument --epochs: expected an int"),
        (["replay"], "earlystop replay: error: the following arguments are required: CURVES"),
        (["tune", "--folds", "two"], "earlystop tune: error: argument --folds: invalid int"),
        (["nonsense"], "earlystop: error: argument COMMAND: invalid choice: 'nonsense'"),
        (["replay", "c.csv", "--policy", "p=1", "--json", "--quiet"], "not allowed with"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert message in err
    assert err.rstrip().endswith("--help)")


DEMO = ["demo", "--epochs", "1", "--patience", "0", "--out", "OUT"]
PLOT_EXTRA = "needs `matplotlib`, which is not installed: pip install 'earlystop[plot]'"


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        ("torch", DEMO, "needs PyTorch (`torch`), which is not installed: install torch first"),
        ("tqdm", DEMO, "needs `tqdm`, which is not installed: pip install 'earlystop[demo]'"),
        (
            "matplotlib",
            DEMO,
            "needs `matplotlib`, which is not installed: pip install 'earlystop[demo]'",
        ),
        (
            "sklearn",
            DEMO,
            "earlystop demo --dataset digits (scikit-learn's digits) needs `scikit-learn`, "
            "which is not installed: pip install 'earlystop[demo]'",
        ),
        (
            "matplotlib",
            ["replay", "CURVES", "--policy", "patience=1", "--plot", "f.png"],
            PLOT_EXTRA,
        ),
        ("matplotlib", ["tune", "CURVES", "--policy", "patience=1", "--plot", "f.png"], PLOT_EXTRA),
    ],
)
def test_a_missing_package_names_its_extra(
    module: str,
    argv: list[str],
    message: str,
    curves: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    places = {"CURVES": str(curves), "f.png": str(tmp_path / "f.png"), "OUT": str(tmp_path / "o")}
    status, out, err = run_cli([places.get(a, a) for a in argv], capsys)
    assert status == 2
    assert out == ""  # nothing printed before the error: no table, then a traceback
    assert_one_error_line(err, argv[0], message)
    assert not (tmp_path / "f.png").exists()
    assert not (tmp_path / "o").exists()  # nothing trained, nothing written


def test_a_missing_package_in_a_real_process_gives_no_traceback(
    curves: Path, tmp_path: Path
) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from earlystop._cli.main import main\n"
        f"sys.exit(main(['replay', {str(curves)!r}, '--policy', 'patience=1', "
        f"'--plot', {str(tmp_path / 'f.png')!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert_one_error_line(done.stderr, "replay", PLOT_EXTRA)


@pytest.mark.parametrize("command", ["replay", "tune"])
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing file", "No such file or directory"),
        ("malformed file", "column 'epoch' must be an integer, got 'x'"),
        ("monitored label", "column 'task' holds text (a label, such as 'small'), so it cannot"),
        ("unknown column", "no column 'val_acc' to monitor; has test_loss, val_loss"),
        ("bad policy", "patience"),
        ("plot suffix", "the file name must end in one of"),
        ("plot under a file", "cannot create the folder"),
        ("plot is a folder", "is a folder; give a file name"),
    ],
)
def test_curve_commands_fail_on_one_line(
    command: str,
    case: str,
    message: str,
    curves: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, extra = str(curves), []
    if case == "missing file":
        source = str(tmp_path / "nowhere.csv")
    elif case == "malformed file":
        bad = tmp_path / "bad.csv"
        bad.write_text("run,epoch,val_loss\na,x,1\n")
        source = str(bad)
    elif case == "monitored label":
        extra = ["--monitor", "task"]
    elif case == "unknown column":
        extra = ["--monitor", "val_acc"]
    elif case == "bad policy":
        extra = ["--policy", "patience=-1"]
    elif case == "plot suffix":
        extra = ["--plot", str(tmp_path / "figure.nope")]
    elif case == "plot under a file":
        (tmp_path / "file").write_text("")
        extra = ["--plot", str(tmp_path / "file" / "figure.png")]
    elif case == "plot is a folder":
        extra = ["--plot", str(tmp_path)]
    status, out, err = run_cli([command, source, "--policy", "patience=1", *extra], capsys)
    assert status == 2
    assert out == ""
    assert_one_error_line(err, command, message)


@pytest.mark.parametrize("command", ["replay", "tune"])
def test_plot_into_a_missing_folder_creates_it(
    command: str, curves: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new" / "folder" / "figure.png"
    argv = [command, str(curves), "--policy", "patience=1", "--policy", "auto", "--plot"]
    status, out, _ = run_cli([*argv, str(target)], capsys)
    assert status == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"figure saved to {target}" in out


@pytest.mark.parametrize("command", ["replay", "tune"])
def test_json_and_quiet(command: str, curves: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [command, str(curves), "--policy", "patience=1", "--policy", "auto", "--folds", "2"]
    if command == "replay":
        argv.remove("--folds")
        argv.remove("2")
    status, out, _ = run_cli([*argv, "--json"], capsys)
    assert status == 0
    json.loads(out)  # nothing but JSON on stdout
    status, quiet, _ = run_cli([*argv, "--quiet"], capsys)
    status, full, _ = run_cli(argv, capsys)
    assert len(quiet.splitlines()) < len(full.splitlines())
    assert full.count("auto = ") == 1  # the expansion, once
    if command == "tune":
        assert "auto = " not in quiet
        assert quiet == "patience=1\n" or quiet == "auto\n"


def test_tune_quiet_and_json_guidance(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["tune", "--samples", "500", "--quiet"], capsys)[1] == "7-10\n"
    data = json.loads(run_cli(["tune", "--samples", "500", "--json"], capsys)[1])
    assert data == {"samples": 500, "patience": [7, 10], "measured": True}
