"""The cost-vs-regret figure of replayed policies (needs matplotlib).

Every policy is labelled. Labels are placed one by one, greedily, at the nearest spot around
their point where they overlap no other label, no point and no edge of the plot; a label
set away from its point gets a thin leader line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .replay import Summary, pareto_front

__all__ = ["place_labels", "plot_summaries"]

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels


def plot_summaries(
    summaries: Sequence[Summary],
    path: str | Path,
    highlight: Sequence[str] = (),
    zoom: tuple[float, float, float, float] | None = None,
) -> None:
    """Save mean cost against mean relative regret, with the Pareto front as a line.

    Args:
        summaries: the policies; one labelled point each (those without a regret figure
            are listed under the plot instead).
        path: the image file (its suffix chooses the format).
        highlight: policies drawn in red (a recommendation, the policies a text discusses).
        zoom: ``(cost0, cost1, regret0, regret1)`` in percent: a second panel enlarges that
            window (where a crowd of policies sits); the overview labels only the points
            outside it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    figure = Figure(figsize=(9, 6) if zoom is None else (15, 7.5), layout="constrained")
    canvas = FigureCanvasAgg(figure)
    points = [s for s in summaries if not math.isnan(s.mean_rel_regret)]
    panels = (
        [figure.add_subplot(1, 1, 1)]
        if zoom is None
        else list(figure.subplots(1, 2, width_ratios=[1, 1.5]))
    )
    inside = [_within(s, zoom) for s in points] if zoom else [False] * len(points)
    labelled = [
        (panels[0], [p for p, i in zip(points, inside, strict=True) if not i]),
    ]
    _draw(panels[0], points, highlight)
    if zoom is not None:
        _draw(panels[1], [p for p, i in zip(points, inside, strict=True) if i], highlight, zoom)
        panels[0].add_patch(
            Rectangle(
                (zoom[0], zoom[2]),
                zoom[1] - zoom[0],
                zoom[3] - zoom[2],
                fill=False,
                linestyle="--",
                color="grey",
            )
        )
        panels[0].set_title("all policies (dashed: enlarged on the right)", fontsize="medium")
        panels[1].set_title("enlarged", fontsize="medium")
        labelled.append((panels[1], [p for p, i in zip(points, inside, strict=True) if i]))
    figure.suptitle(f"stopping policies on {points[0].runs if points else 0} runs")
    unplotted = [s.policy for s in summaries if math.isnan(s.mean_rel_regret)]
    if unplotted:
        figure.supxlabel(
            "no regret figure (no finite test_loss), not plotted: " + ", ".join(unplotted),
            fontsize="small",
        )
    renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]
    for axes, shown in labelled:
        place_labels(
            axes,
            renderer,
            [
                (
                    100 * s.mean_cost,
                    100 * s.mean_rel_regret,
                    s.policy,
                    "tab:red" if s.policy in highlight else "black",
                )
                for s in shown
            ],
        )
    figure.savefig(path, dpi=130)


def _within(summary: Summary, window: tuple[float, float, float, float]) -> bool:
    x, y = 100 * summary.mean_cost, 100 * summary.mean_rel_regret
    return window[0] <= x <= window[1] and window[2] <= y <= window[3]


def _draw(
    axes: Any,
    points: Sequence[Summary],
    highlight: Sequence[str],
    window: tuple[float, float, float, float] | None = None,
) -> None:
    """The points (highlighted ones in red), the Pareto front, axes and legend."""
    plain = [s for s in points if s.policy not in highlight]
    red = [s for s in points if s.policy in highlight]
    axes.scatter(
        [100 * s.mean_cost for s in plain],
        [100 * s.mean_rel_regret for s in plain],
        s=16,
        color="tab:blue",
        label="policy",
        zorder=2,
    )
    if red:
        axes.scatter(
            [100 * s.mean_cost for s in red],
            [100 * s.mean_rel_regret for s in red],
            s=50,
            color="tab:red",
            label=", ".join(s.policy for s in red),
            zorder=3,
        )
    front = pareto_front(points)
    axes.plot(
        [100 * s.mean_cost for s in front],
        [100 * s.mean_rel_regret for s in front],
        color="tab:orange",
        label="Pareto front" + (" (of these points)" if window else ""),
        zorder=1,
    )
    axes.axhline(0.0, color="grey", linewidth=0.6, zorder=0)
    axes.set_xlabel("mean cost (% of the epoch budget trained)")
    axes.set_ylabel("mean relative test-loss regret (%)")
    axes.grid(alpha=0.3)
    if window is not None:
        axes.set_xlim(window[0], window[1])
        axes.set_ylim(window[2], window[3])
    elif points:  # room for the labels around the cloud
        _pad_limits(
            axes, [100 * s.mean_cost for s in points], [100 * s.mean_rel_regret for s in points]
        )
    axes.legend(loc="upper right", fontsize="small")


