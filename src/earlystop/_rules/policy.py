"""Stopping policies written as SPEC strings, with the vocabulary of the Python API.

A SPEC is a comma-separated list of ``option=value`` items, for example ``patience=7``,
``patience=5,min_delta=0.001``, ``ema=0.3,patience=5``, ``gl=2``, ``pq=0.5``, ``up=3``,
``median=5,patience=10``, ``plateau=10``, ``ema=0.3,adaptive=0.3,min_patience=5``,
``any(gl=2,up=3)`` or ``auto``.
:func:`parse_policy` turns it into a frozen :class:`Policy`; ``str(policy)`` gives the
canonical SPEC back and :meth:`Policy.build` a fresh :class:`Stopper`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .._core.history import Criterion
from .._core.options import Mode, NonFinite, check_count, check_delta, check_threshold, parse_enum
from .._core.protocols import Smoother
from .._core.stopper import Stopper, register_policy_builder
from .budget import BudgetPatience
from .compose import AllOf, AnyOf
from .criteria import GL, PQ, UP, AdaptivePatience, Plateau
from .noise import NoiseDelta
from .numbers import spec_number
from .scheduler import SchedulerAware
from .smoothing import EMA, MovingMean, MovingMedian
from .trend import Rising, Trend

__all__ = ["AUTO_SPEC", "Group", "Policy", "Rule", "parse_policy", "stopper_from_policy"]

#: What ``auto`` means: patience 25, and the over-fitting detector ``rising=20``: stop as
#: soon as a one-sided Mann-Kendall test finds the last 20 values rising at 99.9%
#: confidence; it needs no budget. Chosen by the protocol of docs/stopping.md: the cheapest
#: of 296 candidates whose loss-only regret, share of runs losing > 1% and fail rate are no
#: worse than patience=20's on each of corpus v1 and corpus v2's batches a and b, then
#: tested, as fixed in advance, on batch c (135 runs of three workloads it never saw), where
#: it held (``python benchmarks/auto_policy.py``). It misses issue 15's cost goal.
AUTO_SPEC = "patience=25,rising=20,confidence=0.999"

# criterion SPEC key -> how its value parses (GL/PQ thresholds, UP strips, plateau window,
# adaptive patience fraction)
_CRITERIA: dict[str, Callable[[str], float]] = {
    "gl": float,
    "pq": float,
    "up": int,
    "plateau": int,
    "adaptive": float,
    "trend": int,
    "rising": int,
    "noise_delta": float,
    "budget": float,
}
_GROUPS = ("any", "all")


@dataclass(frozen=True)
class Rule:
    """One criterion of a policy: ``name`` is ``gl``, ``pq``, ``up``, ``plateau``,
    ``adaptive``, ``trend``, ``rising``, ``noise_delta`` or ``budget``."""

    name: str
    value: float

    def __str__(self) -> str:
        return f"{self.name}={spec_number(self.value)}"


@dataclass(frozen=True)
class Group:
    """``any(...)`` or ``all(...)`` of rules and groups."""

    name: str
    members: tuple[Term, ...]

    def __str__(self) -> str:
        return f"{self.name}(" + ",".join(str(m) for m in self.members) + ")"


Term: TypeAlias = Rule | Group


@dataclass(frozen=True)
class Policy:
    """A stopping policy: the options of :class:`Stopper` plus smoothing, criteria and
    scheduler awareness, as plain values. Build one with :func:`parse_policy`.

    ``str(policy)`` is the canonical SPEC: ``parse_policy(str(policy)) == policy``.

    Attributes:
        patience, min_delta, min_rel_delta, baseline, start_from_epoch,
            stopping_threshold, divergence_threshold, on_nonfinite: as in :class:`Stopper`.
        ema, mean, median: at most one smoother (:class:`EMA` alpha, :class:`MovingMean`
            or :class:`MovingMedian` window).
        criteria: :class:`Rule` and :class:`Group` terms, checked after patience.
        strip: strip length of every ``pq`` and ``up``.
        confidence: confidence of every ``plateau``, ``trend`` and ``rising``.
        min_patience: least wait of every ``adaptive`` (:class:`AdaptivePatience`) and
            ``budget`` (:class:`BudgetPatience`), which also get the policy's ``min_delta``,
            ``min_rel_delta`` and ``baseline``.
        noise_patience, noise_window: patience and noise window of every ``noise_delta``
            (:class:`NoiseDelta`).
        name: ``"auto"`` for the policy ``auto`` (then ``str(policy)`` is ``auto``);
            not compared, so ``parse_policy("auto") == parse_policy(AUTO_SPEC)``.
        min_lr, lr_factor, lr_restart: :class:`SchedulerAware` settings; ``min_lr`` set
            means hold while the rate can still be reduced.
    """

    patience: int | None = 7
    min_delta: float = 0.0
    min_rel_delta: float = 0.0
    baseline: float | None = None
    start_from_epoch: int = 0
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None
    on_nonfinite: str = "stop"
    ema: float | None = None
    mean: int | None = None
    median: int | None = None
    criteria: tuple[Term, ...] = ()
    strip: int = 5
    confidence: float = 0.95
    min_patience: int = 1
    min_lr: float | None = None
    lr_factor: float = 0.1
    lr_restart: bool = False
    noise_patience: int = 10
    noise_window: int = 20
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "patience", check_count("patience", self.patience, allow_none=True))
        set_(self, "min_delta", check_delta("min_delta", self.min_delta))
        set_(self, "min_rel_delta", check_delta("min_rel_delta", self.min_rel_delta))
        for name in ("baseline", "stopping_threshold", "divergence_threshold"):
            set_(self, name, check_threshold(name, getattr(self, name)))
        set_(self, "start_from_epoch", check_count("start_from_epoch", self.start_from_epoch))
        set_(self, "on_nonfinite", parse_enum("on_nonfinite", self.on_nonfinite, NonFinite).value)
        if not isinstance(self.criteria, tuple):
            raise ValueError(f"`criteria` must be a tuple of Rule/Group, got {self.criteria!r}")
        smoothers = [name for name in ("ema", "mean", "median") if getattr(self, name) is not None]
        if len(smoothers) > 1:
            raise ValueError(
                f"give at most one smoother, got {' and '.join(repr(s) for s in smoothers)}"
            )
        names = _rule_names(self.criteria)
        if self.strip != 5 and not names & {"pq", "up"}:
            raise ValueError(f"`strip` applies to pq and up, and the policy has neither: {self}")
        if self.confidence != 0.95 and not names & {"plateau", "trend", "rising"}:
            raise ValueError(
                f"`confidence` applies to plateau, trend and rising, and the policy has none "
                f"of them: {self}"
            )
        if self.min_patience != 1 and not names & {"adaptive", "budget"}:
            raise ValueError(
                f"`min_patience` applies to adaptive and budget, and the policy has neither: {self}"
            )
        for option, default in (("noise_patience", 10), ("noise_window", 20)):
            if getattr(self, option) != default and "noise_delta" not in names:
                raise ValueError(
                    f"`{option}` applies to noise_delta, and the policy has none: {self}"
                )
        if self.name not in (None, "auto"):
            raise ValueError(f"`name` must be None or 'auto', got {self.name!r}")
        if self.lr_factor != 0.1 and self.min_lr is None:
            raise ValueError("`lr_factor` needs `min_lr` (it describes the scheduler to wait for)")
        # Build once so that every value is checked by the class that uses it.
        for option, build in (
            ("smoothing", self.smoother),
            ("min_lr/lr_factor/lr_restart", self.scheduler),
            # a budget rule is built with a budget of 1 just to check its values
            ("criteria", lambda: self.build_criteria(max_epochs=1)),
        ):
            try:
                build()
            except ValueError as exc:
                raise ValueError(f"policy {option}: {exc}") from None

    # -- parts ---------------------------------------------------------------------------

    def smoother(self) -> Smoother | None:
        """The smoother of this policy, ``None`` when it has none."""
        if self.ema is not None:
            return EMA(self.ema)
        if self.mean is not None:
            return MovingMean(self.mean)
        if self.median is not None:
            return MovingMedian(self.median)
        return None

    def scheduler(self) -> SchedulerAware | None:
        """The scheduler awareness of this policy, ``None`` when it has none."""
        if self.min_lr is None and not self.lr_restart:
            return None
        return SchedulerAware(
            hold=self.min_lr is not None,
            restart=self.lr_restart,
            min_lr=0.0 if self.min_lr is None else self.min_lr,
            factor=self.lr_factor,
        )

    def build_criteria(self, max_epochs: int | None = None) -> list[Criterion]:
        """Fresh criterion objects for the ``criteria`` terms (caches are not shared).

        Args:
            max_epochs: the run's budget in evaluations, for ``budget`` rules.

        Raises:
            ValueError: when a ``budget`` rule has no ``max_epochs``.
        """
        check_max_epochs(max_epochs)
        return [self._criterion(term, max_epochs) for term in self.criteria]

    def uses_budget(self) -> bool:
        """Whether a rule of this policy reads the budget (``max_epochs``)."""
        return "budget" in _rule_names(self.criteria)

    def _criterion(self, term: Term, max_epochs: int | None) -> Criterion:
        if isinstance(term, Group):
            members = tuple(self._criterion(m, max_epochs) for m in term.members)
            if term.name not in _GROUPS or not members:
                raise ValueError(f"a group must be any(...) or all(...) of terms, got {term}")
            return AnyOf(members) if term.name == "any" else AllOf(members)
        if not isinstance(term, Rule):
            raise ValueError(f"`criteria` terms must be Rule or Group, got {term!r}")
        if term.name == "gl":
            return GL(term.value)
        if term.name == "pq":
            return PQ(term.value, strip=self.strip)
        if term.name == "up":
            return UP(_as_int("up", term.value), strip=self.strip)
        if term.name == "plateau":
            return Plateau(_as_int("plateau", term.value), confidence=self.confidence)
        if term.name == "adaptive":
            return AdaptivePatience(
                term.value,
                min_patience=self.min_patience,
                min_delta=self.min_delta,
                min_rel_delta=self.min_rel_delta,
                baseline=self.baseline,
            )
        if term.name in ("trend", "rising"):
            window = _as_int(term.name, term.value)
            kind = Trend if term.name == "trend" else Rising
            return kind(window, confidence=self.confidence)
        if term.name == "noise_delta":
            return NoiseDelta(term.value, patience=self.noise_patience, window=self.noise_window)
        if term.name == "budget":
            if max_epochs is None:
                raise ValueError(
                    f"`{term}` needs the budget: give max_epochs=N (the planned number of "
                    "evaluations) to Stopper.from_policy, EarlyStopping or Policy.build"
                )
            return BudgetPatience(
                term.value,
                max_epochs=max_epochs,
                min_patience=self.min_patience,
                min_delta=self.min_delta,
                min_rel_delta=self.min_rel_delta,
                baseline=self.baseline,
            )
        raise ValueError(f"unknown criterion {term.name!r} (known: {', '.join(_CRITERIA)})")

    def build(self, mode: str | Mode = "min", max_epochs: int | None = None) -> Stopper:
        """A fresh :class:`Stopper` configured by this policy.

        Args:
            mode: ``"min"`` or ``"max"``.
            max_epochs: the planned number of evaluations, which ``budget`` rules read
                (required by them, ignored by the others).

        >>> parse_policy("ema=0.5,patience=2").build().patience
        2
        >>> parse_policy("budget=0.05").build(max_epochs=200).criteria[0].wait
        10
        """
        return Stopper(
            mode=mode,
            patience=self.patience,
            min_delta=self.min_delta,
            min_rel_delta=self.min_rel_delta,
            baseline=self.baseline,
            start_from_epoch=self.start_from_epoch,
            stopping_threshold=self.stopping_threshold,
            divergence_threshold=self.divergence_threshold,
            on_nonfinite=self.on_nonfinite,
            criteria=self.build_criteria(max_epochs),
            smoothing=self.smoother(),
            scheduler=self.scheduler(),
        )

    # -- text ------------------------------------------------------------------------------

    def __str__(self) -> str:
        if self.name == "auto":
            return "auto"
        return self.expanded()

    def expanded(self) -> str:
        """The canonical SPEC written out in full (``auto`` as :data:`AUTO_SPEC`)."""
        defaults = Policy.__dataclass_fields__
        items: list[str] = []
        for name in ("ema", "mean", "median"):
            value = getattr(self, name)
            if value is not None:
                items.append(f"{name}={spec_number(value)}")
        if self.patience is not None:
            items.append(f"patience={self.patience}")
        elif not self.criteria:
            items.append("patience=none")
        for name in (
            "min_delta",
            "min_rel_delta",
            "baseline",
            "start_from_epoch",
            "stopping_threshold",
            "divergence_threshold",
        ):
            value = getattr(self, name)
            if value != defaults[name].default:
                items.append(f"{name}={spec_number(value)}")
        if self.on_nonfinite != "stop":
            items.append(f"on_nonfinite={self.on_nonfinite}")
        items.extend(str(term) for term in self.criteria)
        if self.strip != 5:
            items.append(f"strip={self.strip}")
        if self.confidence != 0.95:
            items.append(f"confidence={spec_number(self.confidence)}")
        if self.min_patience != 1:
            items.append(f"min_patience={self.min_patience}")
        if self.min_lr is not None:
            items.append(f"min_lr={spec_number(self.min_lr)}")
        if self.lr_factor != 0.1:
            items.append(f"lr_factor={spec_number(self.lr_factor)}")
        if self.lr_restart:
            items.append("lr_restart=true")
        for name in ("noise_patience", "noise_window"):
            value = getattr(self, name)
            if value != defaults[name].default:
                items.append(f"{name}={value}")
        return ",".join(items)

    def __repr__(self) -> str:
        return f"parse_policy({str(self)!r})"


def _rule_names(terms: tuple[Term, ...]) -> set[str]:
    names: set[str] = set()
    for term in terms:
        if isinstance(term, Group):
            names |= _rule_names(term.members)
        elif isinstance(term, Rule):
            names.add(term.name)
    return names


def _as_int(name: str, value: float) -> int:
    if float(value).is_integer():
        return int(value)
    raise ValueError(f"`{name}` must be an int, got {value!r}")


# -- parsing ---------------------------------------------------------------------------------


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise ValueError("expected true or false")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _parse_optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


# option -> (how its value parses, what the value must be, for messages)
_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "patience": (_parse_optional_int, "an int >= 0 or none"),
    "min_delta": (_parse_float, "a float >= 0"),
    "min_rel_delta": (_parse_float, "a float >= 0"),
    "baseline": (_parse_float, "a finite float"),
    "start_from_epoch": (int, "an int >= 0"),
    "stopping_threshold": (_parse_float, "a finite float"),
    "divergence_threshold": (_parse_float, "a finite float"),
    "on_nonfinite": (str, "stop, count or raise"),
    "ema": (_parse_float, "a float in (0, 1]"),
    "mean": (int, "an int >= 1"),
    "median": (int, "an int >= 1"),
    "strip": (int, "an int >= 1"),
    "confidence": (_parse_float, "a float in (0.5, 1)"),
    "min_patience": (int, "an int >= 1"),
    "min_lr": (_parse_float, "a float >= 0"),
    "lr_factor": (_parse_float, "a float in [0, 1)"),
    "lr_restart": (_parse_bool, "true or false"),
    "noise_patience": (int, "an int >= 1"),
    "noise_window": (int, "an int >= 4"),
}
_KNOWN = ", ".join(sorted([*_OPTIONS, *_CRITERIA, *(f"{g}(...)" for g in _GROUPS), "auto"]))


def _split(text: str, spec: str) -> list[str]:
    """Split at the commas that are outside parentheses."""
    items: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' in policy {spec!r}")
        elif char == "," and depth == 0:
            items.append(text[start:index].strip())
            start = index + 1
    if depth:
        raise ValueError(f"unbalanced '(' in policy {spec!r}")
    items.append(text[start:].strip())
    for item in items:
        if not item:
            raise ValueError(f"empty item in policy {spec!r} (two commas in a row?)")
    return items


#: How deep ``any(...)``/``all(...)`` may nest: deeper is refused with a ValueError (a
#: SPEC nested hundreds deep would otherwise exhaust the interpreter's recursion limit).
MAX_DEPTH = 32


def _parse_term(item: str, spec: str, depth: int = 0) -> Term | None:
    """A criterion or group item, ``None`` when ``item`` is a plain option."""
    head = item.split("(", 1)[0].strip()
    if "(" in item and depth >= MAX_DEPTH:
        raise ValueError(
            f"policy {_short(spec)} nests any(...)/all(...) more than {MAX_DEPTH} deep"
        )
    if "(" in item:
        if head not in _GROUPS or not item.endswith(")"):
            raise ValueError(
                f"unknown policy group {item!r} in {spec!r} (groups: any(...), all(...))"
            )
        inner = item[len(head) :].strip()[1:-1]
        if not inner.strip():
            raise ValueError(f"empty group {item!r} in policy {spec!r}")
        members: list[Term] = []
        for member in _split(inner, spec):
            term = _parse_term(member, spec, depth + 1)
            if term is None:
                key = member.split("=", 1)[0].strip()
                raise ValueError(
                    f"policy option {key!r} cannot be inside {head}(...) in {spec!r} "
                    f"(allowed: {', '.join(_CRITERIA)}, any(...), all(...))"
                )
            members.append(term)
        return Group(head, tuple(members))
    key, value = _key_value(item, spec)
    if key not in _CRITERIA:
        return None
    parse = _CRITERIA[key]
    try:
        number = float(parse(value))
    except ValueError:
        raise ValueError(
            f"policy option {key!r} must be {'an int' if parse is int else 'a number'}, "
            f"got {value!r} in {spec!r}"
        ) from None
    return Rule(key, number)


def _short(spec: str) -> str:
    """``spec`` quoted, cut to a readable length for a message."""
    return repr(spec) if len(spec) <= 80 else repr(spec[:77]) + "..."


def _key_value(item: str, spec: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if key not in _OPTIONS and key not in _CRITERIA:
        raise ValueError(f"unknown policy option {key!r} in {spec!r} (known: {_KNOWN})")
    if not sep or not value:
        raise ValueError(f"policy option {key!r} needs a value ({key}=...) in {spec!r}")
    return key, value


def _rule_defaults() -> dict[str, Any]:
    """The defaults of ``Stopper``'s rule options, read from its signature (one source)."""
    import inspect

    parameters = inspect.signature(Stopper.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "mode"}


