"""Models whose weights say which evaluation they are from."""

from __future__ import annotations

from typing import Any

import torch


def sentinel_model(index: float) -> Any:
    """A model whose every weight equals ``index``."""
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(index)
    return model


def set_index(model: Any, index: float) -> Any:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(index)
    return model


def held_index(model: Any) -> float:
    values = {float(v) for p in model.state_dict().values() for v in p.flatten().tolist()}
    assert len(values) == 1, values
    return values.pop()
