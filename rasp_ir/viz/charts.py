"""Charts of an extraction's numbers: match and task accuracy per length bucket, and the
pruning frontier (kept edges against worst-bucket match, one point per run)."""

from __future__ import annotations

from rasp_ir.viz.page import Page, drawing

MATCH, TASK, CHOSEN, RUN, LINE = "#2f6db5", "#8fb98b", "#d1495b", "#7b8590", "#1d232a"


def buckets_chart(page: Page, buckets: dict, threshold: float | None, title: str,
                  anchor: str | None = None, caption: str | None = None) -> str:
    """Grouped bars: per bucket the match (and task accuracy where there is one), the
    threshold as a dashed line."""
    names = list(buckets)
    has_task = any("task" in b for b in buckets.values())
    with drawing() as Figure:
        fig, ax = _figure(Figure, min(9.0, max(4.2, 2.6 + 0.9 * len(names))), 2.7)
        width = 0.38 if has_task else 0.6
        xs = range(len(names))
        match = [buckets[n]["match"] for n in names]
        offset = -width / 2 if has_task else 0
        bars = ax.bar([x + offset for x in xs], match, width, color=MATCH, label="match")
        ax.bar_label(bars, [f"{v:.3f}" for v in match], fontsize=7.5, padding=1)
        if has_task:
            task = [buckets[n].get("task", 0.0) for n in names]
            bars = ax.bar([x + width / 2 for x in xs], task, width, color=TASK,
                          label="task accuracy")
            ax.bar_label(bars, [f"{v:.3f}" for v in task], fontsize=7.5, padding=1)
        if threshold is not None:
            ax.axhline(threshold, color=CHOSEN, linestyle="--", linewidth=1,
                       label=f"threshold {threshold:g}")
        ax.set_xticks(list(xs), names)
        ax.set_xlabel("length bucket")
        ax.set_ylim(0, 1.32)
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_title(title, loc="left")
        ax.legend(loc="upper right", fontsize=7.5, frameon=False, ncols=3)
        return page.figure(fig, anchor, caption)


def frontier_chart(page: Page, stage: str, runs: list, frontier: list, chosen_lam,
                   threshold: float | None, anchor: str | None = None) -> str:
    """One pruning stage: every run's kept edges against its worst bucket's match, the
    frontier (the runs no other beats on both), the chosen run circled, the threshold."""
    points = []
    for run in runs:
        for st in run["stages"]:
            if st["stage"] == stage:
                points.append((st["edges"], min(st["match"].values()), run["lam"]))
    with drawing() as Figure:
        fig, ax = _figure(Figure, 3.7, 3.0)
        if points:
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=26, color=RUN,
                       zorder=3, label="run")
            for e, m, lam in points:
                ax.annotate(f"λ={lam:.2g}", (e, m), textcoords="offset points", xytext=(4, -9),
                            fontsize=7, color=RUN)
        line = sorted((p["edges"], p["match"]) for p in frontier)
        if line:
            ax.step([p[0] for p in line], [p[1] for p in line], where="post", color=MATCH,
                    linewidth=1.2, label="frontier")
        chosen = [p for p in points if chosen_lam is not None and abs(p[2] - chosen_lam) < 1e-12]
        if chosen:
            ax.scatter([chosen[0][0]], [chosen[0][1]], s=140, facecolors="none",
                       edgecolors=CHOSEN, linewidths=2, zorder=4, label="chosen run")
        if threshold is not None:
            ax.axhline(threshold, color=CHOSEN, linestyle="--", linewidth=1,
                       label=f"threshold {threshold:g}")
        edges = [p[0] for p in points] or [0]
        if max(edges) > 50 and min(edges) >= 0:
            ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("edges kept")
        ax.set_ylabel("worst-bucket match")
        ax.set_ylim(min([0.0] + [p[1] - 0.05 for p in points]), 1.06)
        ax.set_title(f"stage: {stage}", loc="left")
        ax.margins(x=0.18)
        return page.figure(fig, anchor)


def stages_chart(page: Page, stages: list, threshold: float | None,
                 anchor: str | None = None) -> str:
    """A compiled model's greedy pruning: edges left after each stage, and its match."""
    with drawing() as Figure:
        fig, ax = _figure(Figure, 4.4, 2.8)
        names = [s["stage"] for s in stages]
        bars = ax.bar(names, [s["edges"] for s in stages], color=MATCH, width=0.55)
        ax.bar_label(bars, [f"{s['edges']} edges\nmatch {s['match']:.3f}" for s in stages],
                     fontsize=7.5, padding=2)
        ax.set_ylabel("edges kept")
        ax.set_ylim(0, max([s["edges"] for s in stages] + [1]) * 1.35)
        ax.set_title("greedy pruning" + (f" (match kept ≥ {threshold:g})"
                                         if threshold is not None else ""), loc="left")
        return page.figure(fig, anchor)


def _figure(Figure, width: float, height: float, left: float = 0.62, bottom: float = 0.5,
            top: float = 0.32, right: float = 0.15):
    """A figure with one axes and margins in inches (no layout engine: it would draw the
    figure twice)."""
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, 1 - (left + right) / width,
                       1 - (bottom + top) / height))
    return fig, ax