def stopper_from_policy(
    policy: str | Policy,
    *,
    mode: str | Mode,
    rules: dict[str, Any],
    max_epochs: int | None = None,
) -> Stopper:
    """The stopper of ``policy``; ``rules`` are a front end's explicit rule options, which
    must all be at their defaults (a policy replaces them; an option passed with its
    default value cannot be told apart from an omitted one and is accepted).

    Raises:
        ValueError: naming the first rule option that is not at its default.
    """
    defaults = _rule_defaults()
    for name, value in rules.items():
        default = defaults[name]
        if isinstance(value, NonFinite):
            value = value.value
        if name == "criteria":
            at_default = isinstance(value, (list, tuple)) and not value
        else:
            at_default = value is default or value == default
        if not at_default:
            raise ValueError(
                f"`policy` replaces the rule options; got policy={str(policy)!r} and "
                f"{name}={value!r}"
            )
    return parse_policy(policy).build(mode=mode, max_epochs=max_epochs)


def check_max_epochs(max_epochs: Any) -> int | None:
    """``max_epochs`` if it is ``None`` or an int >= 1.

    Raises:
        ValueError: ``"`max_epochs` must be an int >= 1 or None, got ..."``.
    """
    if max_epochs is not None and (
        isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1
    ):
        raise ValueError(f"`max_epochs` must be an int >= 1 or None, got {max_epochs!r}")
    return max_epochs


