"""earlystop: early stopping for PyTorch training, correct, fast and smart.

The decision core (:class:`Stopper`, :class:`Decision`) is pure Python; importing the
package imports neither torch nor numpy. :class:`EarlyStopping` is the PyTorch front end
and a drop-in for early-stopping-pytorch's ``EarlyStopping``.

The package is layered (see docs/architecture.md); each layer is a private subpackage and
this module is the public API:

- ``_core``: decisions, options, values, history, the stopper;
- ``_rules``: criteria, composition, smoothing, scheduler awareness, the SPEC language;
- ``_weights``: the in-memory keeper, checkpoint files, the background writer;
- ``_frontend``: ``EarlyStopping`` and the agreement across ranks;
- ``_replay``: the curves format, replay and tune;
- ``_demo`` and ``_cli``: the demo application and the command line.
"""

from __future__ import annotations

import logging

from ._core.decision import Decision, StopReason
from ._core.history import Criterion, History
from ._core.options import Mode, NonFinite
from ._core.protocols import Smoother
from ._core.stopper import Stopper
from ._core.values import to_float
from ._core.version import __version__
from ._frontend.distributed import Agreement, DistributedValueError, RanksOutOfStepError
from ._frontend.early_stopping import EarlyStopping
from ._replay.curves import Curve, CurveRecorder, CurvesError, read_curves
from ._replay.replay import Outcome, Summary, pareto_front, replay, replay_run, summarize
from ._replay.tune import patience_guidance
from ._rules.budget import BudgetPatience
from ._rules.compose import AllOf, AnyOf, Composite, all_of, any_of, composite
from ._rules.criteria import GL, PQ, UP, AdaptivePatience, Plateau
from ._rules.noise import NoiseDelta
from ._rules.policy import AUTO_SPEC, Policy, parse_policy
from ._rules.scheduler import SchedulerAware
from ._rules.smoothing import EMA, MovingMean, MovingMedian
from ._rules.trend import Rising, Trend, mann_kendall, theil_sen
from ._weights.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from ._weights.keeper import WeightsKeeper
from ._weights.lost import LostWeightsWarning
from ._weights.sharded import ReshardedError
from ._weights.sharded_checkpoint import export_sharded_checkpoint

__all__ = [  # noqa: RUF022 (plain sorted order, pinned by tests/test_import.py)
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
]

logging.getLogger("earlystop").addHandler(logging.NullHandler())
