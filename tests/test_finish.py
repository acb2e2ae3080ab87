"""Restore at the end of the budget: ``finish()`` and the ``with`` block.

Sentinel weights: before each evaluation the model's weight is set to the epoch number, so
the weight after the loop says which epoch's weights the model holds.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch

from earlystop import EarlyStopping


def train(
    early_stopping: EarlyStopping, losses: list[float], model: torch.nn.Module
) -> EarlyStopping:
    for epoch, loss in enumerate(losses, start=1):
        with torch.no_grad():
            model.weight.fill_(float(epoch))  # type: ignore[operator]
        if early_stopping(loss, model).should_stop:
            break
    return early_stopping


def weight(model: torch.nn.Module) -> float:
    return float(model.weight.item())  # type: ignore[operator]


NO_STOP = [3.0, 1.0, 2.0, 2.5]  # best at 2, patience 10 never stops
STOPS = [3.0, 1.0, 2.0, 2.5, 2.6]  # patience 2 stops at 4 and restores 2


@pytest.mark.parametrize(
    ("restore", "losses", "patience", "returned", "final_weight"),
    [
        (True, NO_STOP, 10, 2, 2.0),  # the budget ended first: restored now
        (True, STOPS, 2, 2, 2.0),  # stopped and restored at the stop: loaded again
        (False, NO_STOP, 10, None, 4.0),  # restore_best_weights=False: the last weights stay
    ],
)
def test_finish_restores_the_best_weights_at_the_end_of_the_budget(
    restore: bool, losses: list[float], patience: int, returned: int | None, final_weight: float
) -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    early_stopping = EarlyStopping(patience=patience, path=None, restore_best_weights=restore)
    train(early_stopping, losses, model)
    assert early_stopping.finish() == returned  # the model of the latest call
    assert weight(model) == final_weight


def test_finish_takes_another_model() -> None:
    model, other = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    early_stopping = train(
        EarlyStopping(patience=2, path=None, restore_best_weights=True), STOPS, model
    )
    assert early_stopping.finish(other) == 2  # restored into `other` too, though `model` has them
    assert weight(other) == 2.0


def test_with_block_restores_on_a_normal_exit() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    with EarlyStopping(patience=10, path=None, restore_best_weights=True) as early_stopping:
        train(early_stopping, NO_STOP, model)
        assert weight(model) == 4.0
    assert weight(model) == 2.0


def test_with_block_leaves_the_weights_after_an_exception() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    early_stopping = EarlyStopping(patience=10, path=None, restore_best_weights=True)

    def failing_loop() -> None:
        with early_stopping:
            train(early_stopping, NO_STOP, model)
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        failing_loop()
    assert weight(model) == 4.0  # as the failure left it, for inspection
    early_stopping.restore(model)
    assert weight(model) == 2.0


def test_finish_flushes_and_closes_a_background_writer(tmp_path: Path) -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    path = tmp_path / "best.pt"
    early_stopping = EarlyStopping(
        patience=10, path=path, restore_best_weights=True, background=True
    )
    train(early_stopping, NO_STOP, model)
    assert early_stopping.finish() == 2
    assert torch.load(path, weights_only=True)["weight"].item() == 2.0


def test_finish_without_best_weights_warns(caplog: pytest.LogCaptureFixture) -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    early_stopping = EarlyStopping(patience=10, path=None, restore_best_weights=True)
    early_stopping(float("nan"), model)  # stops on NaN, nothing improved
    with caplog.at_level(logging.WARNING, logger="earlystop"):
        assert early_stopping.finish() is None
    assert "nothing improved, so no best weights to restore" in caplog.text


def test_finish_after_reset_forgets_the_model() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    early_stopping = train(
        EarlyStopping(patience=10, path=None, restore_best_weights=True), NO_STOP, model
    )
    early_stopping.reset()
    assert early_stopping.finish() is None
    assert weight(model) == 4.0


def test_a_safetensors_path_without_the_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from earlystop import save_checkpoint

    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    message = r"package is not installed: pip install 'earlystop\[safetensors\]'"
    with pytest.raises(ValueError, match=message):
        EarlyStopping(path=tmp_path / "best.safetensors")  # at construction, before training
    message = r"need the `safetensors` package: pip install 'earlystop\[safetensors\]'"
    with pytest.raises(ImportError, match=message):
        save_checkpoint(tmp_path / "best.safetensors", {"w": torch.zeros(1)})
    assert not list(tmp_path.iterdir())