def parse_policy(spec: str | Policy) -> Policy:
    """Parse a SPEC string into a :class:`Policy` (a :class:`Policy` is returned as is).

    Options: ``patience`` (an int or ``none``), ``min_delta``, ``min_rel_delta``,
    ``baseline``, ``start_from_epoch``, ``stopping_threshold``, ``divergence_threshold``,
    ``on_nonfinite`` (as in :class:`Stopper`); one smoother ``ema=ALPHA``, ``mean=W`` or
    ``median=W``; criteria ``gl=ALPHA``, ``pq=ALPHA``, ``up=S``, ``plateau=W``,
    ``adaptive=FRACTION``, ``trend=W`` (:class:`Trend`), ``rising=W`` (:class:`Rising`),
    ``noise_delta=C`` (:class:`NoiseDelta`), ``budget=FRACTION`` (:class:`BudgetPatience`,
    needs ``max_epochs`` at build) and the groups ``any(...)``/``all(...)`` of criteria;
    ``strip=K`` (for pq and up, default 5), ``confidence=C`` (for plateau, trend and
    rising, default 0.95), ``min_patience=K`` (for adaptive and budget, default 1),
    ``noise_patience=K`` and ``noise_window=W`` (for noise_delta, defaults 10 and 20);
    scheduler awareness ``min_lr=LR``
    (hold while a ReduceLROnPlateau with this ``min_lr`` and ``lr_factor=F``, default 0.1,
    can still reduce), ``lr_restart=true``. ``auto`` alone means :data:`AUTO_SPEC`.

    Without ``patience``, a policy with criteria has none (``gl=2`` is GL alone) and
    one without criteria has the default 7.

    Raises:
        ValueError: naming the bad token and the SPEC.

    >>> policy = parse_policy(" patience=5, ema=0.30 ")
    >>> str(policy)
    'ema=0.3,patience=5'
    >>> str(parse_policy("any(gl=2,up=3)"))
    'any(gl=2,up=3)'
    >>> parse_policy("patince=3")
    Traceback (most recent call last):
    ...
    ValueError: unknown policy option 'patince' in 'patince=3' (known: adaptive, all(...), ...
    """
    if isinstance(spec, Policy):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"`policy` must be a SPEC string or a Policy, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise ValueError("policy SPEC is empty (try 'patience=7' or 'auto')")
    if text == "auto":
        return dataclasses.replace(parse_policy(AUTO_SPEC), name="auto")
    options: dict[str, Any] = {}
    criteria: list[Term] = []
    for item in _split(text, spec):
        if item == "auto":
            raise ValueError(f"'auto' cannot be combined with other options in {spec!r}")
        term = _parse_term(item, spec)
        if term is not None:
            criteria.append(term)
            continue
        key, value = _key_value(item, spec)
        if key in options:
            raise ValueError(f"policy option {key!r} is given twice in {spec!r}")
        parse, expected = _OPTIONS[key]
        try:
            options[key] = parse(value)
        except ValueError:
            raise ValueError(
                f"policy option {key!r} must be {expected}, got {value!r} in {spec!r}"
            ) from None
    if "patience" not in options and criteria:
        options["patience"] = None
    try:
        return Policy(**options, criteria=tuple(criteria))
    except ValueError as exc:
        raise ValueError(f"{exc} (in policy {spec!r})") from None


def _build(policy: Any, *, mode: str, max_epochs: int | None = None) -> Stopper:
    return parse_policy(policy).build(mode=mode, max_epochs=max_epochs)


register_policy_builder(_build)
