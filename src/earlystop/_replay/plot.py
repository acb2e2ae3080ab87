"""The cost-vs-regret figure of replayed policies (needs matplotlib)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .replay import Summary, pareto_front

__all__ = ["plot_summaries"]


def plot_summaries(
    summaries: Sequence[Summary], path: str | Path, highlight: Sequence[str] = ()
) -> None:
    """Save mean cost against mean relative regret, with the Pareto front as a line."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5.5), layout="constrained")
    axes = figure.add_subplot()
    points = [s for s in summaries if not math.isnan(s.mean_rel_regret)]
    axes.scatter(
        [100 * s.mean_cost for s in points],
        [100 * s.mean_rel_regret for s in points],
        s=14,
        color="tab:blue",
        label="policy",
    )
    front = pareto_front(points)
    axes.plot(
        [100 * s.mean_cost for s in front],
        [100 * s.mean_rel_regret for s in front],
        color="tab:orange",
        label="Pareto front",
    )
    for s in points:
        if s in front and s.policy not in highlight:
            axes.annotate(s.policy, (100 * s.mean_cost, 100 * s.mean_rel_regret), fontsize=6)
    for index, s in enumerate(p for p in points if p.policy in highlight):
        point = (100 * s.mean_cost, 100 * s.mean_rel_regret)
        axes.scatter(*point, s=60, color="tab:red", zorder=3)
        axes.annotate(
            s.policy,
            point,
            xytext=(8, 14 + 12 * index),
            textcoords="offset points",
            fontsize=8,
            color="tab:red",
            arrowprops={"arrowstyle": "-", "color": "tab:red", "lw": 0.5},
        )
    axes.set_xlabel("mean cost (% of the epoch budget trained)")
    axes.set_ylabel("mean relative test-loss regret (%)")
    axes.set_title(f"stopping policies on {points[0].runs if points else 0} runs")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=130)
