"""``EarlyStopping``: the PyTorch front end, a drop-in for early-stopping-pytorch."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core.decision import Decision
from .._core.history import Criterion
from .._core.options import Mode, NonFinite, check_count, check_delta
from .._core.protocols import Smoother
from .._core.rollback import mark
from .._core.stopper import Stopper
from .._rules.policy import Policy, check_max_epochs, stopper_from_policy
from .._rules.scheduler import SchedulerAware
from .._weights.background import BackgroundWriter
from .._weights.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .._weights.keeper import WeightsKeeper
from .._weights.lost import LostWeightsWarning
from .._weights.paths import path_problem
from .._weights.sharded import is_sharded
from .._weights.sharded_checkpoint import has_checkpoint
from .distributed import Agreement, DistributedSync
from .seed_attributes import check_counter, check_flag, file_path, reference_value, user_path
from .sharded import ShardedBest
from .transaction import roll_back

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
            For a sharded model (DTensor parameters: FSDP2, tensor parallel, HSDP; or FSDP1)
            ``path`` names a torch.distributed.checkpoint directory written by every rank
            and published atomically by rank 0, and each rank keeps only its local shards in
            memory; see :mod:`earlystop._frontend.sharded`.
        trace_func: called with each message when ``verbose``.
        mode, min_delta, min_rel_delta, baseline, start_from_epoch, stopping_threshold,
            divergence_threshold, on_nonfinite, criteria, smoothing, scheduler: see
            :class:`earlystop.Stopper`. With ``smoothing``, the weights kept (and
            ``best_epoch``, ``best_value``) follow the best raw value, see
            :attr:`earlystop.Stopper.kept_step`.
        restore_best_weights: load the best weights into the model when stopping, and
            at the end of training when the loop ran out of epochs first: call
            :meth:`finish`, or use ``with EarlyStopping(...) as es:``.
        policy: a policy SPEC (``"auto"``, ``"ema=0.3,patience=5"``, ``"gl=2"``) or a
            :class:`earlystop.Policy` replacing the rule options above (giving both is an
            error). See :func:`earlystop.parse_policy`.
        background: write checkpoints on a background thread: an improvement only copies
            the weights into host memory (they also serve :meth:`restore`) and the latest
            copy is written atomically behind the training loop. Call :meth:`flush` before
            reading the file and :meth:`close` at the end (or use ``with EarlyStopping(...)``);
            a failed write is raised by the next call. Needs a ``path``. For a sharded
            model it uses ``dcp.async_save``; every rank must call :meth:`flush` and
            :meth:`close`.
        distributed: how the ranks of an initialized ``torch.distributed`` group agree:
            ``"mean"`` (average the value, then decide), ``"rank0"``, ``"any"``, ``"all"``
            or ``"local"``; see :mod:`earlystop._distributed`. Only rank 0 writes ``path`` (every
            rank its shards, for a sharded model).
            Every rank must make each call; code calling it on rank 0 only needs ``"local"``.
        max_epochs: the planned number of evaluations (epochs, or evaluations when you
            evaluate every k steps), read by the budget-aware rules of ``policy``
            (``budget=...``, see :class:`earlystop.BudgetPatience`); ``None``: unknown.

    Calling it returns the :class:`Decision`; it is truthy when training should stop.
    As in the seed, every improvement calls :meth:`save_checkpoint` (a subclass may override
    it to save differently), the seed's attributes (``counter``, ``early_stop``,
    ``best_val_loss``, ``val_loss_min``, ``best_score``, ``patience``, ``delta``, ``path``)
    can be written to reset or resume a run (docs/semantics.md gives the effect of each),
    and the messages of the seed's events are the seed's lines.

    >>> lines = []
    >>> es = EarlyStopping(patience=1, path=None, verbose=True, trace_func=lines.append)
    >>> _ = es(0.5), es(0.75)
    >>> lines[:2]
    ['Validation loss decreased (inf --> 0.500000).', 'EarlyStopping counter: 1 out of 1']
    >>> es.early_stop, es.counter
    (True, 1)
    >>> es.counter, es.early_stop = 0, False  # the seed's way to go on
    >>> es(0.75).should_stop, es.counter
    (True, 1)
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
        self.sharded = ShardedBest(background=bool(background))  # used for sharded models only
        self.distributed = DistributedSync(distributed)
        self.distributed.configure(self.stopper)
        self._last: Decision | None = None
        self._model_ref: weakref.ref[Any] | None = None  # the model of the latest call
        self._lost: str | None = None  # why the best weights are gone, when they are
        self._kept_step: int | None = None  # the evaluation whose weights were last kept
        self._baseline = self.stopper.baseline  # the option; a written reference replaces it
        self._reference: float | None = None  # set by writing best_val_loss & co.
        self._stop_flag: bool | None = None  # set by writing early_stop, until the next call
        self._improvement: tuple[Decision, float | None, Mapping[str, Any] | None] | None = None
        self._deferred: CheckpointError | None = None  # a failed write after the commit

    # -- seed-compatible attributes ----------------------------------------------------

    # Writable as in the seed; docs/semantics.md ("Writing the seed's attributes") gives
    # the effect of each write on the core.

    @property
    def patience(self) -> int | None:
        """Evaluations without improvement before stopping; writing it changes the rule."""
        return self.stopper.patience

    @patience.setter
    def patience(self, value: int | None) -> None:
        self.stopper.patience = check_count("patience", value, allow_none=True)

    @property
    def delta(self) -> float:
        """The seed's name for ``min_delta``; writing it changes the margin."""
        return self.stopper.min_delta

    @delta.setter
    def delta(self, value: float) -> None:
        self.stopper.min_delta = check_delta("delta", value)

    @property
    def path(self) -> str | os.PathLike[str] | None:
        """The checkpoint file of the current fold, of the type given (``str`` stays ``str``),
        ``None`` when weights stay in memory. Writing it sets the file of later saves."""
        return user_path(self.path_template, self.fold)

    @path.setter
    def path(self, value: str | os.PathLike[str] | None) -> None:
        self.path_template = _check_path(value)

    @property
    def _file(self) -> Path | None:
        """:attr:`path` as a ``Path``, for reading and writing it."""
        return file_path(self.path_template, self.fold)

    @property
    def early_stop(self) -> bool:
        """Whether the latest evaluation says stop (False again after a later improvement).

        Writing it overrides that answer until the next call: ``early_stop = False``
        clears a stop (patience still counts on), ``True`` asks to stop.
        """
        if self._stop_flag is not None:
            return self._stop_flag
        return self._last is not None and self._last.should_stop

    @early_stop.setter
    def early_stop(self, value: bool) -> None:
        self._stop_flag = check_flag("early_stop", value)

    @property
    def counter(self) -> int:
        """Consecutive evaluations without improvement (the seed's name for ``wait``).

        Writing it sets the wait that the next evaluation continues from: ``counter = 0``
        gives the full patience again.
        """
        return self.stopper.wait

    @counter.setter
    def counter(self, value: int) -> None:
        self.stopper.wait = check_counter(value)

    @property
    def best_value(self) -> float | None:
        """The best monitored value so far, ``None`` before the first improvement."""
        return self.stopper.kept_value

    @property
    def best_val_loss(self) -> float | None:
        """The value to beat: the best so far, or one written here; ``None`` before either.

        Writing a value sets the reference (see :attr:`val_loss_min`); ``None`` forgets it.
        """
        best = self.stopper.kept_value
        return self._reference if best is None else best

    @best_val_loss.setter
    def best_val_loss(self, value: float | None) -> None:
        self._set_reference("best_val_loss", value, score=False)

    @property
    def val_loss_min(self) -> float:
        """The seed's attribute: the value to beat, ``inf`` before any (``-inf`` in max mode).

        Writing a finite value that is not the current best makes it the reference the next
        improvement must beat (like ``baseline``); no evaluation holds it, so ``best_epoch``
        is ``None`` until then. Writing ``inf`` (``-inf`` in max mode) or ``None`` forgets
        the reference: the next finite value improves.
        """
        best = self.best_val_loss
        return math.inf * self.stopper.mode.sign if best is None else best

    @val_loss_min.setter
    def val_loss_min(self, value: float | None) -> None:
        self._set_reference("val_loss_min", value, score=False)

    @property
    def best_score(self) -> float | None:
        """The value to beat as a higher-is-better score (``-best`` in min mode), as
        pytorchtools; writing it sets the reference as :attr:`val_loss_min` does."""
        best = self.best_val_loss
        return None if best is None else -self.stopper.mode.sign * best

    @best_score.setter
    def best_score(self, value: float | None) -> None:
        self._set_reference("best_score", value, score=True)

    def _set_reference(self, name: str, value: Any, *, score: bool) -> None:
        stopper = self.stopper
        target = reference_value(name, value, stopper.mode.sign, score=score)
        if target is not None and target == stopper.kept_value:
            return  # already the best (a save_checkpoint override writing val_loss_min)
        stopper.best_value = stopper.best_step = None
        stopper._kept = None  # the raw best of a smoothed stopper
        stopper.baseline = self._baseline if target is None else target
        self._reference = target

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
        writer = self._writer
        failure: BaseException | None = None
        if writer is not None:
            try:
                writer.check()  # a failed background write is raised before recording
            except CheckpointError as exc:
                if not self.distributed.active:
                    raise
                failure = exc  # raised on every rank by the collective, so none waits
        stopper = self.stopper
        # what to put back if anything below raises (a few attribute reads)
        saved = mark(stopper), self._last, self.keeper.step
        stop_flag = self._stop_flag
        others = self.distributed.replicas
        replicas = [mark(replica) for replica in others] if others else ()
        if model is not None:
            self._model_ref = weakref.ref(model)
        before = self.best_val_loss
        error = None
        try:
            if failure is None:
                decision = self.distributed.step(stopper, val_loss, metrics)
            else:
                decision = self.distributed.step(
                    stopper, val_loss, metrics, failure=failure, path=self._file
                )
            self._last = decision
            self._stop_flag = None
            if stopper.kept_step == decision.step:  # best raw value; = improved unsmoothed
                self._announce(decision)  # (only with smoothing or a stop: before the commit)
                error = self._on_improvement(decision, before, model, extra_state)
            elif decision.should_stop or (
                decision.step > stopper.start_from_epoch
                and self._listening()  # the hot path: format nothing nobody reads
            ):
                self._announce(decision)
        except BaseException as exc:
            self._stop_flag = stop_flag
            roll_back(self, saved, replicas, exc)
            raise
        if error is not None:  # committed: the weights are in memory, the file is stale
            raise error
        if decision.should_stop and self.restore_best_weights and model is not None:
            self._restore_on_stop(model)
        return decision

    def _announce(self, decision: Decision) -> None:
        """Say what the call decided, other than an improvement (saying may raise)."""
        if (
            not decision.improved
            and decision.step > self.stopper.start_from_epoch
            and self._listening()  # the hot path: format nothing nobody reads
        ):
            limit = "no fixed patience" if self.patience is None else f"out of {self.patience}"
            self._say(f"EarlyStopping counter: {decision.wait} {limit}")
        if decision.should_stop:
            self._say(f"EarlyStopping: stop at evaluation {decision.step}: {decision.detail}")

    def _on_improvement(
        self,
        decision: Decision,
        before: float | None,
        model: torch.nn.Module | None,
        extra_state: Mapping[str, Any] | None,
    ) -> CheckpointError | None:
        """Call :meth:`save_checkpoint`; the error of a file write that failed after the
        weights were kept in memory (the call is committed; it raises after)."""
        self._improvement = (decision, before, extra_state)
        self._deferred = None
        try:
            self.save_checkpoint(decision.value, model)
        finally:
            self._improvement = None
        error, self._deferred = self._deferred, None
        return error

    def save_checkpoint(self, val_loss: float, model: torch.nn.Module | None) -> None:
        """Keep the weights of ``model`` as the new best: called on every improvement.

        As in the seed, a subclass that overrides it replaces the built-in saving (and its
        "Validation loss decreased" message); ``super().save_checkpoint(val_loss, model)``
        keeps both. With the built-in saving the weights are kept in memory and/or written
        atomically to :attr:`path` (see the class). It is called by the evaluation only;
        an exception raised in it (or in an override) rolls the whole call back.

        Args:
            val_loss: the improving value, as a float.
            model: the model passed to the call (``None`` when none was).

        Raises:
            RuntimeError: when called outside an evaluation.
        """
        if self._improvement is None:
            raise RuntimeError(
                "save_checkpoint() is called by EarlyStopping on an improvement; call the "
                "EarlyStopping object with the value and the model instead"
            )
        decision, before, extra_state = self._improvement
        if model is not None and is_sharded(model):  # FSDP2, TP, HSDP, FSDP1: every rank
            self._say_improved(val_loss, before, saving=True)
            memory = self._file is None or self.restore_best_weights
            try:  # the commit point: each rank keeps its local shards
                self.sharded.keep(
                    model, decision.step, self._file, memory=memory, extra=extra_state
                )
            except CheckpointError as exc:  # kept in memory on every rank: raise after
                exc.decision = decision  # type: ignore[attr-defined]
                self._deferred = exc
            return
        keep = self._prepare_keep(decision, model, extra_state)
        self._say_improved(val_loss, before, saving=keep is not None)  # may raise
        if keep is not None:
            self._deferred = self._keep(decision, keep, extra_state)  # the commit point

    def _say_improved(self, val_loss: float, before: float | None, *, saving: bool) -> None:
        """The seed's improvement line (its wording; "increased" in max mode)."""
        sign = self.stopper.mode.sign
        previous = math.inf * sign if before is None else before
        change = "Validation loss decreased" if sign > 0 else "Validation metric increased"
        note = "  Saving model ..." if saving else ""
        self._say(f"{change} ({previous:.6f} --> {val_loss:.6f}).{note}")

    def _prepare_keep(
        self,
        decision: Decision,
        model: torch.nn.Module | None,
        extra_state: Mapping[str, Any] | None,
    ) -> dict[str, Any] | None:
        """The weights to keep at an improvement, checked before anything is kept."""
        if model is None:
            return None
        state: dict[str, Any] = model.state_dict()
        meta = [name for name, value in state.items() if getattr(value, "is_meta", False)]
        if meta:
            raise ValueError(
                f"`model` has tensors on the meta device, which hold no weights to keep: {meta}"
            )
        return state

    def _keep(
        self, decision: Decision, state: dict[str, Any], extra_state: Mapping[str, Any] | None
    ) -> CheckpointError | None:
        """Keep the weights of the improvement: the commit point of a call.

        Returns the error of a failed file write after keeping the weights in memory
        instead (the call is then committed and the error raised after it).
        """
        writer = self.distributed.is_writer  # only rank 0 writes; the others keep in memory
        path = self._file
        if self._writer is not None and path is not None and writer:
            self._writer.submit(path, state, decision.step, extra=extra_state, fold=self.fold)
            self._lost, self._kept_step = None, decision.step
            return None  # snapshot now, write later
        if path is None or self.restore_best_weights or not writer:
            self.keeper.snapshot(state, decision.step)
        error = None
        if path is not None and writer:
            try:
                save_checkpoint(path, state, extra=extra_state, step=decision.step, fold=self.fold)
            except CheckpointError as exc:
                exc.decision = decision  # type: ignore[attr-defined]
                if self.keeper.step != decision.step:  # the file is stale: keep them in memory
                    self.keeper.snapshot(state, decision.step)
                error = exc
        self._lost, self._kept_step = None, decision.step
        return error

    def _restore_on_stop(self, model: torch.nn.Module) -> None:
        best = self.stopper.kept_step
        if best is None:
            logger.warning("earlystop: nothing improved, so no best weights to restore")
            return
        try:
            if is_sharded(model) and not self.sharded.available(best, self._file):
                raise _NoBestWeights(self._unavailable(best))
            self.restore(model)
        except (_NoBestWeights, CheckpointError) as exc:  # not the model's own load errors
            if self._kept_in_memory() is not None:
                raise
            # e.g. resumed with path=None (the weights were in the memory of the old
            # process), or the file lags: the end of training is no place to crash
            cause = (
                "give a `path` to keep them across restarts"
                if self._file is None and self._lost is None
                else str(exc)
            )
            message = (
                f"earlystop: the best weights (evaluation {best}) are not available, so the "
                f"model keeps its current weights; {cause}"
            )
            logger.warning("%s", message)
            warnings.warn(message, LostWeightsWarning, stacklevel=3)
            return
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

        Whenever :attr:`best_epoch` is ``k``, this loads exactly the weights of evaluation
        ``k`` or raises: a file that holds another evaluation (it lags the best, e.g. a
        background write lost in a crash, or another run wrote it) is refused, never loaded
        as the best. Files written before earlystop recorded evaluations are loaded as is.

        Raises:
            RuntimeError: when no best weights are available, saying why.
            CheckpointError: when the checkpoint file cannot be read, or holds the weights
                of another evaluation or fold than the best.
        """
        best = self.stopper.kept_step
        if is_sharded(model):  # from this rank's shards in memory, else the DCP directory
            self.sharded.restore(model, best, self._file)
            return
        kept = self._kept_in_memory()
        if kept is not None:
            kept.restore(model)
            return
        if self._writer is not None:
            self._writer.flush()
        path = self._file
        if best is not None and path is not None and path.is_file():
            checkpoint = load_checkpoint(path)
            lag = _lag(checkpoint.step, checkpoint.fold, best, self.fold)
            if lag is not None:
                raise CheckpointError(
                    f"checkpoint {path} holds {lag}, not the best evaluation {best} of fold "
                    f"{self.fold}, so it is not loaded: the write of the best was lost (a "
                    "crash before a background write finished, an interrupted call) or "
                    "another run wrote this file",
                    path,
                )
            model.load_state_dict(checkpoint.state_dict, strict=True)
            return
        raise _NoBestWeights(self._unavailable(best))

    def _unavailable(self, best: int | None) -> str:
        """Why :meth:`restore` has no best weights to load."""
        if best is not None and self._lost is not None:
            return f"the best weights (evaluation {best}) are lost: {self._lost}"
        return (
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
        self.sharded.forget()
        if self._writer is not None:
            self._writer.forget()
        self._last = None
        self._model_ref = None
        self._lost = self._kept_step = None
        self._stop_flag = None
        self._reference = None
        self.stopper.baseline = self._baseline
        self.fold += 1
        self.path_template = template

    def state_dict(self) -> dict[str, Any]:
        """Versioned, JSON-serializable state (no tensors): resume with :meth:`load_state_dict`.

        What a resumed run can expect of the weights: the state holds no weights, only
        which evaluation is the best (``stopper.best_step``, with smoothing the kept step)
        and the fold. After :meth:`load_state_dict`, :meth:`restore` reads ``path``, and
        every file earlystop writes records the evaluation and fold it holds: if the file
        holds another one than the best (the state was saved after an improvement whose
        file never reached the disk, as with ``background=True`` and a crash before
        :meth:`flush`), :meth:`restore` raises :class:`CheckpointError` saying so instead
        of loading an older best, and ``restore_best_weights`` at the stop warns
        (:class:`LostWeightsWarning`). To make the state and the file agree, call
        :meth:`flush` before saving the state (or save both with ``save_checkpoint(...,
        stopper=es.state_dict())``). ``"weights"`` records where they were kept when the
        state was taken: ``"file"`` (path and the evaluation last handed to it),
        ``"memory"`` (lost with the process) or ``"none"``.
        """
        state: dict[str, Any] = {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "fold": self.fold,
            "stopper": self.stopper.state_dict(),
        }
        stopper = state["stopper"]
        counted = stopper["step"] - (stopper["best_step"] or 0)
        if stopper["wait"] > counted:  # a `counter` written beyond the evaluations seen
            state["counter"], stopper["wait"] = stopper["wait"], counted
        replicas = self.distributed.state_dict()  # only with distributed="any"/"all"
        if replicas is not None:
            state["distributed"] = replicas
        if self._reference is not None:  # a reference written to val_loss_min & co.
            state["reference"] = self._reference
        state["weights"] = self._weights_record()
        return state

    def _weights_record(self) -> dict[str, Any]:
        """Where the best weights were when the state was taken (informative, not loaded)."""
        best = self.stopper.kept_step
        path = self._file
        if best is None:
            return {"kept": "none", "path": None, "step": None}
        if path is not None:
            return {"kept": "file", "path": str(path), "step": best}
        return {"kept": "memory" if self._kept_in_memory() else "none", "path": None, "step": best}

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
        sign = self.stopper.mode.sign
        reference = reference_value("reference", state.get("reference"), sign, score=False)
        counter = None if "counter" not in state else check_counter(state["counter"])
        self.distributed.check_state(state.get("distributed"))  # before replacing anything
        previous = self.stopper.state_dict(), self.distributed.replicas
        try:
            self.stopper.load_state_dict(state["stopper"])
            self.distributed.load_state_dict(state.get("distributed"), self.stopper)
        except BaseException:
            self.stopper.load_state_dict(previous[0])  # all or nothing
            self.distributed.replicas = previous[1]
            raise
        self._reference = reference
        self.stopper.baseline = self._baseline if reference is None else reference
        if counter is not None:
            self.stopper.wait = counter
        self._stop_flag = None
        self.fold = fold
        self._lost = self._kept_step = None
        self.keeper.clear()
        self.sharded.forget()
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
        self.sharded.settle()

    def close(self) -> None:
        """Flush and stop the background writer thread (a later improvement restarts it)."""
        if self._writer is not None:
            self._writer.close()
        self.sharded.settle()

    def finish(self, model: torch.nn.Module | None = None) -> int | None:
        """End training: restore the best weights if the loop ended without a stop.

        A stop restores the best weights already (``restore_best_weights=True``); a loop
        that runs out of epochs first keeps the last epoch's weights until this call. With
        ``restore_best_weights=True`` it loads the best weights into ``model`` (default: the
        model of the latest call; loading them again after a stop is harmless), then
        flushes and closes a background writer. ``with EarlyStopping(...) as es:`` calls it
        when the block ends normally.

        Returns:
            The evaluation whose weights were loaded, ``None`` when nothing was restored
            (``restore_best_weights=False``, no model, or no best weights: a warning is
            logged for the latter).

        Raises:
            CheckpointError: a background write failed, or the checkpoint cannot be read.
        """
        if model is None and self._model_ref is not None:
            model = self._model_ref()
        restored = None
        if self.restore_best_weights and model is not None:
            self._restore_on_stop(model)  # the same rules and warnings as at a stop
            if self._kept_in_memory() is not None or (self._file and self._file.is_file()):
                restored = self.stopper.kept_step
        self.close()
        return restored

    def __enter__(self) -> EarlyStopping:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        """On a normal exit, :meth:`finish`; after an exception, only :meth:`close`.

        After an exception the model keeps its current weights, so that the failure can be
        inspected (call :meth:`restore` to get the best ones).
        """
        if exc_type is None:
            self.finish()
        else:
            self.close()

    def __repr__(self) -> str:
        return f"EarlyStopping({self.stopper!r}, path={self.path_template!r})"


class _NoBestWeights(RuntimeError):
    """:meth:`EarlyStopping.restore` has no best weights to load (a plain RuntimeError to
    callers; the stop's ``restore_best_weights`` turns it into a warning)."""


def _check_path(path: Any) -> str | os.PathLike[str] | None:
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes):
        raise ValueError(f"`path` must be a file path (str or PathLike) or None, got {path!r}")
    if not os.fspath(path):
        raise ValueError("`path` must be a file path or None, got ''")
    text = str(os.fspath(path))
    target = text.replace("{fold}", "0")
    problem = path_problem(target)
    if problem is not None and not has_checkpoint(Path(target)):  # a sharded one: a directory
        raise ValueError(f"`path` must name a regular file, got {text!r}: {problem}")
    if text.endswith(".safetensors") and importlib.util.find_spec("safetensors") is None:
        raise ValueError(
            f"`path` {text!r} selects the safetensors format, but the safetensors "
            "package is not installed: pip install 'earlystop[safetensors]' (or use a .pt path)"
        )
    return path


def _lag(step: int | None, fold: int | None, best: int, current_fold: int) -> str | None:
    """What a checkpoint holds instead of the best evaluation (``None`` when it is the best)."""
    if step is None:
        return None  # written without a record (another tool, an earlier version)
    if step != best or (fold is not None and fold != current_fold):
        return f"evaluation {step} of fold {fold}"
    return None


def _background_writer(background: Any, path: Any) -> BackgroundWriter | None:
    if not isinstance(background, bool):
        raise ValueError(f"`background` must be a bool, got {background!r}")
    if background and path is None:
        raise ValueError(
            "`background=True` writes checkpoints in the background: it needs a `path`, got None"
        )
    return BackgroundWriter() if background else None
