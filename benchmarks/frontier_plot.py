"""The frontier figure of docs/stopping.md: mean cost against loss-only regret, per corpus.

Drawn by ``benchmarks/auto_policy.py --plot FILE``: one panel per corpus with the oracle,
patience 1-30 as a line, Prechelt's GL/PQ/UP, the new criteria (trend, noise-scaled delta,
budget, rising, adaptive) and the chosen ``auto``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

FAMILIES = (  # (label, test on the SPEC, colour, marker)
    ("GL / PQ / UP", lambda s: s.split("=")[0] in ("gl", "pq", "up"), "tab:green", "s"),
    ("trend (Mann-Kendall)", lambda s: "trend=" in s, "tab:purple", "."),
    ("noise-scaled delta", lambda s: "noise_delta" in s and "trend" not in s, "tab:cyan", "."),
    ("budget", lambda s: "budget" in s and "trend" not in s, "tab:olive", "."),
    ("rising (over-fitting)", lambda s: "rising" in s, "tab:brown", "."),
    ("adaptive", lambda s: s.startswith(("adaptive", "start_from")), "tab:gray", "."),
)


def plot_frontier(table: Any, labels: Sequence[str], auto: str, baseline: str, path: str) -> None:
    """Save the figure (needs matplotlib)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.8), layout="constrained")
    axes_list = figure.subplots(1, len(labels), squeeze=False)[0]
    for axes, label in zip(axes_list, labels, strict=True):
        mask = np.array([r.corpus == label for r in table.runs])

        def point(name: str, mask: np.ndarray = mask) -> tuple[float, float]:
            cost, loss, _, _ = table.figures(name, mask)
            return 100 * cost, 100 * loss

        patience = [f"patience={p}" for p in range(1, 31) if f"patience={p}" in table.cost]
        xs, ys = zip(*(point(n) for n in patience), strict=True)
        axes.plot(xs, ys, "-o", color="tab:blue", ms=3, lw=1, label="patience 1-30")
        for p in (1, 5, 30):
            if f"patience={p}" in table.cost:
                axes.annotate(
                    f"p={p}",
                    point(f"patience={p}"),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=7,
                    color="tab:blue",
                )
        for name, test, colour, marker in FAMILIES:
            members = [n for n in table.names if test(n) and n not in (auto, baseline)]
            if members:
                xs, ys = zip(*(point(n) for n in members), strict=True)
                axes.scatter(
                    xs,
                    ys,
                    s=22 if marker == "s" else 14,
                    color=colour,
                    marker=marker,
                    label=name,
                    alpha=0.8,
                )
        for name, text, colour, marker, offset in (
            ("oracle", "oracle", "black", "*", (6, 6)),
            (baseline, baseline, "tab:blue", "D", (6, -12)),
            (auto, "auto", "tab:red", "*", (-25, 45)),
        ):
            x, y = point(name)
            axes.scatter([x], [y], s=120, color=colour, marker=marker, zorder=4)
            axes.annotate(
                text,
                (x, y),
                xytext=offset,
                textcoords="offset points",
                fontsize=9,
                color=colour,
                weight="bold",
                arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.8},
            )
        axes.set_title(f"corpus {label}: {int(mask.sum())} runs")
        axes.set_xlabel("mean cost (% of the evaluation budget trained)")
        axes.set_ylabel("loss-only regret (%): mean of max(0, rel. test-loss regret)")
        axes.set_ylim(bottom=-0.3)
        axes.grid(alpha=0.3)
    axes_list[0].legend(fontsize=7, loc="upper right")
    figure.savefig(path, dpi=120)
