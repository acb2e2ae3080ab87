"""The HF ``TrainerCallback`` on a real ``Trainer``: stop step, restored weights, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from earlystop.integrations.transformers import EarlyStoppingCallback  # noqa: E402

# patience 3: improves at 1 and 2, then 3 evaluations without improvement: stop at 5.
LOSSES = [1.0, 0.8, 0.85, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0]


class Sentinel(torch.nn.Module):  # type: ignore[misc]
    """In evaluation returns the scripted loss of the epoch held in its buffer ``mark``."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.register_buffer("mark", torch.zeros(()))

    def forward(self, x: Any, labels: Any = None) -> dict[str, Any]:
        if self.training:
            return {"loss": (self.layer(x) - labels).pow(2).mean()}
        return {"loss": torch.tensor(LOSSES[int(self.mark) - 1])}


class MarkEpochs(transformers.TrainerCallback):  # type: ignore[misc]
    """Writes the 1-based epoch number into the model's ``mark`` at each epoch start."""

    def on_epoch_begin(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any):  # type: ignore[no-untyped-def]
        model.mark.fill_(round(state.epoch) + 1)


def dataset() -> list[dict[str, Any]]:
    return [{"x": torch.ones(1), "labels": torch.zeros(1)} for _ in range(4)]


def train(
    callback: Any,
    tmp_path: Path,
    epochs: int = len(LOSSES),
    arguments: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    model = Sentinel()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=epochs,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        eval_strategy="epoch",
        save_strategy=kwargs.pop("save_strategy", "no"),
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        **(arguments or {}),
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=dataset(),
        eval_dataset=dataset(),
        callbacks=[callback, MarkEpochs()],
    )
    trainer.train(**kwargs)
    return trainer, model


def test_stops_at_the_expected_evaluation_and_restores_the_best_weights(tmp_path: Path) -> None:
    callback = EarlyStoppingCallback(monitor="eval_loss", patience=3)
    trainer, model = train(callback, tmp_path)
    assert callback.stopped_epoch == 5
    assert round(trainer.state.epoch) == 5
    assert callback.best_epoch == 2
    assert float(model.mark) == 2.0  # in memory: no load_best_model_at_end, no checkpoint
    assert callback.restored_step == 2
    assert not any((tmp_path / "out").glob("checkpoint-*"))


def test_tiny_gains_do_not_move_the_reference(tmp_path: Path, monkeypatch: Any) -> None:
    # Steady gains of 0.006 per epoch with min_delta 0.01 and patience 2. HF's callback
    # compares each value with the previous best, which moves on any gain, so no gain
    # ever exceeds the threshold and it stops at epoch 3. Here the reference moves only
    # on an improvement: two gains add up to 0.012 > 0.01, so epochs 3, 5, 7, 9 improve.
    steps = [1.0 - 0.006 * i for i in range(10)]
    monkeypatch.setattr(f"{__name__}.LOSSES", steps)
    callback = EarlyStoppingCallback(patience=2, min_delta=0.01)
    train(callback, tmp_path)
    assert callback.stopped_epoch is None
    assert callback.best_epoch == 9

    theirs = transformers.EarlyStoppingCallback(
        early_stopping_patience=2, early_stopping_threshold=0.01
    )
    arguments = {"load_best_model_at_end": True, "metric_for_best_model": "eval_loss"}
    trainer, _ = train(theirs, tmp_path, arguments=arguments, save_strategy="epoch")
    assert round(trainer.state.epoch) == 3  # HF's own callback stops at epoch 3


def test_state_survives_a_resumed_trainer(tmp_path: Path) -> None:
    first = EarlyStoppingCallback(patience=3, path=tmp_path / "best.pt")
    train(first, tmp_path, epochs=3, save_strategy="epoch")
    assert first.stopped_epoch is None
    checkpoint = max((tmp_path / "out").glob("checkpoint-*"), key=lambda p: p.stat().st_mtime)

    resumed = EarlyStoppingCallback(patience=3, path=tmp_path / "best.pt")
    trainer, model = train(
        resumed, tmp_path, save_strategy="epoch", resume_from_checkpoint=str(checkpoint)
    )
    assert resumed.stopped_epoch == 5  # as in the uninterrupted run
    assert round(trainer.state.epoch) == 5
    assert resumed.best_epoch == 2
    assert float(model.mark) == 2.0  # best weights of before the resume, read from `path`


def test_missing_monitor_lists_the_metrics(tmp_path: Path) -> None:
    callback = EarlyStoppingCallback(monitor="eval_accuracy")
    with pytest.raises(
        KeyError,
        match=r"monitored metric 'eval_accuracy' is not in the evaluation metrics; "
        r"logged keys: epoch, eval_loss, eval_runtime",
    ):
        train(callback, tmp_path)


def test_eval_strategy_no_is_refused_at_the_start_of_training(tmp_path: Path) -> None:
    callback = EarlyStoppingCallback(monitor="eval_loss", patience=3)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=3,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    model = Sentinel()
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=dataset(), callbacks=[callback, MarkEpochs()]
    )
    with pytest.raises(
        ValueError,
        match=r"^EarlyStoppingCallback needs evaluations to decide, but "
        r"TrainingArguments\(eval_strategy='no'\) never evaluates",
    ):
        trainer.train()
    assert float(model.mark) == 0.0  # refused before the first epoch