def _pad_limits(axes: Any, xs: Sequence[float], ys: Sequence[float]) -> None:
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    dx, dy = max(x1 - x0, 1.0), max(y1 - y0, 0.1)
    axes.set_xlim(x0 - 0.08 * dx, x1 + 0.22 * dx)
    axes.set_ylim(y0 - 0.08 * dy, y1 + 0.15 * dy)


def place_labels(
    axes: Any, renderer: Any, labels: Sequence[tuple[float, float, str, str]]
) -> list[Any]:
    """Annotate each ``(x, y, text, colour)`` point at the nearest free spot around it.

    Candidate spots lie on rings of growing radius around the point; the first whose box
    overlaps no placed label, no point marker and stays inside the axes wins. When none is
    free, the one with the least overlap is used. Returns the annotations.
    """
    figure = axes.figure
    figure.draw_without_rendering()  # final layout, so that data -> pixel is exact
    to_pixels = axes.transData.transform
    frame = axes.get_window_extent(renderer)
    markers: list[Box] = []
    for x, y, _, _ in labels:
        px, py = to_pixels((x, y))
        markers.append((px - 4, py - 4, px + 4, py + 4))
    placed: list[Box] = []
    legend = axes.get_legend()
    if legend is not None:  # labels keep clear of the legend too
        box = legend.get_window_extent(renderer)
        placed.append((box.x0, box.y0, box.x1, box.y1))
    annotations = []
    scale = figure.dpi / 72.0
    order = sorted(range(len(labels)), key=lambda i: (labels[i][0], labels[i][1]))
    for index in order:
        x, y, text, colour = labels[index]
        px, py = to_pixels((x, y))
        probe = axes.annotate(text, (x, y), fontsize=7)
        extent = probe.get_window_extent(renderer)
        width, height = extent.width, extent.height
        probe.remove()
        best: tuple[float, float, float, str, str] | None = None
        for radius in (6.0, 14.0, 24.0, 36.0, 50.0, 66.0, 84.0):
            for step in range(16):
                angle = 2 * math.pi * step / 16
                dx, dy = radius * math.cos(angle), radius * math.sin(angle)
                ha = "left" if dx > 1 else ("right" if dx < -1 else "center")
                va = "bottom" if dy > 1 else ("top" if dy < -1 else "center")
                left = px + dx - {"left": 0.0, "right": width, "center": width / 2}[ha]
                bottom = py + dy - {"bottom": 0.0, "top": height, "center": height / 2}[va]
                box = (left - 1, bottom - 1, left + width + 1, bottom + height + 1)
                others = [m for i, m in enumerate(markers) if i != index]
                overlap = sum(_overlap(box, other) for other in [*placed, *others])
                outside = _outside(box, (frame.x0, frame.y0, frame.x1, frame.y1))
                cost = overlap + 10 * outside
                if best is None or cost < best[0]:
                    best = (cost, dx, dy, ha, va)
                if cost == 0:
                    break
            if best is not None and best[0] == 0:
                break
        if best is None:  # pragma: no cover (the rings are never empty)
            continue
        _, dx, dy, ha, va = best
        left = px + dx - {"left": 0.0, "right": width, "center": width / 2}[ha]
        bottom = py + dy - {"bottom": 0.0, "top": height, "center": height / 2}[va]
        placed.append((left, bottom, left + width, bottom + height))
        far = math.hypot(dx, dy) > 10
        annotations.append(
            axes.annotate(
                text,
                (x, y),
                xytext=(dx / scale, dy / scale),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=7,
                color=colour,
                arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5} if far else None,
            )
        )
    return annotations


def _overlap(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0


def _outside(box: Box, frame: Box) -> float:
    width, height = box[2] - box[0], box[3] - box[1]
    return width * height - _overlap(box, frame)
