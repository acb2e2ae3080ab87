"""``EarlyStopping``: the PyTorch front end, a drop-in for early-stopping-pytorch."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core.decision import Decision
from .._core.history import Criterion
from .._core.options import Mode, NonFinite, check_delta
from .._core.protocols import Smoother
from .._core.stopper import Stopper
from .._rules.policy import Policy, check_max_epochs, stopper_from_policy
from .._rules.scheduler import SchedulerAware
from .._weights.background import BackgroundWriter
from .._weights.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .._weights.keeper import WeightsKeeper
from .distributed import Agreement, DistributedSync

if TYPE_CHECKING:
    import torch

__all__ = ["EarlyStopping"]

logger = logging.getLogger("earlystop")

_STATE_FORMAT = "earlystop.EarlyStopping"
_STATE_VERSION = 1
_UNSET: Any = object()


class EarlyStopping:
    """Stop training when a monitored value stops improving, keeping the best weights.

    The first five arguments are those of early-stopping-pytorch (``pytorchtools``), in the
    same order, so changing the import line is enough::

        early_stopping = EarlyStopping(patience=7, verbose=True, delta=0.001, path="best.pt")
        for epoch in range(max_epochs):
            ...
            early_stopping(val_loss, model)
            if early_stopping.early_stop:
                break
        model.load_state_dict(torch.load("best.pt", weights_only=True))

    Args:
        patience: consecutive evaluations without improvement before stopping (``None``:
            only thresholds and criteria stop).
        verbose: pass each message to ``trace_func`` too. ``False`` prints nothing.
        delta: alias of ``min_delta`` (the seed's name).
        path: file for the best weights, written atomically on every improvement;
            ``.safetensors`` selects safetensors. ``None`` keeps them in memory only.
            ``{fold}`` in the path is replaced by the fold number (see :meth:`reset`).
        trace_func: called with each message when ``verbose``.
        mode, min_delta, min_rel_delta, baseline, start_from_epoch, stopping_threshold,
            divergence_threshold, on_nonfinite, criteria, smoothing, scheduler: see
            :class:`earlystop.Stopper`. With ``smoothing``, the weights kept (and
            ``best_epoch``, ``best_value``) follow the best raw value, see
            :attr:`earlystop.Stopper.kept_step`.
        restore_best_weights: load the best weights into the model when stopping.
        policy: a policy SPEC (``"auto"``, ``"ema=0.3,patience=5"``, ``"gl=2"``) or a
            :class:`earlystop.Policy` replacing the rule options above (giving both is an
            error). See :func:`earlystop.parse_policy`.
        background: write checkpoints on a background thread: an improvement only copies
            the weights into host memory (they also serve :meth:`restore`) and the latest
            copy is written atomically behind the training loop. Call :meth:`flush` before
            reading the file and :meth:`close` at the end (or use ``with EarlyStopping(...)``);
            a failed write is raised by the next call. Needs a ``path``.
        distributed: how the ranks of an initialized ``torch.distributed`` group agree:
            ``"mean"`` (average the value, then decide), ``"rank0"``, ``"any"``, ``"all"``
            or ``"local"``; see :mod:`earlystop._distributed`. Only rank 0 writes ``path``.
            Every rank must make each call; code calling it on rank 0 only needs ``"local"``.
        max_epochs: the planned number of evaluations (epochs, or evaluations when you
            evaluate every k steps), read by the budget-aware rules of ``policy``
            (``budget=...``, see :class:`earlystop.BudgetPatience`); ``None``: unknown.

    Calling it returns the :class:`Decision`; it is truthy when training should stop.
    """

    def __init__(
        self,
        patience: int | None = 7,
        verbose: bool = False,
        delta: float | None = None,
        path: str | os.PathLike[str] | None = "checkpoint.pt",
        trace_func: Callable[[str], object] | None = print,
        *,
        mode: str | Mode = "min",
        min_delta: float | None = None,
        min_rel_delta: float = 0.0,
        baseline: float | None = None,
        start_from_epoch: int = 0,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        on_nonfinite: str | NonFinite = "stop",
        criteria: Sequence[Criterion] = (),
        restore_best_weights: bool = False,
        smoothing: Smoother | None = None,
        scheduler: SchedulerAware | None = None,
        policy: str | Policy | None = None,
        background: bool = False,
        distributed: str | Agreement = "mean",
        max_epochs: int | None = None,
    ) -> None:
        self.max_epochs = check_max_epochs(max_epochs)
        # validate each under its own name first, so errors name what the caller wrote
        if delta is not None:
            check_delta("delta", delta)
        if min_delta is not None:
            check_delta("min_delta", min_delta)
        if delta is not None and min_delta is not None and float(delta) != float(min_delta):
            raise ValueError(
                f"`delta` is an alias of `min_delta`: give one of them, got delta={delta!r} "
                f"and min_delta={min_delta!r}"
            )
        chosen_delta = min_delta if min_delta is not None else delta
        rules: dict[str, Any] = {
            "patience": patience,
            "min_delta": 0.0 if chosen_delta is None else chosen_delta,
            "min_rel_delta": min_rel_delta,
            "baseline": baseline,
            "start_from_epoch": start_from_epoch,
            "stopping_threshold": stopping_threshold,
            "divergence_threshold": divergence_threshold,
            "on_nonfinite": on_nonfinite,
            "criteria": criteria,
            "smoothing": smoothing,
            "scheduler": scheduler,
        }
        self.stopper = (
            Stopper(mode=mode, **rules)
            if policy is None
            else stopper_from_policy(policy, mode=mode, rules=rules, max_epochs=max_epochs)
        )
        if not isinstance(verbose, bool):
            raise ValueError(f"`verbose` must be a bool, got {verbose!r}")
        if trace_func is not None and not callable(trace_func):
            raise ValueError(f"`trace_func` must be callable or None, got {trace_func!r}")
        if not isinstance(restore_best_weights, bool):
            raise ValueError(f"`restore_best_weights` must be a bool, got {restore_best_weights!r}")
        self.verbose = verbose
        self.trace_func = trace_func
        self.restore_best_weights = restore_best_weights
        self.path_template = _check_path(path)
        self.fold = 0
        self.keeper = WeightsKeeper()
        self._writer = _background_writer(background, path)
        self.distributed = DistributedSync(distributed)
        self._last: Decision | None = None

    # -- seed-compatible attributes ----------------------------------------------------

    @property
    def patience(self) -> int | None:
        return self.stopper.patience

    @property
    def delta(self) -> float:
        """The seed's name for ``min_delta``."""
        return self.stopper.min_delta

    @property
    def path(self) -> Path | None:
        """The checkpoint file of the current fold, ``None`` when weights stay in memory."""
        if self.path_template is None:
            return None
        return Path(str(self.path_template).replace("{fold}", str(self.fold)))

    @property
    def early_stop(self) -> bool:
        """Whether the latest evaluation says stop (False again after a later improvement)."""
        return self._last is not None and self._last.should_stop

    @property
    def counter(self) -> int:
        """Consecutive evaluations without improvement (the seed's name for ``wait``)."""
        return self.stopper.wait

    @property
    def best_value(self) -> float | None:
        """The best monitored value so far, ``None`` before the first improvement."""
        return self.stopper.kept_value

    @property
    def best_val_loss(self) -> float | None:
        """The seed's name for :attr:`best_value`."""
        return self.stopper.kept_value

    @property
    def val_loss_min(self) -> float:
        """The seed's attribute: the best value, ``inf`` before the first (``-inf`` in max mode)."""
        best = self.stopper.kept_value
        if best is None:
            return math.inf * self.stopper.mode.sign
        return best

    @property
    def best_score(self) -> float | None:
        """The best value as a higher-is-better score (``-best`` in min mode), as pytorchtools."""
        best = self.stopper.kept_value
        return None if best is None else -self.stopper.mode.sign * best

    @property
    def best_epoch(self) -> int | None:
        """1-based call number of the best evaluation, ``None`` before the first improvement."""
        return self.stopper.kept_step

    @property
    def stopped_epoch(self) -> int | None:
        """1-based call number at which it said stop, ``None`` while it does not."""
        return self._last.step if self._last is not None and self._last.should_stop else None

    @property
    def last_decision(self) -> Decision | None:
        return self._last

    # -- evaluations -------------------------------------------------------------------

    def __call__(
        self,
        val_loss: Any,
        model: torch.nn.Module | None = None,
        *,
        extra_state: Mapping[str, Any] | None = None,
        **metrics: Any,
    ) -> Decision:
        """Record one evaluation; on an improvement keep the weights of ``model``.

        Args:
            val_loss: the monitored value (any real scalar or one-element tensor).
            model: the model whose weights are kept on improvement and restored on stop.
            extra_state: saved in the checkpoint file with the weights on improvement
                (objects with ``state_dict()``, such as an optimizer, or plain values).
            **metrics: other values of this evaluation for criteria (``train_loss=...``).

        Raises:
            TypeError: ``model`` has no ``state_dict()`` or ``extra_state`` is not a mapping
                (checked before the value is recorded).
            CheckpointError: the checkpoint could not be written; the previous file is
                intact, the weights are kept in memory (so :meth:`restore` gives the true
                best) and ``error.decision`` holds the decision.
        """
        if model is not None and not callable(getattr(model, "state_dict", None)):
            raise TypeError(
                f"`model` must be a torch.nn.Module (with state_dict()), got {type(model).__name__}"
            )
        if extra_state is not None and not isinstance(extra_state, Mapping):
            raise TypeError(
                "`extra_state` must be a mapping of names to state, got "
                f"{type(extra_state).__name__}"
            )
        if self._writer is not None:
            self._writer.check()  # a failed background write is raised before recording
        before = self.stopper.kept_value
        decision = self.distributed.step(self.stopper, val_loss, metrics)
        self._last = decision
        if self.stopper.kept_step == decision.step:  # best raw value; = improved unsmoothed
            self._on_improvement(decision, before, model, extra_state)
        if (
            not decision.improved
            and decision.step > self.stopper.start_from_epoch
            and self._listening()  # the hot path: format nothing nobody reads
        ):
            limit = "no fixed patience" if self.patience is None else f"out of {self.patience}"
            self._say(f"EarlyStopping counter: {decision.wait} {limit}")
        if decision.should_stop:
            self._say(f"EarlyStopping: stop at evaluation {decision.step}: {decision.detail}")
            if self.restore_best_weights and model is not None:
                self._restore_on_stop(model)
        return decision

    def _on_improvement(
        self,
        decision: Decision,
        before: float | None,
        model: torch.nn.Module | None,
        extra_state: Mapping[str, Any] | None,
    ) -> None:
        previous = math.inf * self.stopper.mode.sign if before is None else before
        saving = "  Saving model ..." if model is not None else ""
        self._say(f"Validation metric improved ({previous:.6f} --> {decision.value:.6f}).{saving}")
        if model is None:
            return
        state = model.state_dict()
        meta = [name for name, value in state.items() if getattr(value, "is_meta", False)]
        if meta:
            error = ValueError(
                f"`model` has tensors on the meta device, which hold no weights to keep: {meta}"
            )
            error.decision = decision  # type: ignore[attr-defined]
            raise error
        writer = self.distributed.is_writer  # only rank 0 writes; the others keep in memory
        if self._writer is not None and self.path is not None and writer:
            self._writer.submit(self.path, state, decision.step, extra=extra_state)
            return  # snapshot now, write later
        if self.path is None or self.restore_best_weights or not writer:
            self.keeper.snapshot(state, decision.step)
        path = self.path
        if path is not None and writer:
            try:
                save_checkpoint(path, state, extra=extra_state)
            except CheckpointError as exc:
                exc.decision = decision  # type: ignore[attr-defined]
                if self.keeper.step != decision.step:  # the file is stale: keep them in memory
                    self.keeper.snapshot(state, decision.step)
                raise

    def _restore_on_stop(self, model: torch.nn.Module) -> None:
        best = self.stopper.kept_step
        if best is None:
            logger.warning("earlystop: nothing improved, so no best weights to restore")
            return
        path = self.path
        if self._kept_in_memory() is None and (path is None or not path.is_file()):
            # e.g. resumed with path=None: the weights were in the memory of the old process
            logger.warning(
                "earlystop: the best weights (evaluation %d) are not available, so the model "
                "keeps its current weights; give a `path` to keep them across restarts",
                best,
            )
            return
        self.restore(model)
        self._say(f"EarlyStopping: restored the weights of evaluation {self.stopper.kept_step}")

    def _kept_in_memory(self) -> WeightsKeeper | None:
        """The in-memory copy of the best weights, if it holds the current best."""
        best = self.stopper.kept_step
        copies = [self.keeper] if self._writer is None else [self._writer.latest, self.keeper]
        for kept in copies:  # a non-writing rank keeps its copy in `keeper`, even in background
            if best is not None and kept is not None and kept.step == best:
                return kept
        return None

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best weights into ``model``, from memory or else from ``path``.

        Raises:
            RuntimeError: when no best weights are available.
            CheckpointError: when the checkpoint file cannot be read.
        """
        best = self.stopper.kept_step
        kept = self._kept_in_memory()
        if kept is not None:
            kept.restore(model)
            return
        if self._writer is not None:
            self._writer.flush()
        path = self.path
        if best is not None and path is not None and path.is_file():
            model.load_state_dict(load_checkpoint(path).state_dict, strict=True)
            return
        raise RuntimeError(
            "no best weights to restore: pass the model to every call, and either keep "
            "them in memory (path=None or restore_best_weights=True) or give a `path`"
        )

    def _listening(self) -> bool:
        """Whether a message would reach anyone (``trace_func`` or an ``earlystop`` handler)."""
        return (self.verbose and self.trace_func is not None) or logger.isEnabledFor(logging.INFO)

    def _say(self, message: str) -> None:
        logger.info(message)
        if self.verbose and self.trace_func is not None:
            self.trace_func(message)

    # -- folds and resume --------------------------------------------------------------

    def reset(self, *, path: str | os.PathLike[str] | None = _UNSET) -> None:
        """Start a new cross-validation fold: forget evaluations and kept weights.

        The fold number (``{fold}`` in ``path``) goes up by one; ``path=`` sets a new one.
        """
        template = self.path_template if path is _UNSET else _check_path(path)
        self.stopper.reset()
        self.distributed.reset()
        self.keeper.clear()
        if self._writer is not None:
            self._writer.forget()
        self._last = None
        self.fold += 1
        self.path_template = template

    def state_dict(self) -> dict[str, Any]:
        """Versioned, JSON-serializable state (no tensors): resume with :meth:`load_state_dict`."""
        state = {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "fold": self.fold,
            "stopper": self.stopper.state_dict(),
        }
        replicas = self.distributed.state_dict()  # only with distributed="any"/"all"
        if replicas is not None:
            state["distributed"] = replicas
        return state

    def load_state_dict(self, state: Any) -> None:
        """Restore :meth:`state_dict`; later decisions are those of the uninterrupted run.

        Kept weights are not part of the state: after a restart, :meth:`restore` reads
        them from ``path``.
        """
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        missing = sorted({"format", "version", "fold", "stopper"} - state.keys())
        if missing:
            raise ValueError(f"state is missing keys: {', '.join(missing)}")
        if state["format"] != _STATE_FORMAT:
            raise ValueError(f"state format must be {_STATE_FORMAT!r}, got {state['format']!r}")
        if state["version"] != _STATE_VERSION:
            raise ValueError(
                f"state version {state['version']!r} is not supported (expected {_STATE_VERSION})"
            )
        fold = state["fold"]
        if isinstance(fold, bool) or not isinstance(fold, int) or fold < 0:
            raise ValueError(f"state entry `fold` must be an int >= 0, got {fold!r}")
        self.stopper.load_state_dict(state["stopper"])
        self.distributed.load_state_dict(state.get("distributed"), self.stopper)
        self.fold = fold
        self.keeper.clear()
        if self._writer is not None:
            self._writer.forget()
        self._last = self.stopper.last

    # -- background checkpoints --------------------------------------------------------

    def flush(self) -> None:
        """Wait until the latest best is on disk (``background=True``; else a no-op).

        Raises:
            CheckpointError: a background write failed.
        """
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and stop the background writer thread (a later improvement restarts it)."""
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> EarlyStopping:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EarlyStopping({self.stopper!r}, path={self.path_template!r})"


def _check_path(path: Any) -> str | os.PathLike[str] | None:
    if path is None or isinstance(path, (str, os.PathLike)):
        if isinstance(path, str) and not path:
            raise ValueError("`path` must be a file path or None, got ''")
        return path
    raise ValueError(f"`path` must be a file path (str or PathLike) or None, got {path!r}")


def _background_writer(background: Any, path: Any) -> BackgroundWriter | None:
    if not isinstance(background, bool):
        raise ValueError(f"`background` must be a bool, got {background!r}")
    if background and path is None:
        raise ValueError(
            "`background=True` writes checkpoints in the background: it needs a `path`, got None"
        )
    return BackgroundWriter() if background else None
