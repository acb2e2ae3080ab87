"""How ``auto`` is chosen, and how it does on runs and workloads it was not chosen on.

The protocol is written in docs/stopping.md ("How auto is chosen") and was fixed before it
was run. In short: the runs of both corpora (v1 ``corpus.csv.gz``, v2
``corpus_v2.csv.gz``) are split into *parts*; on a choosing part every candidate of
``CANDIDATES`` is replayed and the cheapest one whose ``mean_loss_regret``,
``share_loss_over_1pct`` and ``fail_rate`` are each no worse than ``patience=20``'s on that
part is chosen; it is then scored on the held-out part against ``patience=20`` and the
oracle (stop at the best validation evaluation of the full run). The splits:

- each corpus in halves, both directions (v1 by the parity of the seed; v2 by the parity
  of the configuration number, so that the seeds of one configuration stay together);
- one corpus to the other, both directions (v1 -> v2 are workloads the choice never saw);
- corpus v2's batch b (configurations 79 on: long budgets and two new workloads, generated
  after every candidate was written), chosen on everything else;
- leave one workload out over both corpora (v1 datasets and v2 workloads).

The rule's choice on all runs is printed, and beside it ``AUTO_SPEC`` as shipped (the
rule's choice on v1 and v2 batch a, kept after batch b: docs/stopping.md says why), both
in-sample. Intervals are 95% paired bootstrap intervals over clusters (a v2 configuration
with its seeds, or a v1 run), resampled 2000 times. The stop evaluation of every candidate
on every run is cached under ``--cache`` (keyed by a hash of the run's values and the
SPEC), so a rerun replays only new runs and candidates::

    python benchmarks/auto_policy.py --plot docs/stopping-frontier.png

``--quick`` replays a dozen candidates (a smoke test).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from replay_common import fmt, replay_stops

from earlystop import AUTO_SPEC, Curve, Outcome, Summary, read_curves, summarize
from earlystop._replay.replay import ORACLE, oracle_outcomes, outcome_at

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "patience=20"
BATCH_B_FROM = 79  # corpus v2's batch b starts at this configuration (generate_v2.py)
BATCH_C_FROM = 159  # and batch c at this one
# the two policies tested on batch c (fixed before it was generated); the proposal passed
# and is AUTO_SPEC since
AUTO_BEFORE_BATCH_C = "patience=25,rising=15,confidence=0.999"
PROPOSAL = "patience=25,rising=20,confidence=0.999"  # the per-corpus rule's choice
MIN_GAP = 0.02  # the gap closed is shown where patience=20 costs >= 2 points above the oracle
PREVIOUS_AUTO = "start_from_epoch=3,adaptive=0.3,min_patience=12"
DEFAULT_CORPORA = (
    f"v1={ROOT / 'benchmarks' / 'curves' / 'corpus.csv.gz'}",
    f"v2={ROOT / 'benchmarks' / 'curves' / 'corpus_v2.csv.gz'}",
)


def frontier_candidates() -> list[str]:
    """The literature's rules and patience: the frontier figure's reference points."""
    specs = [f"patience={p}" for p in range(1, 31)]
    specs += [f"gl={a}" for a in (1, 2, 3, 5, 10)]
    specs += [f"pq={a}" for a in (0.5, 1, 2, 5)]
    specs += [f"up={s}" for s in (2, 3, 4)] + [f"up={s},strip=3" for s in (2, 3)]
    return specs


def new_candidates() -> list[str]:
    """Adaptive patience, the trend test, the noise-scaled delta, the budget and the
    over-fitting detector, alone and combined (``patience=P`` is a ceiling on the wait)."""
    specs = [PREVIOUS_AUTO]
    specs += [f"adaptive={f},min_patience={m}" for f in (0.1, 0.2, 0.3) for m in (6, 8, 10, 12, 15)]
    for ceiling in (20, 25, 30):
        specs += [
            f"patience={ceiling},all(trend={w},adaptive={f}),min_patience={m}"
            for w in (10, 15, 20)
            for f in (0.1, 0.2)
            for m in (4, 6, 8, 10)
        ]
    for ceiling in (20, 30):
        specs += [
            f"patience={ceiling},all(trend=15,budget={b}),min_patience={m}"
            for b in (0.02, 0.03, 0.05)
            for m in (4, 6, 8)
        ]
        specs += [
            f"patience={ceiling},noise_delta={c},noise_patience={k}"
            for c in (0.5, 1, 2)
            for k in (6, 8, 10, 12, 15)
        ]
        specs += [
            f"patience={ceiling},all(trend=15,noise_delta=1),noise_patience={k}" for k in (6, 8, 10)
        ]
        specs += [
            f"patience={ceiling},rising={w},confidence={c}" for w in (10, 20) for c in (0.95, 0.99)
        ]
        specs += [
            f"patience={ceiling},all(trend=15,adaptive=0.1),min_patience=6,confidence={c}"
            for c in (0.9, 0.99)
        ]
    specs += [
        f"patience=none,budget={b},min_patience={m}"
        for b in (0.05, 0.1, 0.15)
        for m in (5, 10, 15, 20)
    ]
    specs += [f"patience=20,budget={b}" for b in (0.05, 0.1)]
    specs += [f"ema=0.5,patience=20,all(trend=15,adaptive=0.1),min_patience={m}" for m in (4, 6)]
    return specs


def round_two_candidates() -> list[str]:
    """Added after reading the v1 results (where ``patience=20,rising=20,confidence=0.99``
    was chosen) and before corpus v2 was replayed: the over-fitting detector around it."""
    specs = [
        f"patience={p},rising={w},confidence={c}"
        for p in (20, 25, 30, 40)
        for w in (10, 15, 20, 30)
        for c in (0.99, 0.999)
    ]
    specs += [
        f"patience={p},any(rising=20,all(trend=15,adaptive=0.1)),min_patience={m},confidence=0.99"
        for p in (20, 30)
        for m in (6, 10)
    ]
    specs += [
        f"patience={p},any(rising=20,noise_delta=1),noise_patience={k},confidence=0.99"
        for p in (20, 30)
        for k in (10, 15)
    ]
    specs += [f"ema=0.3,patience={p},rising=20,confidence=0.99" for p in (20, 30)]
    return specs


def round_three_candidates() -> list[str]:
    """Added before batch b of corpus v2 (configurations 79 on) was generated or replayed:
    quicker over-fitting detection (shorter windows), GL (Prechelt's generalization loss) as
    a second over-fitting test under a patience ceiling, and the two together."""
    specs = [
        f"patience={p},rising={w},confidence={c}"
        for p in (20, 25, 30, 40)
        for w in (6, 8)
        for c in (0.99, 0.999)
    ]
    specs += [f"patience={p},gl={a}" for p in (25, 30, 40) for a in (2, 5, 10, 20)]
    specs += [
        f"patience={p},any(rising={w},gl={a}),confidence=0.999"
        for p in (25, 30, 40)
        for w in (10, 15)
        for a in (5, 10)
    ]
    specs += [
        f"ema=0.3,patience={p},rising={w},confidence=0.999" for p in (25, 30) for w in (8, 15)
    ]
    return specs


CANDIDATES = list(
    dict.fromkeys(
        [
            *frontier_candidates(),
            *new_candidates(),
            *round_two_candidates(),
            *round_three_candidates(),
        ]
    )
)
QUICK = [
    BASELINE,
    "patience=5",
    "patience=10",
    "gl=2",
    "up=2",
    PREVIOUS_AUTO,
    "patience=20,all(trend=15,adaptive=0.1),min_patience=6",
    "patience=20,noise_delta=1,noise_patience=10",
    "patience=20,all(trend=15,budget=0.03),min_patience=6",
    "patience=none,budget=0.1,min_patience=10",
    "patience=20,rising=10,confidence=0.99",
]


@dataclass(frozen=True)
class Run:
    """One curve with where it comes from."""

    corpus: str
    workload: str
    cluster: str  # the bootstrap unit
    half: int  # 0 or 1
    batch: str = ""  # corpus v2: "a" (configurations 0-78) or "b" (79 on)


def describe(corpus: str, curve: Curve, index: int) -> Run:
    parts = curve.run.split("/")
    workload = f"{corpus}:{parts[0]}"
    groups = [p for p in parts if p.startswith("g") and p[1:].isdigit()]
    seeds = [p for p in parts if p.startswith("s") and p[1:].isdigit()]
    if groups:  # v2: a configuration and its seeds stay together
        group = int(groups[-1][1:])
        batch = "a" if group < BATCH_B_FROM else "b" if group < BATCH_C_FROM else "c"
        return Run(corpus, workload, f"{corpus}:{groups[-1]}", group % 2, batch)
    seed = int(seeds[-1][1:]) if seeds else index
    return Run(corpus, workload, f"{corpus}:{curve.run}", seed % 2)


class Table:
    """Per-run outcomes of every candidate, as arrays for quick figures on any mask."""

    def __init__(self, outcomes: dict[str, list[Outcome]], runs: Sequence[Run]) -> None:
        self.runs = list(runs)
        self.names = list(outcomes)
        self.outcomes = outcomes
        self.cost = {n: np.array([o.cost for o in outs]) for n, outs in outcomes.items()}
        self.rel = {
            n: np.array([np.nan if o.rel_regret is None else o.rel_regret for o in outs])
            for n, outs in outcomes.items()
        }
        self.acc = {
            n: np.array([np.nan if o.acc_regret is None else o.acc_regret for o in outs])
            for n, outs in outcomes.items()
        }

    def summary(self, name: str, mask: np.ndarray) -> Summary:
        keep = [o for o, k in zip(self.outcomes[name], mask, strict=True) if k]
        return summarize(name, keep)

    def figures(self, name: str, mask: np.ndarray) -> tuple[float, float, float, float]:
        """cost, loss-only regret, share > 1%, fail rate on the runs of ``mask``."""
        rel, acc = self.rel[name][mask], self.acc[name][mask]
        rel, acc = rel[~np.isnan(rel)], acc[~np.isnan(acc)]
        return (
            float(self.cost[name][mask].mean()),
            float(np.maximum(rel, 0).mean()) if rel.size else math.nan,
            float((rel > 0.01).mean()) if rel.size else math.nan,
            float((acc > 0.5).mean()) if acc.size else math.nan,
        )


def no_worse(value: float, base: float) -> bool:
    return math.isnan(base) or (not math.isnan(value) and value <= base + 1e-12)


def eligible(spec: str) -> bool:
    """``auto`` must work without a budget: rules that need ``max_epochs`` are not eligible."""
    return "budget=" not in spec


def choose(table: Table, mask: np.ndarray, candidates: Sequence[str]) -> str:
    """The cheapest eligible candidate no worse than the baseline on the three quality
    figures."""
    _, base_loss, base_share, base_fail = table.figures(BASELINE, mask)
    best: tuple[float, float, str] | None = None
    for name in filter(eligible, candidates):
        cost, loss, share, fail = table.figures(name, mask)
        if no_worse(loss, base_loss) and no_worse(share, base_share) and no_worse(fail, base_fail):
            key = (cost, loss, name)
            if best is None or key < best:
                best = key
    return BASELINE if best is None else best[2]


def choose_per_corpus(table: Table, mask: np.ndarray, candidates: Sequence[str]) -> str:
    """The cheapest eligible candidate no worse than the baseline on the three quality
    figures on *each* corpus and v2 batch among the runs of ``mask`` (v1, v2 batches a, b,
    c), not only pooled; ``auto`` is this rule's choice (docs/stopping.md says how it was
    tested)."""
    groups = [
        mask & np.array([(r.corpus, r.batch) == key for r in table.runs])
        for key in dict.fromkeys(
            (r.corpus, r.batch) for r, m in zip(table.runs, mask, strict=True) if m
        )
    ]
    best: tuple[float, float, str] | None = None
    for name in filter(eligible, candidates):
        if all(_no_worse_than_baseline(table, name, group) for group in groups):
            cost, loss, _, _ = table.figures(name, mask)
            if best is None or (cost, loss, name) < best:
                best = (cost, loss, name)
    return BASELINE if best is None else best[2]


def _no_worse_than_baseline(table: Table, name: str, mask: np.ndarray) -> bool:
    _, base_loss, base_share, base_fail = table.figures(BASELINE, mask)
    _, loss, share, fail = table.figures(name, mask)
    return no_worse(loss, base_loss) and no_worse(share, base_share) and no_worse(fail, base_fail)


def bootstrap(
    table: Table, chosen: str, mask: np.ndarray, draws: int = 2000
) -> dict[str, tuple[float, float]]:
    """95% cluster-bootstrap intervals of the chosen policy's figures minus the baseline's,
    and of the share of the cost gap between the baseline and the oracle it closes."""
    index = np.flatnonzero(mask)
    clusters: dict[str, list[int]] = {}
    for i in index:
        clusters.setdefault(table.runs[i].cluster, []).append(int(i))
    members = list(clusters.values())
    rng = np.random.default_rng(0)
    rows: list[list[float]] = []
    for _ in range(draws):
        pick = rng.integers(0, len(members), len(members))
        sample = np.zeros(len(table.runs), dtype=int)
        for p in pick:
            sample[members[p]] += 1
        rows.append(_weighted(table, chosen, sample))
    data = np.array(rows)
    names = ["gap", "d_loss", "d_share", "d_fail"]
    result = {}
    for i, name in enumerate(names):
        column = data[:, i][~np.isnan(data[:, i])]
        result[name] = (
            (float(np.percentile(column, 2.5)), float(np.percentile(column, 97.5)))
            if column.size
            else (math.nan, math.nan)
        )
    return result


def _weighted(table: Table, chosen: str, weight: np.ndarray) -> list[float]:
    def mean(values: np.ndarray) -> float:
        ok = ~np.isnan(values) & (weight > 0)
        return float(np.average(values[ok], weights=weight[ok])) if ok.any() else math.nan

    def figures(name: str) -> tuple[float, float, float, float]:
        rel, acc = table.rel[name], table.acc[name]
        return (
            mean(table.cost[name]),
            mean(np.where(np.isnan(rel), np.nan, np.maximum(rel, 0))),
            mean(np.where(np.isnan(rel), np.nan, (rel > 0.01).astype(float))),
            mean(np.where(np.isnan(acc), np.nan, (acc > 0.5).astype(float))),
        )

    c, b, o = figures(chosen), figures(BASELINE), figures(ORACLE)
    gap = (b[0] - c[0]) / (b[0] - o[0]) if b[0] - o[0] >= MIN_GAP else math.nan
    return [gap, c[1] - b[1], c[2] - b[2], c[3] - b[3]]


def gap_closed(table: Table, chosen: str, mask: np.ndarray) -> float:
    base, oracle = table.figures(BASELINE, mask)[0], table.figures(ORACLE, mask)[0]
    if base - oracle < MIN_GAP:  # a share of almost nothing says nothing
        return math.nan
    return (base - table.figures(chosen, mask)[0]) / (base - oracle)


def interval(bounds: tuple[float, float], scale: float = 100.0, digits: int = 1) -> str:
    low, high = bounds
    return f"[{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"


HEAD = (
    "| held-out part | runs | chosen on | chosen | cost: oracle / p20 / chosen | gap closed "
    "[95%] | loss regret %: p20 / chosen (diff [95%]) | > 1% share: p20 / chosen (diff [95%]) "
    "| fail %: p20 / chosen (diff [95%]) | quality holds | goal met |\n"
    "|---|---:|---|---|---|---|---|---|---|:---:|:---:|"
)


def part_row(
    table: Table, label: str, trained_on: str, chosen: str, mask: np.ndarray, draws: int
) -> str:
    base, ours, oracle = (table.figures(n, mask) for n in (BASELINE, chosen, ORACLE))
    ci = bootstrap(table, chosen, mask, draws)
    holds = all(no_worse(ours[i], base[i]) for i in (1, 2, 3))
    gap = gap_closed(table, chosen, mask)
    gap_text = "-" if math.isnan(gap) else f"{fmt(gap, digits=0)}% {interval(ci['gap'], digits=0)}"
    return (
        f"| {label} | {int(mask.sum())} | {trained_on} | `{chosen}` | {fmt(oracle[0], digits=1)} / "
        f"{fmt(base[0], digits=1)} / {fmt(ours[0], digits=1)} | {gap_text} "
        f"| {fmt(base[1])} / {fmt(ours[1])} "
        f"({100 * (ours[1] - base[1]):+.2f} {interval(ci['d_loss'], digits=2)}) "
        f"| {fmt(base[2], digits=1)} / {fmt(ours[2], digits=1)} "
        f"({100 * (ours[2] - base[2]):+.1f} {interval(ci['d_share'])}) "
        f"| {fmt(base[3], digits=1)} / {fmt(ours[3], digits=1)} "
        f"({100 * (ours[3] - base[3]):+.1f} {interval(ci['d_fail'])}) "
        f"| {'yes' if holds else 'no'} | {'yes' if holds and gap >= 0.75 else 'no'} |"
    )


def load(corpora: Sequence[str], specs: Sequence[str], cache: str | None, jobs: int) -> Table:
    outcomes: dict[str, list[Outcome]] = {name: [] for name in [*specs, ORACLE]}
    runs: list[Run] = []
    for item in corpora:
        label, _, path = item.partition("=")
        curves = read_curves(path)
        stops = replay_stops(path, specs, jobs, cache=cache)
        for spec in specs:
            result = stops[spec]
            if isinstance(result, str):
                raise SystemExit(f"{spec} cannot run on {path}: {result}")
            outcomes[spec] += [outcome_at(c, s) for c, s in zip(curves, result, strict=True)]
        outcomes[ORACLE] += oracle_outcomes(curves)
        runs += [describe(label, c, i) for i, c in enumerate(curves)]
    return Table(outcomes, runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus",
        action="append",
        metavar="LABEL=PATH",
        help="a curves file and its label (repeatable; default: v1 and v2 of benchmarks/curves)",
    )
    parser.add_argument("--cache", default=str(ROOT / "benchmarks" / ".replay-cache"))
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--plot", help="save the frontier figure here (PNG)")
    parser.add_argument("--quick", action="store_true", help="a dozen candidates (smoke test)")
    args = parser.parse_args(argv)

    corpora = args.corpus or list(DEFAULT_CORPORA)
    candidates = QUICK if args.quick else CANDIDATES
    specs = list(dict.fromkeys([BASELINE, *candidates, AUTO_SPEC, AUTO_BEFORE_BATCH_C, PROPOSAL]))
    table = load(corpora, specs, args.cache or None, args.jobs)
    runs = table.runs
    everything = np.ones(len(runs), dtype=bool)
    labels = list(dict.fromkeys(r.corpus for r in runs))
    count = len(dict.fromkeys([BASELINE, *candidates]))
    print(f"{count} candidates, {len(runs)} runs ({', '.join(labels)}).\n")

    print("## Held-out parts\n")
    print(HEAD)
    parts: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    for label in labels:
        for half in (0, 1):
            on = np.array([r.corpus == label and r.half == half for r in runs])
            held = np.array([r.corpus == label and r.half != half for r in runs])
            name = "even" if half == 0 else "odd"
            other = "odd" if half == 0 else "even"
            parts.append((f"{label} {other} half", f"{label} {name} half", on, held))
    for label in labels:
        for other in labels:
            if other != label:
                on = np.array([r.corpus == label for r in runs])
                parts.append((f"all of {other}", f"all of {label}", on, ~on))
    fresh = np.array([r.batch == "b" for r in runs])
    earlier = np.array([r.batch in ("", "a") for r in runs])
    if fresh.any() and earlier.any():  # the runs no candidate was written after
        parts.append(("v2 batch b", "v1 and v2 batch a", earlier, fresh))
    workloads = list(dict.fromkeys(r.workload for r in runs))
    lowo = []
    for workload in workloads:
        held = np.array([r.workload == workload for r in runs])
        lowo.append(workload)
        parts.append((workload, "the other workloads", ~held, held))
    held_ok = goal_ok = 0
    for label, trained_on, on, held in parts:
        if not on.any() or not held.any():
            continue
        chosen = choose(table, on, candidates)
        row = part_row(table, label, trained_on, chosen, held, args.draws)
        held_ok += "| yes | " in row
        goal_ok += row.endswith("| yes |")
        print(row)
    print(
        f"\nQuality held on {held_ok} of {len(parts)} held-out parts; the goal (quality held "
        f"and >= 75% of the gap closed) on {goal_ok}."
    )

    last = np.array([r.batch == "c" for r in runs])
    if last.any() and (~last).any():
        print("\n## Batch c: the test fixed in advance (nothing is chosen on batch c)\n")
        print(HEAD)
        before = choose(table, ~last, candidates)
        for name, origin in (
            (AUTO_BEFORE_BATCH_C, "fixed: AUTO_SPEC before batch c"),
            (PROPOSAL, "fixed: the per-corpus proposal"),
            (before, "the rule, on v1, batches a and b"),
        ):
            print(part_row(table, "v2 batch c", origin, name, last, args.draws))

    per_corpus = choose_per_corpus(table, everything, candidates)
    print(f"\n## The per-corpus rule's choice on all {len(runs)} runs: `{per_corpus}`\n")
    choice = choose(table, everything, candidates)
    print(f"\n## The choice on all {len(runs)} runs: `{choice}`\n")
    print(f"(AUTO_SPEC in this checkout: `{AUTO_SPEC}`; below, each in-sample)\n")
    print(HEAD)
    for name in dict.fromkeys([choice, AUTO_SPEC]):
        what = "the choice" if name == choice else "AUTO_SPEC"
        print(part_row(table, f"all runs ({what})", "all runs", name, everything, args.draws))
        subsets = [(label, np.array([r.corpus == label for r in runs])) for label in labels]
        subsets += [
            (f"v2 batch {b}", np.array([r.batch == b for r in runs])) for b in ("a", "b", "c")
        ]
        for label, mask in subsets:
            if mask.any():
                print(part_row(table, f"{label} ({what})", "all runs", name, mask, args.draws))

    auto = AUTO_SPEC
    print(f"\n## Per workload: patience=20 and AUTO_SPEC `{auto}`\n")
    print(
        "| workload | runs | oracle cost % | p20 cost % | auto cost % | p20 loss regret % "
        "| auto loss regret % | p20 > 1% | auto > 1% | p20 fail % | auto fail % |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workload in workloads:
        mask = np.array([r.workload == workload for r in runs])
        o, b, c = (table.figures(n, mask) for n in (ORACLE, BASELINE, auto))
        print(
            f"| {workload} | {int(mask.sum())} | {fmt(o[0], digits=1)} | {fmt(b[0], digits=1)} "
            f"| {fmt(c[0], digits=1)} | {fmt(b[1])} | {fmt(c[1])} | {fmt(b[2], digits=1)} "
            f"| {fmt(c[2], digits=1)} | {fmt(b[3], digits=1)} | {fmt(c[3], digits=1)} |"
        )

    print("\n## Every candidate on each corpus\n")
    print("| policy | " + " | ".join(f"{x} cost / loss regret / >1% / fail" for x in labels) + " |")
    print("|---|" + "---|" * len(labels))
    for name in [ORACLE, *specs]:
        cells = []
        for label in labels:
            mask = np.array([r.corpus == label for r in runs])
            c, lr, sh, fl = table.figures(name, mask)
            cells.append(
                f"{fmt(c, digits=1)} / {fmt(lr)} / {fmt(sh, digits=1)} / {fmt(fl, digits=1)}"
            )
        print(f"| `{name}` | " + " | ".join(cells) + " |")
    if args.plot:
        from frontier_plot import plot_frontier

        plot_frontier(table, labels, auto, BASELINE, args.plot)
        print(f"\nfigure saved to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
