"""Numbers as SPEC text."""

from __future__ import annotations

__all__ = ["spec_number"]


def spec_number(value: float) -> str:
    """Shortest text that parses back to ``value`` (``2`` rather than ``2.0``)."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
