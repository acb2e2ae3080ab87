"""How ``auto`` was chosen, and how it does on runs it was not chosen on.

The corpus is split by the seed at the end of every run name: runs with an even seed
are the *selection* half, runs with an odd seed the *evaluation* half (configurations are
drawn independently for every seed, so the halves are two samples of the same mix).

On the selection half only, every candidate in ``CANDIDATES`` is replayed and the
baseline ``patience=20`` measured. A candidate qualifies when its ``mean_rel_regret`` and
``fail_rate`` are no worse than the baseline's; the cheapest qualifying candidate is the
choice. The script then prints the choice and the baseline on the evaluation half (the
figures reported in docs/stopping.md), and a leave-one-dataset-out check: for each
dataset, the same selection made on the other datasets and scored on that one::

    python benchmarks/auto_policy.py
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from replay_common import dataset_of, fmt, outcomes, replay_stops, seed_of

from earlystop import Curve, Outcome, Summary, read_curves, summarize

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "patience=20"


def _candidates() -> list[str]:
    specs = [f"patience={p}" for p in range(1, 31)]
    specs += [
        f"ema={a},patience={p}" for a in (0.1, 0.2, 0.3, 0.5) for p in (3, 4, 5, 6, 8, 10, 12, 15)
    ]
    specs += [f"median={w},patience={p}" for w in (3, 5) for p in (4, 6, 8, 10, 12)]
    specs += [f"mean=5,patience={p}" for p in (5, 10)]
    specs += [f"min_rel_delta={d},patience={p}" for d in (0.001, 0.01) for p in (5, 8, 10, 12, 15)]
    specs += [f"gl={a}" for a in (1, 2, 3, 5, 10, 20)]
    specs += [f"pq={a}" for a in (0.5, 1, 2, 5)]
    specs += [f"up={s}" for s in (2, 3, 4)]
    specs += [f"up={s},strip=3" for s in (2, 3, 4)]
    specs += [f"plateau={w}" for w in (10, 15, 20, 30)]
    specs += [f"plateau={w},confidence=0.99" for w in (10, 20, 30)]
    for smooth in ("ema=0.3", "ema=0.1"):
        for p in (15, 20, 30):
            specs += [
                f"{smooth},patience={p},all(gl={g},plateau={w})" for g in (1, 5) for w in (10, 20)
            ]
            specs += [f"{smooth},patience={p},up={s}" for s in (2, 3)]
            for w in (10, 20, 30):
                specs += [f"{smooth},patience={p},plateau={w}"]
                specs += [f"{smooth},patience={p},plateau={w},confidence=0.99"]
        for w in (10, 20, 30):
            specs += [f"{smooth},patience=none,plateau={w}"]
            specs += [f"{smooth},patience=none,plateau={w},confidence=0.99"]
    specs += [
        f"ema={a},patience={p},gl={g}"
        for a in (0.1, 0.3, 0.5)
        for p in (12, 15, 20, 25)
        for g in (1, 2, 3, 5, 10)
    ]
    for a in (0.3, 0.5):
        for p in (15, 20):
            specs += [f"ema={a},patience={p},up={s},strip={k}" for s in (1, 2) for k in (2, 3)]
    specs += [
        f"{m}patience={p},gl={g}" for m in ("median=5,", "") for p in (15, 20) for g in (2, 5)
    ]
    for warm in (3, 5, 10):  # warm-up evaluations that neither improve nor count
        for p in (6, 8, 10, 12):
            specs += [
                f"{m}patience={p},start_from_epoch={warm}" for m in ("", "ema=0.5,", "ema=0.3,")
            ]
    specs += [f"ema={a},patience={p}" for p in range(9, 15) for a in (0.4, 0.5, 0.6, 0.7)]
    # adaptive patience: wait max(min_patience, ceil(fraction * best step)) evaluations
    for smooth in ("", "ema=0.3,", "ema=0.5,"):
        for warm in ("", ",start_from_epoch=3", ",start_from_epoch=5", ",start_from_epoch=10"):
            specs += [
                f"{smooth}adaptive={f},min_patience={m}{warm}"
                for f in (0.1, 0.2, 0.3, 0.5, 0.75)
                for m in (5, 8, 10, 12, 15)
            ]
        specs += [  # with patience 20 as a ceiling on the wait
            f"{smooth}patience=20,adaptive={f},min_patience={m},start_from_epoch=5"
            for f in (0.3, 0.5)
            for m in (8, 10, 12)
        ]
    return list(dict.fromkeys(specs))


CANDIDATES = _candidates()


def choose(figures: Callable[[str], Summary], candidates: Sequence[str]) -> tuple[str, Summary]:
    """The cheapest candidate no worse than the baseline on regret and failures."""
    base = figures(BASELINE)
    qualified = [
        s
        for s in (figures(spec) for spec in candidates)
        if s.mean_rel_regret <= base.mean_rel_regret and s.fail_rate <= base.fail_rate
    ]
    best = min(qualified, key=lambda s: (s.mean_cost, s.mean_rel_regret))
    return best.policy, best


def row(label: str, s: Summary, base: Summary | None = None) -> str:
    ratio = "" if base is None else f" ({s.mean_cost / base.mean_cost:.2f}x)"
    return (
        f"| {label} | {s.runs} | {fmt(s.mean_cost, digits=1)}{ratio} | {fmt(s.mean_rel_regret)} "
        f"| {fmt(s.fail_rate, digits=1)} | {fmt(s.mean_acc_regret, 1.0)} "
        f"| {fmt(s.mean_regret, 1.0, 4)} |"
    )


HEADER = (
    "| policy | runs | cost % | rel. regret % | fail % | acc. regret | mean regret |\n"
    "|---|---:|---:|---:|---:|---:|---:|"
)


def paired_bootstrap(
    chosen: Sequence[Outcome], base: Sequence[Outcome], keep: Sequence[bool], draws: int = 2000
) -> str:
    """95% intervals of the cost ratio and of the relative-regret difference, run-paired."""
    pairs = [(c, b) for c, b, k in zip(chosen, base, keep, strict=True) if k]
    cost = np.array([[c.cost, b.cost] for c, b in pairs])
    diff = np.array(
        [
            c.rel_regret - b.rel_regret
            for c, b in pairs
            if c.rel_regret is not None and b.rel_regret is not None
        ]
    )
    rng = np.random.default_rng(0)
    ratios, diffs = [], []
    for _ in range(draws):
        sample = cost[rng.integers(0, len(cost), len(cost))]
        ratios.append(sample[:, 0].mean() / sample[:, 1].mean())
        diffs.append(diff[rng.integers(0, len(diff), len(diff))].mean() if diff.size else np.nan)
    low, high = np.percentile(ratios, [2.5, 97.5])
    d_low, d_high = np.percentile(diffs, [2.5, 97.5])
    return (
        f"\nPaired bootstrap over the evaluation runs ({draws} resamples, 95% intervals): "
        f"cost ratio {cost[:, 0].mean() / cost[:, 1].mean():.3f} [{low:.3f}, {high:.3f}], "
        f"relative regret minus {BASELINE}'s {100 * diff.mean():+.2f} points "
        f"[{100 * d_low:+.2f}, {100 * d_high:+.2f}]."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--curves", default=str(ROOT / "benchmarks" / "curves" / "corpus.csv.gz"))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--policy", action="append", help="also score these SPECs on the evaluation half"
    )
    args = parser.parse_args(argv)

    curves: list[Curve] = read_curves(args.curves)
    extra = [p for p in args.policy or [] if p not in CANDIDATES]
    stops = replay_stops(args.curves, [*CANDIDATES, *extra], args.jobs)
    per_run: dict[str, list[Outcome]] = {
        spec: outcomes(curves, s) for spec, s in stops.items() if not isinstance(s, str)
    }

    candidates = [spec for spec in CANDIDATES if spec in per_run]
    for spec, error in stops.items():
        if isinstance(error, str):
            print(f"left out {spec}: {error}\n")

    def figures_on(keep: Sequence[bool]) -> Callable[[str], Summary]:
        return lambda spec: summarize(
            spec, (o for o, k in zip(per_run[spec], keep, strict=True) if k)
        )

    selection = [seed_of(c.run) % 2 == 0 for c in curves]
    evaluation = [not k for k in selection]
    chosen, _ = choose(figures_on(selection), candidates)
    on_selection, on_evaluation = figures_on(selection), figures_on(evaluation)
    print(f"Chosen on the selection half ({sum(selection)} runs): {chosen}\n")
    print("Selection half (what the choice was made on):\n")
    print(HEADER)
    print(row(BASELINE, on_selection(BASELINE)))
    print(row(chosen, on_selection(chosen), on_selection(BASELINE)))
    print(f"\nEvaluation half ({sum(evaluation)} runs, never seen by the choice):\n")
    print(HEADER)
    base = on_evaluation(BASELINE)
    print(row(BASELINE, base))
    print(row(f"**{chosen}**", on_evaluation(chosen), base))
    for spec in extra:
        print(row(spec, on_evaluation(spec), base))

    print(paired_bootstrap(per_run[chosen], per_run[BASELINE], evaluation))

    print("\nLeave one dataset out (choose on the other datasets, score on this one):\n")
    print(
        "| held-out dataset | chosen | runs | cost % (vs patience=20) | rel. regret % "
        "(patience=20) | fail % (patience=20) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for dataset in sorted({dataset_of(c.run) for c in curves}):
        inside = [dataset_of(c.run) != dataset for c in curves]
        pick, _ = choose(figures_on(inside), candidates)
        held = figures_on([not k for k in inside])
        s, b = held(pick), held(BASELINE)
        print(
            f"| {dataset} | `{pick}` | {s.runs} | {fmt(s.mean_cost, digits=1)} "
            f"({fmt(b.mean_cost, digits=1)}) | {fmt(s.mean_rel_regret)} ({fmt(b.mean_rel_regret)}) "
            f"| {fmt(s.fail_rate, digits=1)} ({fmt(b.fail_rate, digits=1)}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
