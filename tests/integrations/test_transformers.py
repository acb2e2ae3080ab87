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
        loss = LOSSES[int(self.mark) - 1]
        return {"loss": torch.tensor(loss), "logits": torch.full((len(x), 1), 1.0 - loss)}


def score(prediction: Any) -> dict[str, float]:
    """``eval_score``: a higher-is-better metric, 1 - the scripted loss."""
    return {"score": float(prediction.predictions.mean())}


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
        **{
            "output_dir": str(tmp_path / "out"),
            "num_train_epochs": epochs,
            "per_device_train_batch_size": 4,
            "per_device_eval_batch_size": 4,
            "eval_strategy": "epoch",
            "save_strategy": kwargs.pop("save_strategy", "no"),
            "logging_strategy": "no",
            "report_to": [],
            "use_cpu": True,
            "disable_tqdm": True,
            "dataloader_num_workers": 0,
            **(arguments or {}),
        }
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=dataset(),
        eval_dataset=dataset(),
        callbacks=[callback, MarkEpochs()],
        compute_metrics=score,
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
        r"logged keys: epoch, eval_loss, eval_runtime, eval_samples_per_second, eval_score",
    ):
        train(callback, tmp_path)


# -- HF's names and training arguments, against HF's own callback ---------------------------

HF_ARGUMENTS = {"load_best_model_at_end": True, "save_strategy": "epoch"}
SHARED = [
    ("default-patience-1", {}, {"metric_for_best_model": "eval_loss"}),
    ("patience-3", {"early_stopping_patience": 3}, {"metric_for_best_model": "loss"}),
    ("greater-is-better", {"early_stopping_patience": 2}, {"metric_for_best_model": "score"}),
    (
        "threshold",
        {"early_stopping_patience": 2, "early_stopping_threshold": 0.1},
        {"metric_for_best_model": "eval_loss"},
    ),
    ("no-stop", {"early_stopping_patience": 9}, {"metric_for_best_model": "loss"}),
]


@pytest.mark.parametrize(
    ("kwargs", "arguments"), [c[1:] for c in SHARED], ids=[c[0] for c in SHARED]
)
def test_same_stop_as_hfs_callback(
    kwargs: dict[str, Any], arguments: dict[str, Any], tmp_path: Path
) -> None:
    runs = []
    for cls in (transformers.EarlyStoppingCallback, EarlyStoppingCallback):
        callback = cls(**kwargs)
        extra = {**arguments, **HF_ARGUMENTS} if cls is not EarlyStoppingCallback else arguments
        save = extra.pop("save_strategy", "no")
        trainer, _ = train(callback, tmp_path / cls.__module__, arguments=extra, save_strategy=save)
        runs.append((round(trainer.state.epoch), callback.early_stopping_patience_counter))
    assert runs[1] == runs[0]


def test_the_metric_and_direction_come_from_the_training_arguments(tmp_path: Path) -> None:
    callback = EarlyStoppingCallback(early_stopping_patience=2)
    trainer, model = train(callback, tmp_path, arguments={"metric_for_best_model": "score"})
    assert (callback.monitor, callback.early_stopping.stopper.mode.value) == ("eval_score", "max")
    assert (round(trainer.state.epoch), callback.best_epoch, float(model.mark)) == (4, 2, 2.0)
    explicit = EarlyStoppingCallback(monitor="eval_loss", mode="max", patience=1)
    train(explicit, tmp_path, epochs=2, arguments={"metric_for_best_model": "score"})
    assert explicit.early_stopping.stopper.mode.value == "max"


def test_hf_attributes_are_writable() -> None:
    callback = EarlyStoppingCallback(early_stopping_patience=2)
    callback.early_stopping_patience = 4
    callback.early_stopping_threshold = 0.5
    callback.early_stopping(1.0)
    callback.early_stopping_patience_counter = 3
    assert (callback.early_stopping.patience, callback.early_stopping.delta) == (4, 0.5)
    assert callback.early_stopping(1.2).should_stop  # wait 4 >= 4


def test_eval_strategy_no_is_refused(tmp_path: Path) -> None:
    message = (
        r"^EarlyStoppingCallback needs evaluations during training, but the "
        r"TrainingArguments have eval_strategy='no'"
    )
    with pytest.raises(ValueError, match=message):
        train(EarlyStoppingCallback(), tmp_path, arguments={"eval_strategy": "no"})


def test_eval_steps_beyond_the_run_are_refused(tmp_path: Path) -> None:
    # 10 epochs of 1 step: an evaluation every 50 steps would never happen
    with pytest.raises(ValueError, match=r"eval_steps=50 is beyond the 10 training steps"):
        train(
            EarlyStoppingCallback(),
            tmp_path,
            arguments={"eval_strategy": "steps", "eval_steps": 50},
        )
    trainer, _ = train(  # every 2 steps: 0.8 at step 2, then 3 worse: stop at step 8
        EarlyStoppingCallback(early_stopping_patience=3),
        tmp_path,
        arguments={"eval_strategy": "steps", "eval_steps": 2},
    )
    assert trainer.state.global_step == 8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"early_stopping_patience": 2, "patience": 3},
            r"^`patience` is earlystop's name for `early_stopping_patience`: give one of them",
        ),
        (
            {"early_stopping_threshold": 0.1, "min_delta": 0.2},
            r"^`min_delta` is earlystop's name for `early_stopping_threshold`",
        ),
        ({"early_stopping_patience": -1}, r"^`early_stopping_patience` must be an int >= 0"),
        ({"early_stopping_threshold": -1.0}, r"^`early_stopping_threshold` must be a finite"),
        ({"policy": "auto", "early_stopping_patience": 2}, r"^`policy` replaces the rule options"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EarlyStoppingCallback(**kwargs)


def test_patience_0_stops_at_the_first_non_improvement_not_at_once(tmp_path: Path) -> None:
    theirs = transformers.EarlyStoppingCallback(early_stopping_patience=0)
    arguments = {"metric_for_best_model": "loss", "load_best_model_at_end": True}
    trainer, _ = train(theirs, tmp_path / "hf", arguments=arguments, save_strategy="epoch")
    assert round(trainer.state.epoch) == 1  # HF: counter 0 >= patience 0 at once
    ours = EarlyStoppingCallback(early_stopping_patience=0)
    trainer, _ = train(ours, tmp_path / "ours", arguments={"metric_for_best_model": "loss"})
    assert round(trainer.state.epoch) == 3
