"""earlystop's Lightning ``EarlyStopping`` against Lightning's own, and on a real ``Trainer``.

Imported under Lightning's name, our class must behave as Lightning's callback (same
constructor, defaults, attributes, hooks, messages) except for the differences that
docs/integrations.md lists; those are tested here too, both behaviours side by side.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest

pl = pytest.importorskip("lightning.pytorch")
torch = pytest.importorskip("torch")

from lightning.pytorch.callbacks import EarlyStopping as TheirEarlyStopping  # noqa: E402
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason  # noqa: E402
from lightning.pytorch.utilities.exceptions import MisconfigurationException  # noqa: E402

from earlystop import LostWeightsWarning  # noqa: E402
from earlystop.integrations.lightning import EarlyStopping  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    pytest.mark.filterwarnings("ignore:.*`torch\\.jit\\.\\w+` is deprecated.*:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*number of training batches.*"),
    pytest.mark.filterwarnings(
        "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
    ),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
]

# patience 3: improves at 1 and 2, then 3 checks without improvement: stop at epoch index 4.
LOSSES = [1.0, 0.8, 0.85, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0]


class Scripted(pl.LightningModule):  # type: ignore[misc]
    """Logs scripted values; its buffer ``mark`` holds the current epoch (1-based)."""

    def __init__(self, losses: list[float], train_losses: list[float] | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.register_buffer("mark", torch.zeros(()))
        self.losses = losses
        self.train_losses = train_losses

    def on_train_epoch_start(self) -> None:
        self.mark.fill_(self.current_epoch + 1)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.train_losses is not None:
            self.log("train_metric", self.train_losses[self.current_epoch], on_epoch=True)
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self.losses[self.current_epoch])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader() -> Any:
    data = torch.utils.data.TensorDataset(torch.ones(4, 1))
    return torch.utils.data.DataLoader(data, batch_size=4)


def fit(callbacks: list[Any], tmp_path: Path, **options: Any) -> tuple[Any, Any]:
    model = Scripted(options.pop("losses", LOSSES), options.pop("train_losses", None))
    ckpt_path = options.pop("ckpt_path", None)
    trainer = pl.Trainer(
        max_epochs=options.pop("max_epochs", len(model.losses)),
        callbacks=callbacks,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=options.pop("enable_checkpointing", False),
        num_sanity_val_steps=options.pop("num_sanity_val_steps", 0),
        default_root_dir=tmp_path,
        **options,
    )
    trainer.fit(model, loader(), loader(), ckpt_path=ckpt_path)
    return trainer, model


def outcome(callback: Any, trainer: Any) -> tuple[Any, ...]:
    return (
        trainer.current_epoch,
        callback.stopped_epoch,
        callback.wait_count,
        float(callback.best_score),
        callback.stopping_reason,
        callback.stopping_reason_message,
    )


# -- the same checks through theirs and ours ---------------------------------------------

NAN, INF = math.nan, math.inf
# (values, constructor arguments); no documented difference applies to these
SHARED = [
    ("decreasing", [1.0, 0.5, 0.25, 0.125], {}),
    ("stalls", [1.0, 0.8, 0.85, 0.9, 0.95, 0.7], {}),
    ("ties", [1.0, 1.0, 1.0, 1.0], {"patience": 2}),
    ("patience-0", [1.0, 0.5, 0.5, 0.25], {"patience": 0}),
    ("patience-1", [1.0, 2.0, 0.5, 0.75], {"patience": 1}),
    ("delta-boundary", [1.0, 0.75, 0.5, 0.375, 0.25], {"min_delta": 0.25, "patience": 2}),
    ("sub-delta-gains-add-up", [1.0, 0.875, 0.75, 0.625, 0.5], {"min_delta": 0.25}),
    ("max-mode", [0.5, 0.75, 0.75, 0.7, 0.8, 0.6, 0.6, 0.6], {"mode": "max"}),
    ("negative-values", [-1.0, -2.0, -1.5, -2.0, -3.0, -2.5], {"min_delta": 0.5, "patience": 2}),
    ("nan-counted-without-check-finite", [1.0, NAN, 0.5, NAN, NAN, NAN], {"check_finite": False}),
    ("reaches-nothing", [1.0, 0.9, 0.8], {"stopping_threshold": 0.5, "divergence_threshold": 2.0}),
    ("stopping-threshold-passed", [1.0, 0.5, 0.8, 0.9], {"stopping_threshold": 0.4}),
]


def step_both(values: list[float], kwargs: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    theirs = TheirEarlyStopping(monitor="val_loss", **kwargs)
    ours = EarlyStopping(monitor="val_loss", **kwargs)
    traces: tuple[list[Any], list[Any]] = ([], [])
    for value in values:
        for callback, trace in zip((theirs, ours), traces, strict=True):
            stop, _ = callback._evaluate_stopping_criteria(torch.tensor(value))
            trace.append(
                (stop, callback.wait_count, float(callback.best_score), callback.stopping_reason)
            )
    return traces


@pytest.mark.parametrize(("values", "kwargs"), [c[1:] for c in SHARED], ids=[c[0] for c in SHARED])
def test_same_decisions_as_lightnings_callback(values: list[float], kwargs: dict[str, Any]) -> None:
    theirs, ours = step_both(values, kwargs)
    assert ours == theirs


def test_the_shared_table_is_not_trivial() -> None:
    theirs, _ = step_both([1.0, 0.8, 0.85, 0.9, 0.95, 0.7], {})
    assert [(stop, wait) for stop, wait, _, _ in theirs] == [
        (False, 0),
        (False, 0),
        (False, 1),
        (False, 2),
        (True, 3),
        (False, 0),
    ]


TRAINER_CASES = [
    ("patience", LOSSES, {}, {}),
    ("max-epochs-reached", [1.0, 0.9, 0.8, 0.7], {}, {}),
    ("check-after-validation", LOSSES, {"check_on_train_epoch_end": False}, {}),
    ("every-second-epoch", LOSSES, {"patience": 1}, {"check_val_every_n_epoch": 2}),
    ("min-epochs-past-the-stop", LOSSES, {}, {"min_epochs": 7}),
]


@pytest.mark.parametrize(
    ("losses", "kwargs", "trainer_options"),
    [c[1:] for c in TRAINER_CASES],
    ids=[c[0] for c in TRAINER_CASES],
)
def test_same_outcome_on_a_real_trainer(
    losses: list[float], kwargs: dict[str, Any], trainer_options: dict[str, Any], tmp_path: Path
) -> None:
    runs = []
    for cls in (TheirEarlyStopping, EarlyStopping):
        callback = cls(monitor="val_loss", **kwargs)
        trainer, model = fit([callback], tmp_path, losses=losses, **trainer_options)
        assert trainer.early_stopping_callback is callback
        runs.append((*outcome(callback, trainer), float(model.mark)))
    assert runs[1] == runs[0]


def test_a_train_epoch_metric_can_be_monitored(tmp_path: Path) -> None:
    runs = []
    for cls in (TheirEarlyStopping, EarlyStopping):
        callback = cls(monitor="train_metric", patience=2, check_on_train_epoch_end=True)
        trainer, _ = fit([callback], tmp_path, train_losses=[3.0, 2.0, 2.5, 2.5, 1.0, 0.5])
        runs.append(outcome(callback, trainer))
    assert runs[1] == runs[0]
    assert runs[1][:2] == (4, 3)  # stopped in epoch index 3, after the 4th epoch


def test_verbose_logs_lightnings_messages(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    logs = []
    for cls in (TheirEarlyStopping, EarlyStopping):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lightning.pytorch.callbacks.early_stopping"):
            fit([cls(monitor="val_loss", verbose=True)], tmp_path)
        logs.append([r.getMessage() for r in caplog.records if "early_stopping" in r.name])
    assert logs[1] == logs[0]
    assert logs[1][-1] == (
        "Monitored metric val_loss did not improve in the last 3 records. Best score: 0.800. "
        "Signaling Trainer to stop."
    )


def test_strict_missing_metric_is_lightnings_error(tmp_path: Path) -> None:
    for cls in (TheirEarlyStopping, EarlyStopping):
        with pytest.raises(
            RuntimeError,
            match=r"^Early stopping conditioned on metric `val_acc` which is not available\. "
            r"Pass in or modify your `EarlyStopping` callback to use any of the following: "
            r"`val_loss`$",
        ):
            fit([cls(monitor="val_acc")], tmp_path)
        trainer, _ = fit([cls(monitor="val_acc", strict=False)], tmp_path)  # goes on
        assert trainer.current_epoch == len(LOSSES)


def test_constructor_and_attributes_are_lightnings() -> None:
    theirs, ours = TheirEarlyStopping("val_loss"), EarlyStopping("val_loss")
    assert isinstance(ours, TheirEarlyStopping)
    names = [
        "monitor", "min_delta", "patience", "verbose", "mode", "strict", "check_finite",
        "stopping_threshold", "divergence_threshold", "log_rank_zero_only", "wait_count",
        "stopped_epoch", "stopping_reason", "stopping_reason_message", "state_key",
    ]  # fmt: skip
    assert [getattr(ours, n) for n in names] == [getattr(theirs, n) for n in names]
    assert float(ours.best_score) == float(theirs.best_score) == math.inf
    assert ours.patience == 3
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'monitor'"):
        EarlyStopping()  # type: ignore[call-arg]
    positional = EarlyStopping("acc", 0.1, 5, False, "max", False, False, 0.9, 0.1, True, True)
    assert (positional.patience, positional.mode, positional.check_finite) == (5, "max", False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "avg"}, MisconfigurationException, r"^`mode` can be min, max, got avg$"),
        ({"monitor": ""}, ValueError, r"^`monitor` must be a non-empty metric name, got ''$"),
        ({"patience": -1}, ValueError, r"^`patience` must be an int >= 0 or None, got -1$"),
        ({"min_delta": -0.1}, ValueError, r"^`min_delta` must be a finite float >= 0, got -0\.1$"),
        ({"restore_best_weights": 1}, ValueError, r"^`restore_best_weights` must be a bool"),
        ({"checkpoint_best_weights": "y"}, ValueError, r"^`checkpoint_best_weights` must be a"),
        (
            {"check_finite": False, "on_nonfinite": "stop"},
            ValueError,
            r"^`check_finite=False` and `on_nonfinite='stop'` contradict each other",
        ),
        (
            {"policy": "auto", "patience": 5},
            ValueError,
            r"^`policy` replaces the rule options; got policy='auto' and patience=5$",
        ),
        ({"model": None}, TypeError, r"'model' cannot be passed to an integration"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        EarlyStopping(**{"monitor": "val_loss", **kwargs})


# -- deliberate differences ----------------------------------------------------------------


def test_stopping_threshold_is_inclusive_and_its_value_can_be_the_best() -> None:
    theirs, ours = step_both([1.0, 0.5, 0.25], {"stopping_threshold": 0.25})
    assert [t[0] for t in theirs] == [False, False, False]  # Lightning: 0.25 < 0.25 is False
    assert [t[0] for t in ours] == [False, False, True]
    theirs, ours = step_both([1.0, 0.2], {"stopping_threshold": 0.25})
    assert theirs[-1][:3] == (True, 0, 1.0)  # Lightning stops but keeps 1.0 as the best
    assert ours[-1][:2] == (True, 0)
    assert ours[-1][2] == pytest.approx(0.2)  # ours: 0.2 improved (its weights are the best)


STOP_AT_ONCE = [
    ([1.0, 3.0], {"divergence_threshold": 2.0}, EarlyStoppingReason.DIVERGENCE_THRESHOLD),
    ([1.0, 0.5, NAN], {}, EarlyStoppingReason.NON_FINITE_METRIC),
    ([1.0, INF], {}, EarlyStoppingReason.NON_FINITE_METRIC),
]


@pytest.mark.parametrize(("values", "kwargs", "reason"), STOP_AT_ONCE)
def test_a_check_that_stops_at_once_still_counts_without_improvement(
    values: list[float], kwargs: dict[str, Any], reason: Any
) -> None:
    theirs, ours = step_both(values, kwargs)
    assert ours[:-1] == theirs[:-1]
    stop, wait, best, why = theirs[-1]
    assert (stop, why) == (True, reason)
    assert ours[-1] == (True, wait + 1, best, reason)  # Lightning leaves wait_count alone


def test_negative_min_delta_lets_worse_values_improve_in_lightning_only() -> None:
    theirs = TheirEarlyStopping(monitor="val_loss", min_delta=-0.5)
    theirs._evaluate_stopping_criteria(torch.tensor(1.0))
    theirs._evaluate_stopping_criteria(torch.tensor(1.25))
    assert float(theirs.best_score) == 1.25  # a worse value became the best
    with pytest.raises(ValueError, match=r"^`min_delta` must be a finite float >= 0"):
        EarlyStopping(monitor="val_loss", min_delta=-0.5)


# -- earlystop's options ----------------------------------------------------------------------


def test_restore_best_weights(tmp_path: Path) -> None:
    callback = EarlyStopping(monitor="val_loss", restore_best_weights=True)
    trainer, model = fit([callback], tmp_path)
    assert (trainer.current_epoch, callback.stopped_epoch, callback.best_epoch) == (5, 4, 2)
    assert (float(model.mark), callback.restored_step) == (2.0, 2)
    _, model = fit([EarlyStopping(monitor="val_loss")], tmp_path)  # Lightning's default
    assert float(model.mark) == 5.0


def test_restored_when_fit_ends_not_at_the_stop_decision(tmp_path: Path) -> None:
    callback = EarlyStopping(monitor="val_loss", restore_best_weights=True)
    trainer, model = fit([callback], tmp_path, min_epochs=7)
    assert trainer.current_epoch == 7
    assert float(model.mark) == 2.0


def test_the_callback_that_stopped_training_restores(tmp_path: Path) -> None:
    # `late` (patience 3 on val_loss) would keep epoch 2; `early` (patience 1 on a training
    # metric whose best is epoch 1) stops first, at epoch 3: its best weights come back.
    late = EarlyStopping(monitor="val_loss", restore_best_weights=True)
    early = EarlyStopping(monitor="train_metric", patience=1, restore_best_weights=True, mode="max")
    trainer, model = fit([late, early], tmp_path, train_losses=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert trainer.early_stopping_callback is late
    assert (early.stopped_epoch, early.best_epoch, late.last_decision.should_stop) == (1, 1, False)
    assert (float(model.mark), early.restored_step, late.restored_step) == (1.0, 1, None)


def test_policy_and_criteria_reach_the_core(tmp_path: Path) -> None:
    callback = EarlyStopping(monitor="val_loss", policy="patience=1")
    fit([callback], tmp_path)
    assert (callback.stopped_epoch, callback.last_decision.reason) == (2, "patience")

    def plateau(history: Any) -> str | None:
        return "plateau" if len(history) >= 3 and history.values[-1] > 0.84 else None

    callback = EarlyStopping(monitor="val_loss", patience=100, criteria=[plateau])
    fit([callback], tmp_path)
    assert (callback.stopped_epoch, callback.stopping_reason) == (
        2,
        EarlyStoppingReason.PATIENCE_EXHAUSTED,
    )
    assert callback.stopping_reason_message.startswith("criterion plateau")


def checkpoint_and_resume(tmp_path: Path, **kwargs: Any) -> tuple[Any, Any, Any, Path]:
    """Run 3 epochs with checkpoints, then resume from last.ckpt with a new callback."""
    first = EarlyStopping(monitor="val_loss", restore_best_weights=True, **kwargs)
    saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    fit([first, saver], tmp_path, max_epochs=3, enable_checkpointing=True)
    resumed = EarlyStopping(monitor="val_loss", restore_best_weights=True, **kwargs)
    again = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    last = tmp_path / "ckpt" / "last.ckpt"
    trainer, model = fit([resumed, again], tmp_path, ckpt_path=str(last), enable_checkpointing=True)
    return resumed, trainer, model, last


def test_checkpoints_carry_no_weights_unless_asked(tmp_path: Path) -> None:
    with pytest.warns(LostWeightsWarning, match=r"best weights \(evaluation 2\) were kept by an"):
        resumed, trainer, model, last = checkpoint_and_resume(tmp_path)
    assert (trainer.current_epoch, resumed.stopped_epoch, resumed.best_epoch) == (5, 4, 2)
    assert float(model.mark) == 5.0  # the best of epoch 2 was in the first process's memory
    state = torch.load(last, weights_only=False)["callbacks"][resumed.state_key]
    assert "best_weights" not in state
    assert {"wait_count", "best_score", "stopped_epoch", "earlystop"} <= state.keys()


def test_checkpoint_best_weights_restores_across_a_resume(tmp_path: Path) -> None:
    resumed, trainer, model, last = checkpoint_and_resume(tmp_path, checkpoint_best_weights=True)
    assert (trainer.current_epoch, resumed.stopped_epoch, float(model.mark)) == (5, 4, 2.0)
    state = torch.load(last, weights_only=False)["callbacks"][resumed.state_key]
    assert set(state["best_weights"]) == {"mark", "layer.weight", "layer.bias"}


def test_path_restores_across_a_resume(tmp_path: Path) -> None:
    resumed, _, model, _ = checkpoint_and_resume(tmp_path, path=tmp_path / "best.pt")
    assert (resumed.stopped_epoch, float(model.mark)) == (4, 2.0)


@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_resumes_from_a_checkpoint_of_lightnings_own_callback(tmp_path: Path) -> None:
    theirs = TheirEarlyStopping(monitor="val_loss")
    saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    fit([theirs, saver], tmp_path, max_epochs=3, enable_checkpointing=True)
    ours = EarlyStopping(monitor="val_loss")
    trainer, _ = fit(
        [ours], tmp_path, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"), enable_checkpointing=True
    )
    uninterrupted = TheirEarlyStopping(monitor="val_loss")
    reference, _ = fit([uninterrupted], tmp_path)
    assert outcome(ours, trainer) == outcome(uninterrupted, reference)


def test_load_state_dict_names_missing_keys() -> None:
    with pytest.raises(ValueError, match=r"is missing keys: best_score, stopped_epoch$"):
        EarlyStopping(monitor="val_loss").load_state_dict({"wait_count": 1})


# -- random sequences: no documented difference applies (no thresholds, finite values) ------

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
grid = st.integers(-256, 256).map(lambda k: k / 16)  # exact in float32, so both compare alike


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    values=st.lists(grid, min_size=1, max_size=20),
    patience=st.integers(0, 4),
    min_delta=st.integers(0, 8).map(lambda k: k / 16),
    mode=st.sampled_from(["min", "max"]),
)
def test_same_decisions_on_random_sequences(
    values: list[float], patience: int, min_delta: float, mode: str
) -> None:
    theirs, ours = step_both(values, {"patience": patience, "min_delta": min_delta, "mode": mode})
    assert ours == theirs
