"""The replay table and Pareto figure of docs/stopping.md.

Replays patience 1-30, Prechelt's GL, PQ and UP, smoothed and adaptive variants and
``auto`` on the committed corpus and prints a Markdown table (one row per policy,
Pareto-optimal rows marked), then saves the cost-vs-regret figure::

    python benchmarks/replay_table.py --plot docs/stopping-pareto.png

The same figures for any subset of policies come from ``earlystop replay CURVES --policy
SPEC ...``; this script only runs many of them in parallel.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from replay_common import fmt, outcomes, replay_stops

from earlystop import AUTO_SPEC, pareto_front, read_curves, summarize
from earlystop._replay.plot import plot_summaries

ROOT = Path(__file__).resolve().parents[1]

POLICIES = [
    *(f"patience={p}" for p in range(1, 31)),
    *(f"gl={a}" for a in (1, 2, 3, 5, 10)),
    *(f"pq={a}" for a in (0.5, 1, 2, 5)),
    *(f"up={s}" for s in (2, 3, 4)),
    "up=2,strip=3",
    "up=3,strip=3",
    *(f"plateau={w}" for w in (10, 20)),
    *(f"ema={a},patience={p}" for a in (0.1, 0.3) for p in (3, 5, 10)),
    *(f"median=5,patience={p}" for p in (3, 5, 10)),
    *(f"mean=5,patience={p}" for p in (5, 10)),
    *(f"adaptive=0.3,min_patience={m}" for m in (5, 12)),
    "auto",
]
# The figure shows fewer patience values than the table, so that every point has a readable
# label; the window where most policies crowd is enlarged in a second panel.
FIGURE_POLICIES = [
    p
    for p in POLICIES
    if not p.startswith("patience=") or int(p.split("=")[1]) in (1, 2, 3, 4, 5, 7, 10, 15, 20, 30)
]
FIGURE_ZOOM = (27.0, 63.0, -0.5, 0.75)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--curves", default=str(ROOT / "benchmarks" / "curves" / "corpus.csv.gz"))
    parser.add_argument("--plot", help="save the Pareto figure here (PNG)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    curves = read_curves(args.curves)
    stops = replay_stops(args.curves, POLICIES, args.jobs)
    failed = {name: s for name, s in stops.items() if isinstance(s, str)}
    summaries = [
        summarize(name, outcomes(curves, s)) for name, s in stops.items() if not isinstance(s, str)
    ]
    front = {s.policy for s in pareto_front(summaries)}
    print(
        "| policy | cost % | rel. regret % | fail % | acc. regret (points) | mean regret "
        "| p90 regret | Pareto |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|:---:|")
    for s in summaries:
        name = f"auto ({AUTO_SPEC})" if s.policy == "auto" else s.policy
        print(
            f"| `{name}` | {fmt(s.mean_cost, digits=1)} | {fmt(s.mean_rel_regret)} "
            f"| {fmt(s.fail_rate, digits=1)} | {fmt(s.mean_acc_regret, 1.0)} "
            f"| {fmt(s.mean_regret, 1.0, 4)} | {fmt(s.p90_regret, 1.0, 4)} "
            f"| {'yes' if s.policy in front else ''} |"
        )
    for name, error in failed.items():
        print(f"| `{name}` | cannot run on this corpus: {error} |||||||")
    first = summaries[0]
    print(
        f"\n{first.runs} runs; {first.left_out} left out of the regret figures; "
        f"{first.acc_runs} with accuracy. ({time.perf_counter() - start:.0f} s)",
        file=sys.stderr,
    )
    if args.plot:
        shown = [s for s in summaries if s.policy in FIGURE_POLICIES]
        plot_summaries(shown, args.plot, highlight=["auto", "patience=20"], zoom=FIGURE_ZOOM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
