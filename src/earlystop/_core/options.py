"""Parsing and validation of the options shared by every front end."""

from __future__ import annotations

import enum
import math
import numbers
from typing import Any

__all__ = ["Mode", "NonFinite", "check_count", "check_delta", "check_threshold", "parse_enum"]


class Mode(enum.Enum):
    """Direction of improvement of the monitored value."""

    MIN = "min"
    MAX = "max"

    @property
    def sign(self) -> float:
        """``+1.0`` for ``min`` and ``-1.0`` for ``max``: ``sign * (a - b) < 0`` means a beats b."""
        return 1.0 if self is Mode.MIN else -1.0


class NonFinite(enum.Enum):
    """What a NaN or infinite monitored value does (it never becomes the best)."""

    STOP = "stop"  #: stop at once, with reason ``non_finite``
    COUNT = "count"  #: count it as an evaluation without improvement
    RAISE = "raise"  #: raise ``ValueError``


def parse_enum(name: str, value: Any, enum_type: type[enum.Enum]) -> Any:
    """Return the member of ``enum_type`` for ``value`` (a member or its string value)."""
    if isinstance(value, enum_type):
        return value
    choices = [member.value for member in enum_type]
    if isinstance(value, str) and value in choices:
        return enum_type(value)
    expected = " or ".join(repr(choice) for choice in choices)
    raise ValueError(f"`{name}` must be {expected}, got {value!r}")


def check_count(name: str, value: Any, *, allow_none: bool = False) -> Any:
    """Validate an int >= 0 (``None`` too when ``allow_none``); numpy integers are ints."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        suffix = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be an int >= 0{suffix}, got {value!r}")
    return int(value)


def check_delta(name: str, value: Any) -> float:
    """Validate a finite real >= 0 (numpy scalars included) and return it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a finite float >= 0, got {value!r}")
    result = _as_float(value)
    if not math.isfinite(result) or result < 0:
        raise ValueError(f"`{name}` must be a finite float >= 0, got {value!r}")
    return result


def check_threshold(name: str, value: Any) -> float | None:
    """Validate an optional finite real (numpy scalars included), returned as a float."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a finite float or None, got {value!r}")
    result = _as_float(value)
    if not math.isfinite(result):
        raise ValueError(f"`{name}` must be a finite float or None, got {value!r}")
    return result


def _as_float(value: numbers.Real) -> float:
    """``float(value)``, with ints beyond the float range as infinities (then refused)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf
