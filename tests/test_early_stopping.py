"""The PyTorch front end: the seed's loop, sentinel weights, folds, resume, logging."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from earlystop import CheckpointError, Decision, EarlyStopping, LostWeightsWarning, load_checkpoint

# validation losses: the best is epoch 4 (1-based); the rest never beat it by 0.001
LOSSES = [1.0, 0.75, 0.5, 0.25, 0.2505, 0.3, 0.25, 0.4, 0.26, 0.5, 0.6, 0.7, 0.8, 0.9]
BEST_EPOCH = 4
STOP_EPOCH = 11  # patience 7 with delta 0.001


class Sentinel(nn.Module):
    """A model whose weights say which epoch they come from."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(4))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.int64))

    def set_epoch(self, epoch: int) -> None:
        with torch.no_grad():
            self.weight.fill_(float(epoch))
            self.epoch.fill_(epoch)


def epoch_of(source: nn.Module | dict[str, Any]) -> int:
    state = source.state_dict() if isinstance(source, nn.Module) else source
    weight, epoch = state["weight"], int(state["epoch"])
    assert torch.equal(weight, torch.full((4,), float(epoch)))
    return epoch


def train(
    es: EarlyStopping, model: Sentinel, losses: list[float], start: int = 1, **kw: Any
) -> list[Decision]:
    """The loop the seed documents, with the weights of epoch e set before its evaluation."""
    decisions = []
    for epoch, loss in enumerate(losses, start=start):
        model.set_epoch(epoch)
        decisions.append(es(loss, model, **kw))
        if es.early_stop:
            break
    return decisions


# The loop from the seed's README (issue 2), verbatim apart from the import above it.
SEED_LOOP = """
early_stopping = EarlyStopping(patience=7, verbose=True, delta=0.001, path='best_model.pt')
for epoch in range(max_epochs):
    train_loss = train_epoch(model, train_loader)
    val_loss = validate_epoch(model, val_loader)
    early_stopping(val_loss, model)
    if early_stopping.early_stop:
        break
model.load_state_dict(torch.load('best_model.pt'))
"""


@pytest.mark.parametrize("weights_only", [False, True])
def test_seed_readme_loop_runs_unchanged(
    weights_only: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    model = Sentinel()
    epochs = iter(range(1, len(LOSSES) + 1))

    def train_epoch(model: Sentinel, loader: object) -> float:
        model.set_epoch(next(epochs))
        return 0.0

    def validate_epoch(model: Sentinel, loader: object) -> torch.Tensor:
        return torch.tensor(LOSSES[int(model.epoch) - 1], requires_grad=True)

    code = "from earlystop import EarlyStopping\n" + SEED_LOOP
    if weights_only:
        code = code.replace(
            "torch.load('best_model.pt')", "torch.load('best_model.pt', weights_only=True)"
        )
    namespace: dict[str, Any] = {
        "torch": torch,
        "model": model,
        "max_epochs": 100,
        "train_loader": None,
        "val_loader": None,
        "train_epoch": train_epoch,
        "validate_epoch": validate_epoch,
    }
    exec(compile(code, "seed-readme", "exec"), namespace)
    es = namespace["early_stopping"]
    assert namespace["epoch"] == STOP_EPOCH - 1  # the loop variable is 0-based
    assert (es.best_epoch, es.stopped_epoch, es.counter) == (BEST_EPOCH, STOP_EPOCH, 7)
    assert epoch_of(model) == BEST_EPOCH
    out = capsys.readouterr().out
    assert "Validation loss decreased (inf --> 1.000000).  Saving model ..." in out
    assert "EarlyStopping counter: 7 out of 7" in out


@pytest.mark.parametrize(
    ("path", "restore_best_weights", "memory", "disk"),
    [
        (None, True, True, False),
        (None, False, True, False),
        ("best.pt", False, False, True),
        ("best.pt", True, True, True),
        ("nested/dir/best.safetensors", True, True, True),
    ],
)
def test_sentinel_restores_the_best_epoch(
    path: str | None, restore_best_weights: bool, memory: bool, disk: bool, tmp_path: Path
) -> None:
    target = None if path is None else tmp_path / path
    es = EarlyStopping(
        patience=7, delta=0.001, path=target, restore_best_weights=restore_best_weights
    )
    model = Sentinel()
    decisions = train(es, model, LOSSES)
    assert decisions[-1].should_stop
    assert (es.best_epoch, es.stopped_epoch) == (BEST_EPOCH, STOP_EPOCH)
    # restored on stop only with restore_best_weights
    assert epoch_of(model) == (BEST_EPOCH if restore_best_weights else STOP_EPOCH)
    assert es.keeper.has_snapshot == memory
    assert (target is not None and target.is_file()) == disk
    if target is not None:
        assert epoch_of(load_checkpoint(target).state_dict) == BEST_EPOCH
    if target is not None and target.suffix == ".pt":
        assert epoch_of(torch.load(target, weights_only=True)) == BEST_EPOCH
    model.set_epoch(99)
    es.restore(model)  # on demand, from memory or else from the file
    assert epoch_of(model) == BEST_EPOCH


def test_restore_without_weights_explains_what_to_do(tmp_path: Path) -> None:
    message = (
        r"^no best weights to restore: pass the model to every call, and either keep them in "
        r"memory \(path=None or restore_best_weights=True\) or give a `path`$"
    )
    es = EarlyStopping(path=None)
    with pytest.raises(RuntimeError, match=message):
        es.restore(Sentinel())  # nothing evaluated yet
    es(1.0)  # no model given: nothing kept
    with pytest.raises(RuntimeError, match=message):
        es.restore(Sentinel())
    disk = EarlyStopping(path=tmp_path / "never.pt")
    disk(1.0)
    assert not (tmp_path / "never.pt").exists()
    with pytest.raises(RuntimeError, match=message):
        disk.restore(Sentinel())


def test_restore_best_weights_when_nothing_improved(caplog: pytest.LogCaptureFixture) -> None:
    es = EarlyStopping(patience=1, baseline=0.5, path=None, restore_best_weights=True)
    model = Sentinel()
    with caplog.at_level(logging.WARNING, logger="earlystop"):
        decisions = train(es, model, [1.0, 2.0])
    assert decisions[-1].should_stop
    assert epoch_of(model) == 1  # untouched
    assert "nothing improved, so no best weights to restore" in caplog.text


def test_seed_attributes() -> None:
    es = EarlyStopping(patience=2, path=None)
    assert (es.early_stop, es.counter, es.best_score, es.best_val_loss) == (False, 0, None, None)
    assert es.val_loss_min == float("inf")
    assert (es.best_epoch, es.stopped_epoch, es.last_decision) == (None, None, None)
    es(0.5)
    es(0.75)
    assert (es.counter, es.best_score, es.best_val_loss, es.val_loss_min) == (1, -0.5, 0.5, 0.5)
    high = EarlyStopping(mode="max", path=None)
    assert high.val_loss_min == float("-inf")
    high(0.75)
    assert (high.best_score, high.best_value, high.best_epoch) == (0.75, 0.75, 1)


def test_early_stop_turns_false_after_an_improvement() -> None:
    es = EarlyStopping(patience=1, path=None)
    flags = []
    for loss in [1.0, 2.0, 0.5, 0.75]:
        es(loss)
        flags.append((es.early_stop, es.stopped_epoch))
    assert flags == [(False, None), (True, 2), (False, None), (True, 4)]


def test_max_mode_monitors_accuracy(tmp_path: Path) -> None:
    es = EarlyStopping(patience=2, mode="max", path=tmp_path / "acc.pt")
    decisions = train(es, Sentinel(), [0.5, 0.75, 0.875, 0.75, 0.875])
    assert [d.improved for d in decisions] == [True, True, True, False, False]
    assert es.stopped_epoch == 5
    assert epoch_of(torch.load(tmp_path / "acc.pt", weights_only=True)) == 3


def test_reset_and_per_fold_paths(tmp_path: Path) -> None:
    es = EarlyStopping(patience=1, path=tmp_path / "fold-{fold}.pt", restore_best_weights=True)
    model = Sentinel()
    folds = [[1.0, 0.5, 0.75], [1.0, 2.0], [0.5, 0.25, 0.125, 1.0]]
    for fold, losses in enumerate(folds):
        assert es.fold == fold
        assert es.path == tmp_path / f"fold-{fold}.pt"
        train(es, model, losses)
        assert es.early_stop
        es.reset()
        assert (es.early_stop, es.counter, es.best_value, es.best_epoch) == (False, 0, None, None)
        assert es.stopped_epoch is None
        assert not es.keeper.has_snapshot
    assert es.fold == 3
    assert [
        epoch_of(torch.load(tmp_path / f"fold-{f}.pt", weights_only=True)) for f in range(3)
    ] == [
        2,
        1,
        3,
    ]
    es.reset(path=tmp_path / "other.pt")
    assert es.path == tmp_path / "other.pt"
    es.reset(path=None)
    assert es.path is None
    with pytest.raises(ValueError, match=r"^`path` must be a file path or None, got ''$"):
        es.reset(path="")


def test_reset_keeps_buffers_for_the_next_fold() -> None:
    es = EarlyStopping(patience=1, path=None)
    model = Sentinel()
    train(es, model, [1.0, 2.0])
    es.reset()
    train(es, model, [3.0, 4.0])
    assert es.keeper.allocations == 1
    model.set_epoch(50)
    es.restore(model)
    assert epoch_of(model) == 1


@pytest.mark.parametrize("cut", [0, 1, 3, 4, 7, 10])
def test_resume_from_state_dict_gives_identical_decisions(cut: int, tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    options: dict[str, Any] = {"patience": 7, "delta": 0.001, "path": path}
    straight = EarlyStopping(**options, restore_best_weights=True)
    expected = train(straight, Sentinel(), LOSSES)

    first = EarlyStopping(**options)
    train(first, Sentinel(), LOSSES[:cut])
    saved = json.dumps(first.state_dict(), allow_nan=False)
    del first  # the process "crashes"; only the JSON and the file survive

    resumed = EarlyStopping(**options, restore_best_weights=True)
    resumed.load_state_dict(json.loads(saved))
    assert resumed.best_epoch == (
        None if cut == 0 else expected[min(cut, BEST_EPOCH) - 1].best_step
    )
    model = Sentinel()
    actual = train(resumed, model, LOSSES[cut:], start=cut + 1)
    assert expected[cut:] == actual
    assert (resumed.best_epoch, resumed.stopped_epoch) == (BEST_EPOCH, STOP_EPOCH)
    # restored on stop: from memory when the best came after the restart, else from disk
    assert epoch_of(model) == BEST_EPOCH
    assert resumed.keeper.has_snapshot == (cut < BEST_EPOCH)
    resumed.keeper.clear()  # restore() on demand reads the disk checkpoint
    model.set_epoch(0)
    resumed.restore(model)
    assert epoch_of(model) == BEST_EPOCH


def test_resumed_early_stop_flag_is_restored() -> None:
    es = EarlyStopping(patience=1, path=None)
    es(1.0)
    es(2.0)
    again = EarlyStopping(patience=1, path=None)
    again.load_state_dict(json.loads(json.dumps(es.state_dict())))
    assert (again.early_stop, again.stopped_epoch, again.counter) == (True, 2, 1)
    assert again.last_decision is not None
    assert again.last_decision.reason == "patience"


def test_resume_in_memory_only_cannot_restore_old_weights() -> None:
    es = EarlyStopping(patience=3, path=None)
    train(es, Sentinel(), [1.0, 2.0])
    again = EarlyStopping(patience=3, path=None)
    again.load_state_dict(es.state_dict())
    with pytest.raises(RuntimeError, match=r"^no best weights to restore"):
        again.restore(Sentinel())


def test_fold_survives_resume(tmp_path: Path) -> None:
    es = EarlyStopping(path=tmp_path / "f{fold}.pt")
    es.reset()
    es.reset()
    again = EarlyStopping(path=tmp_path / "f{fold}.pt")
    again.load_state_dict(es.state_dict())
    assert again.path == tmp_path / "f2.pt"


def test_verbose_false_prints_nothing_but_logs(
    capsys: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    es = EarlyStopping(patience=1, path=tmp_path / "b.pt")
    with caplog.at_level(logging.INFO, logger="earlystop"):
        train(es, Sentinel(), [1.0, 2.0])
    assert capsys.readouterr() == ("", "")
    assert [r.getMessage() for r in caplog.records] == [
        "Validation loss decreased (inf --> 1.000000).  Saving model ...",
        "EarlyStopping counter: 1 out of 1",
        "EarlyStopping: stop at evaluation 2: no improvement for 1 evaluations (patience 1); "
        "best 1 at evaluation 1",
    ]
    assert all(r.name == "earlystop" for r in caplog.records)


def test_verbose_sends_messages_to_trace_func(capsys: Any) -> None:
    lines: list[str] = []
    es = EarlyStopping(patience=1, verbose=True, path=None, trace_func=lines.append)
    train(es, Sentinel(), [1.0, 0.5, 0.75])
    assert capsys.readouterr() == ("", "")
    assert lines == [
        "Validation loss decreased (inf --> 1.000000).  Saving model ...",
        "Validation loss decreased (1.000000 --> 0.500000).  Saving model ...",
        "EarlyStopping counter: 1 out of 1",
        "EarlyStopping: stop at evaluation 3: no improvement for 1 evaluations (patience 1); "
        "best 0.5 at evaluation 2",
    ]
    quiet = EarlyStopping(verbose=True, trace_func=None, path=None)
    quiet(1.0)
    assert capsys.readouterr() == ("", "")


def test_verbose_default_trace_func_is_print(capsys: Any) -> None:
    es = EarlyStopping(patience=1, verbose=True, path=None, restore_best_weights=True)
    train(es, Sentinel(), [1.0, 2.0])
    assert capsys.readouterr().out.splitlines()[-1] == (
        "EarlyStopping: restored the weights of evaluation 1"
    )


def test_warm_up_is_silent(capsys: Any) -> None:
    es = EarlyStopping(start_from_epoch=2, verbose=True, path=None)
    es(1.0)
    es(2.0)
    assert capsys.readouterr().out == ""


def test_extra_state_saved_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "run" / "best.pt"
    model = Sentinel()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    es = EarlyStopping(patience=2, path=path)
    for epoch, loss in enumerate([1.0, 0.5, 0.75], start=1):
        model.set_epoch(epoch)
        model.weight.grad = torch.ones(4)
        optimizer.step()
        model.set_epoch(epoch)
        es(loss, model, extra_state={"optimizer": optimizer, "epoch": epoch, "note": "x"})
    checkpoint = load_checkpoint(path)
    assert epoch_of(checkpoint.state_dict) == 2
    assert checkpoint.extra["epoch"] == 2
    assert checkpoint.extra["note"] == "x"
    assert checkpoint.extra["optimizer"]["state"][0]["step"] == torch.tensor(2.0)
    fresh = torch.optim.Adam(Sentinel().parameters(), lr=0.5)
    fresh.load_state_dict(checkpoint.extra["optimizer"])
    assert fresh.param_groups[0]["lr"] == 0.01


def test_failed_write_carries_the_decision(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    es = EarlyStopping(patience=3, path=path)
    model = Sentinel()
    train(es, model, [1.0])
    before = path.read_bytes()
    model.set_epoch(2)
    with pytest.raises(
        CheckpointError, match=r"^cannot save extra\['bad'\] in checkpoint "
    ) as info:
        es(0.5, model, extra_state={"bad": lambda: None})
    decision = info.value.decision  # type: ignore[attr-defined]
    assert isinstance(decision, Decision)
    assert (decision.step, decision.improved) == (2, True)
    assert info.value.path == path
    assert path.read_bytes() == before  # the previous best is intact on disk


def test_returns_decision_and_accepts_metrics() -> None:
    es = EarlyStopping(
        patience=None,
        path=None,
        criteria=[lambda h: "gap" if h.values[-1] - h.series("train")[-1] > 1 else None],
    )
    assert not es(1.0, train=0.5)
    decision = es(2.0, train=0.5)
    assert decision.reason == "gap"
    assert bool(decision)
    assert repr(es).startswith("EarlyStopping(Stopper(mode='min', patience=None")


def test_a_refused_reset_path_changes_nothing(tmp_path: Path) -> None:
    es = EarlyStopping(patience=2, path=tmp_path / "a.pt")
    es(1.0)
    with pytest.raises(
        ValueError, match=r"^`path` must be a file path \(str or PathLike\) or None"
    ):
        es.reset(path=5)  # type: ignore[arg-type]
    assert (es.fold, es.best_epoch, es.path) == (0, 1, tmp_path / "a.pt")


def test_resumed_in_memory_run_stops_without_crashing(caplog: pytest.LogCaptureFixture) -> None:
    """After a restart with path=None the old best weights are gone: warn, do not raise."""
    es = EarlyStopping(patience=2, path=None, restore_best_weights=True)
    model = Sentinel()
    train(es, model, [1.0, 2.0])
    again = EarlyStopping(patience=2, path=None, restore_best_weights=True)
    again.load_state_dict(es.state_dict())
    loud = r"^earlystop: the best weights \(evaluation 1\) are not available, so the model "
    with (
        caplog.at_level(logging.WARNING, logger="earlystop"),
        pytest.warns(LostWeightsWarning, match=loud + r"keeps its current weights; give a `path`"),
    ):
        decisions = train(again, model, [3.0], start=3)
    assert decisions[-1].should_stop
    assert epoch_of(model) == 3  # kept its current weights
    assert "the best weights (evaluation 1) are not available" in caplog.text
