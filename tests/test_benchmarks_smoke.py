"""``benchmarks/overhead.py --quick`` runs and reports every case (no timing assertions)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from benchmark_runs import run_quick

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "overhead.py"


def load_script() -> ModuleType:
    if "overhead" in sys.modules:
        return sys.modules["overhead"]
    spec = importlib.util.spec_from_file_location("overhead", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["overhead"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_quick(SCRIPT, "earlystop-smoke-")


def test_quick_run_reports_every_case_for_every_model(report: dict[str, Any]) -> None:
    assert [m["name"] for m in report["models"]] == ["16k", "100k"]
    assert len(report["load_start"]) == len(report["load_end"]) == 3
    for model in report["models"]:
        assert set(model["non_improving_us"]) == {
            "earlystop EarlyStopping",
            "earlystop Stopper (core)",
            "early-stopping-pytorch 1.0.10",
        }
        improving = model["improving_s"]
        assert len(improving) == 12
        assert {"ref copy_ into preallocated", "earlystop background, writer busy"} <= set(
            improving
        )
        figures = [*model["non_improving_us"].values(), *improving.values()]
        figures += list(model["ratios"].values())
        assert all(math.isfinite(x) and x > 0 for x in figures)


def test_memory_figures_are_exact_where_they_can_be(report: dict[str, Any]) -> None:
    for model in report["models"]:
        memory = model["memory"]
        assert memory["keeper_bytes"] == memory["state_bytes"] == model["state_bytes"]
        assert memory["keeper_allocations"] == 1
        assert memory["improvements"] == 5


@pytest.mark.parametrize("renderer", ["render_text", "render_markdown"])
def test_saved_report_renders_with_targets(report: dict[str, Any], renderer: str) -> None:
    text = getattr(load_script(), renderer)(report)
    assert "command: python benchmarks/overhead.py --quick --json --quiet" in text
    assert "earlystop in memory / copy_" in text
    assert "<= 5.0 µs" in text
    assert "RSS delta after N / state bytes" in text
