"""Importing the package is cheap and does not import torch; the public API is pinned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import earlystop

SRC = Path(earlystop.__file__).resolve().parents[1]


def test_import_does_not_import_torch() -> None:
    code = (
        "import earlystop, sys; assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'numpy' not in sys.modules, 'numpy imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_public_api_is_pinned_and_sorted() -> None:
    assert earlystop.__all__ == sorted(earlystop.__all__)
    assert set(earlystop.__all__) == {
        "AUTO_SPEC",
        "AdaptivePatience",
        "Agreement",
        "AllOf",
        "AnyOf",
        "BudgetPatience",
        "Checkpoint",
        "CheckpointError",
        "Composite",
        "Criterion",
        "Curve",
        "CurveRecorder",
        "CurvesError",
        "Decision",
        "DistributedValueError",
        "EMA",
        "EarlyStopping",
        "GL",
        "History",
        "LostWeightsWarning",
        "Mode",
        "MovingMean",
        "MovingMedian",
        "NoiseDelta",
        "NonFinite",
        "Outcome",
        "PQ",
        "Plateau",
        "Policy",
        "RanksOutOfStepError",
        "ReshardedError",
        "Rising",
        "SchedulerAware",
        "Smoother",
        "StopReason",
        "Stopper",
        "Summary",
        "Trend",
        "UP",
        "WeightsKeeper",
        "__version__",
        "all_of",
        "any_of",
        "composite",
        "export_sharded_checkpoint",
        "load_checkpoint",
        "mann_kendall",
        "pareto_front",
        "parse_policy",
        "patience_guidance",
        "read_curves",
        "replay",
        "replay_run",
        "save_checkpoint",
        "summarize",
        "theil_sen",
        "to_float",
    }
