"""Conversion of monitored values to ``float`` without importing torch."""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any

__all__ = ["decode_float", "encode_float", "to_float"]


def _torch_tensor_type() -> type | None:
    torch = sys.modules.get("torch")
    return None if torch is None else torch.Tensor


def to_float(value: Any, name: str = "value") -> float:
    """Convert one monitored value to a Python float.

    Accepted: Python and numpy real scalars, 0-dim or one-element numpy arrays and torch
    tensors (any device, with or without grad), and any object with ``__float__``.
    Rejected with ``TypeError`` naming the type: ``None``, strings, bytes, booleans,
    complex numbers, arrays or tensors with more or fewer than one element, masked array
    elements and tensors without data (``meta`` device). Rejected with ``ValueError``: a
    number too large for a float (``10**400``).

    >>> to_float(3)
    3.0
    >>> to_float("0.5")
    Traceback (most recent call last):
    ...
    TypeError: `value` must be a real number or a one-element array or tensor, got str
    """
    if type(value) is float:
        return value
    if value is None or isinstance(value, (bool, str, bytes, bytearray, complex)):
        raise _type_error(name, value)
    tensor_type = _torch_tensor_type()
    if tensor_type is not None and isinstance(value, tensor_type):
        return _tensor_to_float(value, name)
    if hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "reshape"):
        return _array_to_float(value, name)  # numpy arrays and numpy scalars
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError as exc:
            raise ValueError(
                f"`{name}` must fit in a float (|value| <= 1.8e308), got "
                f"{type(value).__name__} out of that range"
            ) from exc
    if hasattr(type(value), "__float__"):
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _type_error(name, value) from exc
    raise _type_error(name, value)


def _tensor_to_float(value: Any, name: str) -> float:
    numel = int(value.numel())
    if numel != 1:
        raise TypeError(
            f"`{name}` must be a one-element tensor, got a tensor of shape "
            f"{tuple(value.shape)} ({numel} elements)"
        )
    if value.dtype.is_complex or str(value.dtype) == "torch.bool":
        raise TypeError(f"`{name}` must be a real-valued tensor, got dtype {value.dtype}")
    if value.is_meta:
        raise TypeError(f"`{name}` must be a tensor with data, got a tensor on the meta device")
    try:
        return float(value.detach().reshape(()).item())
    except (RuntimeError, NotImplementedError) as exc:
        raise TypeError(
            f"`{name}` must be a dense tensor whose value can be read, got a {value.layout} "
            f"tensor on {value.device} ({str(exc).strip().splitlines()[0]})"
        ) from exc


def _array_to_float(value: Any, name: str) -> float:
    size = int(value.size)
    if size != 1:
        raise TypeError(
            f"`{name}` must be a one-element array, got an array of shape "
            f"{tuple(value.shape)} ({size} elements)"
        )
    kind = getattr(value.dtype, "kind", "f")
    if kind not in "iuf":
        raise TypeError(f"`{name}` must be a real-valued array, got dtype {value.dtype}")
    mask = getattr(value, "mask", None)
    if mask is not None and bool(getattr(mask, "any", lambda: mask)()):
        raise TypeError(f"`{name}` must not be a masked array element, got {value!r}")
    return float(value.reshape(()).item())


def _type_error(name: str, value: Any) -> TypeError:
    return TypeError(
        f"`{name}` must be a real number or a one-element array or tensor, "
        f"got {type(value).__name__}"
    )


def encode_float(value: float | None) -> float | str | None:
    """Encode a float for strict JSON: non-finite values become ``"nan"``/``"inf"``/``"-inf"``."""
    if value is None or math.isfinite(value):
        return value
    return repr(value)


def decode_float(value: object, name: str) -> float:
    """Inverse of :func:`encode_float` for a value that must not be ``None``."""
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # a JSON integer such as 10**400
            raise ValueError(
                f"state entry `{name}` must be a number that fits in a float "
                f"(|value| <= 1.8e308), got an integer of {len(str(abs(value)))} digits"
            ) from None
    raise ValueError(f"state entry `{name}` must be a number, got {value!r}")
