"""A labelled heatmap of one table: rows and columns named by their labels (tokens, positions,
basis values), a diverging colour scale centred at 0 for signed values, each cell's value
printed in small tables and readable on hover in every table (page.py's script)."""

from __future__ import annotations

import numpy as np

from rasp_ir.viz.page import Page, compact

CELL_TEXT = 16             # values are printed in the cells of tables at most this wide/tall
TICKS = 40                 # at most this many labels per axis (every k-th beyond)
HOVER_BUDGET = 1_500_000   # bytes of hover data per page; larger tables beyond it only draw
MAX_SIDE = 300             # rows or columns drawn at most (a larger table is sampled)


def label(value) -> str:
    return value if isinstance(value, str) else repr(value)


def heatmap(page: Page, values, rows, cols, title: str, row_name: str, col_name: str,
            anchor: str | None = None, caption: str | None = None, size=None,
            scale: float | None = None) -> str:
    """Draw `values` (rows × cols, or a vector over `rows` drawn as one row) into `page`;
    returns the figure's id. `scale` fixes the colour range (±scale) so that two heatmaps
    can be compared cell by cell."""
    from rasp_ir.viz.page import drawing
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:            # a vector: one row, its labels along the columns
        values, cols, rows, col_name, row_name = values[None, :], rows, [""], row_name, ""
    rows, cols = [label(r) for r in rows], [label(c) for c in cols]
    if max(values.shape) > MAX_SIDE:
        # every k-th row and column: the picture stays a few hundred kilobytes
        k_r, k_c = -(-values.shape[0] // MAX_SIDE), -(-values.shape[1] // MAX_SIDE)
        note = (f"({_every(k_r, 'row')} and {_every(k_c, 'column')} of "
                f"{values.shape[0]} × {values.shape[1]} drawn)")
        values, rows, cols = values[::k_r, ::k_c], rows[::k_r], cols[::k_c]
        caption = f"{caption} {note}" if caption else note
    n_rows, n_cols = values.shape
    finite = values[np.isfinite(values)]
    signed = finite.size and finite.min() < 0
    top = scale if scale is not None else (float(np.abs(finite).max()) if finite.size else 1.0)
    top = top or 1.0
    with drawing() as Figure:
        fig, ax, bar_ax, pads = _axes(Figure, n_rows, n_cols, rows, cols, size)
        if signed or scale is not None:
            image = ax.imshow(values, cmap="RdBu_r", vmin=-top, vmax=top, aspect="auto",
                              interpolation="nearest")
        else:
            image = ax.imshow(values, cmap="Blues", vmin=0, vmax=top, aspect="auto",
                              interpolation="nearest")
        _ticks(ax, rows, cols)
        ax.set_xlabel(col_name, labelpad=pads[1])
        ax.set_ylabel(row_name, labelpad=pads[0])
        ax.set_title(title if len(title) <= 70 else title[:67] + "...", loc="left")
        ax.spines[:].set_visible(False)
        if n_rows <= CELL_TEXT and n_cols <= CELL_TEXT:
            for i in range(n_rows):
                for j in range(n_cols):
                    v = values[i, j]
                    dark = abs(v) > 0.55 * top
                    text = compact(v)
                    ax.text(j, i, text, ha="center", va="center",
                            fontsize=7.5 if len(text) <= 5 else 6,
                            color="white" if dark else "#1d232a")
        fig.colorbar(image, cax=bar_ax)
        bar_ax.tick_params(labelsize=7, length=2)
        cells = None
        if page.hover_bytes < HOVER_BUDGET:
            cells = {"rows": rows, "cols": cols, "rowName": row_name or "row",
                     "colName": col_name or "col",
                     "values": [[None if not np.isfinite(v) else float(f"{v:.4g}") for v in r]
                                for r in values.tolist()]}
        else:
            caption = (caption + " " if caption else "") + "(values not carried for hovering: " \
                "this page's budget for them is spent)"
        return page.figure(fig, anchor, caption, cls="heatmap", cells=cells,
                           box=ax if cells else None)


def _axes(Figure, n_rows: int, n_cols: int, rows: list, cols: list, size=None):
    """A figure laid out by hand (inches), not by matplotlib's layout engines, which draw
    every figure twice: room for the row labels on the left, the column labels below, the
    title above, the colour bar on the right."""
    if size is not None:
        cell_w, cell_h = size[0] / max(n_cols, 1), size[1] / max(n_rows, 1)
    else:
        small = n_rows <= CELL_TEXT and n_cols <= CELL_TEXT
        cell_w, cell_h = (0.4, 0.4) if small else (_cell(n_cols), _cell(n_rows))
    grid_w = min(7.5, max(1.2, n_cols * cell_w))
    grid_h = min(7.0, max(0.35, n_rows * cell_h))
    shown_rows, shown_cols = rows[:TICKS], cols[:TICKS]
    left = 0.5 + min(1.8, 0.075 * max((len(r) for r in shown_rows), default=1))
    longest = max((len(c) for c in shown_cols), default=1)
    bottom = 0.45 + (min(1.6, 0.085 * longest) if longest > 3 else 0.2)
    top, right, bar = 0.32, 0.45, 0.12
    width = max(3.0, left + grid_w + 0.12 + bar + right)
    height = bottom + grid_h + top
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, grid_w / width, grid_h / height))
    bar_ax = fig.add_axes(((left + grid_w + 0.12) / width, bottom / height, bar / width,
                           grid_h / height))
    # the axis titles sit beyond the labels (points: the margins less the titles' own room)
    return fig, ax, bar_ax, ((left - 0.4) * 72, (bottom - 0.4) * 72)


def _every(k: int, what: str) -> str:
    return f"every {what}" if k == 1 else f"one {what} in {k}"


def _cell(n: int) -> float:
    """Inches per cell along an axis of n cells: readable labels for a few, at most about
    six inches for many."""
    return 0.4 if n <= CELL_TEXT else max(0.04, min(0.3, 6.0 / n))


def _ticks(ax, rows: list, cols: list) -> None:
    """Row and column labels as plain text beside the cells: matplotlib's ticks would make
    five artists per label and cost more than the rest of the figure."""
    from matplotlib.transforms import blended_transform_factory, offset_copy
    ax.set_xticks([])
    ax.set_yticks([])
    # 3 points off the cells, whatever the figure's size
    below = offset_copy(blended_transform_factory(ax.transData, ax.transAxes), ax.figure,
                        y=-3, units="points")
    left = offset_copy(blended_transform_factory(ax.transAxes, ax.transData), ax.figure,
                       x=-3, units="points")
    for labels, rotate in ((cols, True), (rows, False)):
        # a label every 0.22 inch at most (about a label's height)
        inches = len(labels) * _cell(len(labels))
        most = max(2, min(TICKS, int(inches / 0.22)))
        step = max(1, -(-len(labels) // most))
        at = list(range(0, len(labels), step))
        slanted = rotate and max((len(labels[i]) for i in at), default=0) > 3
        for i in at:
            if rotate:
                ax.text(i, 0, labels[i], transform=below, fontsize=8, va="top",
                        ha="right" if slanted else "center", rotation=60 if slanted else 0,
                        rotation_mode="anchor")
            else:
                ax.text(0, i, labels[i], transform=left, fontsize=8, va="center",
                        ha="right")

