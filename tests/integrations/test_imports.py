"""Integrations are opt-in: nothing heavy at import, a clear error without the framework."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def test_integrations_package_imports_no_framework_and_no_torch() -> None:
    code = (
        "import sys, earlystop.integrations\n"
        "heavy = {'torch', 'lightning', 'transformers', 'ignite', 'optuna', 'ray'}\n"
        "heavy &= set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


@pytest.mark.parametrize(
    ("adapter", "framework", "extra"),
    [
        ("lightning", "lightning.pytorch", "lightning"),
        ("transformers", "transformers", "transformers"),
        ("ignite", "ignite.engine", "ignite"),
        ("optuna", "optuna", "optuna"),
        ("ray", "ray.tune.stopper", "ray"),
    ],
)
def test_missing_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, adapter: str, framework: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, framework, None)  # makes `import framework` fail
    monkeypatch.delitem(sys.modules, f"earlystop.integrations.{adapter}", raising=False)
    with pytest.raises(
        ImportError,
        match=rf"earlystop\.integrations\.{extra} needs the `{framework}` package: "
        rf"pip install 'earlystop\[{extra}\]'",
    ):
        importlib.import_module(f"earlystop.integrations.{adapter}")
