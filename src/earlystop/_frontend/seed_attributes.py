"""Checks and conversions behind the seed's writable attributes of ``EarlyStopping``.

early-stopping-pytorch keeps its state in plain attributes that user code writes to reset
or resume a run (``es.counter = 0``, ``es.early_stop = False``, ``es.val_loss_min = ...``)
and hands its ``path`` back as given. These helpers validate such writes and convert
paths; ``EarlyStopping`` applies them to the core.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePath
from typing import Any

from .._core.options import check_count
from .._core.values import to_float

__all__ = ["check_counter", "check_flag", "file_path", "reference_value", "user_path"]


def check_counter(value: Any) -> int:
    """A written ``counter``: an int >= 0."""
    return int(check_count("counter", value))


def check_flag(name: str, value: Any) -> bool:
    """A written boolean attribute (numpy booleans too, as the seed's own comparisons give)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise ValueError(f"`{name}` must be a bool, got {value!r}")


def reference_value(name: str, value: Any, sign: float, *, score: bool) -> float | None:
    """The monitored value a write to ``name`` makes the reference, ``None`` for none.

    Args:
        name: the attribute written, for messages.
        value: what was written: a real number (or one-element tensor/array) or ``None``.
        sign: ``+1`` in mode ``"min"``, ``-1`` in ``"max"``.
        score: ``value`` is a higher-is-better score (``best_score``), not a monitored value.

    ``inf`` in mode ``"min"`` (``-inf`` in ``"max"``), the seed's value before any
    evaluation, means "nothing to beat" and gives ``None``.
    """
    if value is None:
        return None
    number = to_float(value, name)
    monitored = -sign * number if score else number
    if monitored == math.inf * sign:
        return None
    if not math.isfinite(monitored):
        raise ValueError(
            f"`{name}` must be a finite number, None, or {'-' if score else ''}"
            f"{'inf' if sign > 0 else '-inf'} (nothing to beat), got {value!r}"
        )
    return monitored + 0.0  # -0.0 -> 0.0


def user_path(template: str | os.PathLike[str] | None, fold: int) -> str | os.PathLike[str] | None:
    """The file of ``fold``, of the type the user gave (``str`` or a ``PurePath`` class)."""
    if template is None:
        return None
    text = os.fspath(template)
    if "{fold}" not in text:
        return template
    filled = text.replace("{fold}", str(fold))
    if isinstance(template, str):
        return filled
    if isinstance(template, PurePath):
        return type(template)(filled)
    return Path(filled)


def file_path(template: str | os.PathLike[str] | None, fold: int) -> Path | None:
    """The file of ``fold`` as a ``Path``, for reading and writing it."""
    if template is None:
        return None
    return Path(os.fspath(template).replace("{fold}", str(fold)))
