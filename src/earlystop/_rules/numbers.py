"""Numbers as SPEC text."""

from __future__ import annotations

__all__ = ["spec_number"]


def spec_number(value: float) -> str:
    """Text that parses back to ``value``, as an int or a float (``2`` rather than ``2.0``).

    An integral value is written as an integer however large (``up=1e15`` becomes
    ``up=1000000000000000``), so that options parsed as ints read it back.

    >>> spec_number(2.0), spec_number(0.25), spec_number(1e15)
    ('2', '0.25', '1000000000000000')
    """
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return repr(value)
