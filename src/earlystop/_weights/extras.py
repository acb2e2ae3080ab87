"""Optional packages of the weights layer, with errors that name the extra to install."""

from __future__ import annotations

import importlib

__all__ = ["SAFETENSORS_MISSING", "require_safetensors"]

SAFETENSORS_MISSING = (
    "checkpoints ending in .safetensors need the `safetensors` package: "
    "pip install 'earlystop[safetensors]'"
)


def require_safetensors() -> None:
    """Import ``safetensors.torch``, or raise ``ImportError`` naming the extra."""
    try:
        importlib.import_module("safetensors.torch")
    except ImportError as exc:
        raise ImportError(SAFETENSORS_MISSING) from exc
