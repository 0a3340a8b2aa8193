"""The computation-flow graph of a program on one input (`rasp draw`, the REPL's `draw`): a
node per binding with its value at every position, an edge per read, and each selector drawn
as its attention grid on that input (the weights an aggregate uses: the selector under the
causal mask, or the softmax of the scores under @attention "softmax").

Nodes are laid out in columns by depth (the longest chain of reads from the input), left to
right, as RASP 0.1's `draw` and circuit pictures do; the picture is an SVG (`flow_svg`) or a
page holding it (`flow_page`)."""

from __future__ import annotations

import attrs
import numpy as np

from rasp_ir import nodes as ir
from rasp_ir import passes
from rasp_ir import types as T
from rasp_ir.viz.page import Page, compact, drawing, esc

MAX_POSITIONS = 64             # longer inputs are refused: the picture would be unreadable
COLOURS = {"input": "#e8eef7", "sop": "#f6f8fa", "grid": "#fff6e5", "vec": "#eef6ee",
           "output": "#fde8ec"}


@attrs.define
class Item:
    """One node of the picture."""
    key: str
    label: str                  # the binding's name, or what a selector is
    kind: str                   # "input", "sop", "vec", "grid"
    detail: str                 # its type, or the aggregate it feeds
    values: object              # (n,) values, (n, n) grid, or (labels, (n,) probabilities)
    reads: list = attrs.field(factory=list)
    depth: int = 0
    output: bool = False


def flow_items(program: ir.Program, tokens) -> tuple[list, list[Item]]:
    """(the validated input, one Item per binding the output needs, per inline selector and
    per input source read), in an order where every read comes first."""
    from rasp_ir.interpreter import Interpreter, Memo, evaluate, prepare_inputs
    seq = prepare_inputs(program, [list(tokens)], add_bos=True)[0]
    if len(seq) > MAX_POSITIONS:
        from rasp_ir.diagnostics import Diagnostic, RaspError
        raise RaspError([Diagnostic("D704", f"the input has {len(seq)} positions; a flow "
                                    f"graph draws at most {MAX_POSITIONS}")])
    interpreter = Interpreter(program)
    memo = Memo(keep=1_000_000)

    def value(node):
        return evaluate(program, [seq], node, interpreter=interpreter, memo=memo)[0]

    names = _needed(program)
    items: dict[str, Item] = {}
    n = len(seq)

    def source(node) -> str:
        if isinstance(node, ir.Indices):
            if "indices" not in items:
                items["indices"] = Item("indices", "indices", "input", "positions",
                                        list(range(n)))
            return "indices"
        key = "tokens" if node.view == "asis" else f"tokens_{node.view}"
        if key not in items:
            items[key] = Item(key, key, "input", "the input", list(np.asarray(value(node))))
        return key

    for b in program.bindings:
        if b.name not in names:
            continue
        reads: list[str] = []
        grids = 0
        for node, in_selector in _parts(b.value):
            if isinstance(node, (ir.Tokens, ir.Indices)) and not in_selector:
                reads.append(source(node))
            elif isinstance(node, ir.Ref) and node.name in names and not in_selector:
                reads.append(node.name)
            elif isinstance(node, (ir.Aggregate, ir.SelectorWidth)) and \
                    not isinstance(node.selector, ir.Ref):
                grids += 1
                key = f"{b.name}#select{grids}"
                grid_reads = []
                for sub in ir.walk(node.selector):
                    if isinstance(sub, (ir.Tokens, ir.Indices)):
                        grid_reads.append(source(sub))
                    elif isinstance(sub, ir.Ref) and sub.name in names:
                        grid_reads.append(sub.name)
                what = "aggregate" if isinstance(node, ir.Aggregate) else "selector_width"
                items[key] = Item(key, _selector_label(node.selector), "grid",
                                  f"selector of {what} in {b.name}",
                                  _weights(program, interpreter, node.selector,
                                           value(node.selector), isinstance(node, ir.Aggregate)),
                                  list(dict.fromkeys(grid_reads)))
                reads.append(key)
        kind, shown = _shown(program, interpreter, b.value, value(ir.Ref(b.name)))
        detail = _type_text(interpreter, b.value)
        items[b.name] = Item(b.name, b.name, kind, detail, shown, list(dict.fromkeys(reads)))
    out = program.output
    if isinstance(out, ir.Ref) and out.name in items:
        items[out.name].output = True
    ordered = list(items.values())
    for item in ordered:        # reads come first: depth is one more than the deepest read
        item.depth = 1 + max((items[r].depth for r in item.reads), default=-1)
    return seq, ordered


def _needed(program: ir.Program) -> set[str]:
    """The bindings the @output reads (all of the file's own when there is no @output)."""
    if program.output is None:
        return {b.name for b in program.bindings if b.origin is None}
    return passes.bindings_read(program, [program.output])


def _parts(node, in_selector: bool = False):
    """(node, whether it lies inside an inline selector of an aggregate, which is drawn as
    its own grid) for every node; a named selector (a Ref) is read directly."""
    yield node, in_selector
    for name, many in ir.child_fields(type(node)):
        value = getattr(node, name)
        inline = isinstance(node, (ir.Aggregate, ir.SelectorWidth)) and name == "selector" \
            and not isinstance(value, ir.Ref)
        for child in (value if many else (value,)):
            if child is not None:
                yield from _parts(child, in_selector or inline)


def _selector_label(node) -> str:
    from rasp_ir.printer import expr
    text = expr(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_text(interpreter, node) -> str:
    try:
        text = str(interpreter.type_of(node))
    except Exception:            # a type the printer cannot name: leave it out
        return ""
    return text if len(text) <= 30 else text[:27] + "…"


def _weights(program, interpreter, selector, raw, aggregate: bool) -> np.ndarray:
    """The grid a selector makes on the input: what its aggregate averages with (a softmax
    over the scores, or the selected keys each weighing 1/width), under the causal mask."""
    raw = np.asarray(raw)
    n = raw.shape[-1]
    mask = np.tril(np.ones((n, n), dtype=bool)) if program.causal else np.ones((n, n), bool)
    soft = isinstance(interpreter.type_of(selector), T.Score) or (
        aggregate and program.attention == "softmax")
    if soft:
        scores = raw.astype(float) * (program.hard_scale if raw.dtype == bool else 1.0)
        scores = np.where(mask, scores, -np.inf)
        scores = scores - scores.max(-1, keepdims=True)
        weights = np.exp(scores)
        return weights / weights.sum(-1, keepdims=True)
    return (raw.astype(bool) & mask).astype(float)


def _shown(program, interpreter, node, value):
    """(kind, what a node shows): values per position, a selector's grid, or for a vector
    the value of largest weight at each position with that weight."""
    value = np.asarray(value)
    try:
        t = interpreter.type_of(node)
    except Exception:
        t = None
    if isinstance(t, (T.Sel, T.Score)):
        return "grid", _weights(program, interpreter, node, value, False)
    if value.ndim == 2 and not isinstance(t, (T.Sel, T.Score)):
        basis = T.basis_of(t) if isinstance(t, T.Vec) else None
        if isinstance(t, T.Logits):
            basis = t.out
        labels = list(basis) if basis is not None and len(basis) == value.shape[1] \
            else list(range(value.shape[1]))
        best = value.argmax(-1)
        return "vec", ([labels[i] for i in best], [float(value[p, i])
                                                   for p, i in enumerate(best)])
    return "sop", list(value)


# ---------------------------------------------------------------- drawing

CELL = 0.36          # inches per position in a value row
HEAD = 0.3           # the node's title line
GAP_X, GAP_Y = 0.75, 0.28
SAG = 0.3            # how far below its ends an arrow over several columns bows


def _box_size(item: Item, n: int) -> tuple[float, float]:
    if item.kind == "grid":
        cell = min(CELL, 3.2 / n) if n > 9 else CELL
        side = max(n * cell, 1.0)
        return max(side + 0.5, _text_width(item.label, 0.062) + 0.2), HEAD + side + 0.45
    return max(n * CELL + 0.2, _text_width(item.label + "  " + item.detail, 0.062) + 0.2), \
        HEAD + CELL + 0.22


def _text_width(text: str, per_char: float) -> float:
    return min(5.5, len(text) * per_char)


def _layout(items: list[Item], n: int):
    columns: dict[int, list[Item]] = {}
    for item in items:
        columns.setdefault(item.depth, []).append(item)
    sizes = {item.key: _box_size(item, n) for item in items}
    x, places = 0.2, {}
    heights = []
    for depth in sorted(columns):
        col = columns[depth]
        width = max(sizes[i.key][0] for i in col)
        y = 0.2
        for item in col:
            w, h = sizes[item.key]
            places[item.key] = (x, y, w, h)
            y += h + GAP_Y
        heights.append(y)
        x += width + GAP_X
    return places, x - GAP_X + 0.2, max(heights) + 0.05 + SAG


def flow_figure(items: list[Item], seq: list, title: str | None = None):
    """The graph as a matplotlib figure, drawn in inches (y down)."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
    n = len(seq)
    places, width, height = _layout(items, n)
    top = 0.45 if title else 0.0
    with drawing() as Figure:
        fig = Figure(figsize=(width, height + top))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, width)
        ax.set_ylim(height + top, 0)
        ax.axis("off")
        if title:
            ax.text(0.2, 0.28, title, fontsize=11, fontweight="bold", va="center")
        for item in items:
            x, y, w, h = places[item.key]
            y += top
            colour = COLOURS["output"] if item.output else COLOURS[item.kind]
            ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                        facecolor=colour, edgecolor="#8a96a3", linewidth=0.8))
            ax.text(x + 0.1, y + HEAD / 2 + 0.04, item.label, fontsize=8.5, fontweight="bold",
                    va="center", family="monospace")
            if item.kind != "grid" and item.detail:
                ax.text(x + w - 0.08, y + HEAD / 2 + 0.04, item.detail, fontsize=6.5,
                        va="center", ha="right", color="#56606b")
            if item.kind == "grid":
                _grid(ax, Rectangle, item, x, y, w, n)
            else:
                _row(ax, Rectangle, item, x, y)
        depth = {item.key: item.depth for item in items}
        for item in items:
            x, y, w, h = places[item.key]
            for r in item.reads:
                rx, ry, rw, rh = places[r]
                start = (rx + rw, ry + top + HEAD / 2 + 0.1)
                end = (x, y + top + HEAD / 2 + 0.1)
                # an arrow over several columns bows (under the boxes it passes: they are
                # drawn over the arrows)
                long = item.depth - depth[r] > 1
                span = max(1e-6, float(np.hypot(end[0] - start[0], end[1] - start[1])))
                # sagging SAG inches at most (a quadratic arc sags rad * span / 2)
                bend = 2 * SAG / span if long else (
                    0.0 if abs(start[1] - end[1]) < 0.05 else 0.12)
                ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9,
                                             color="#56606b", linewidth=0.8, zorder=0.5,
                                             connectionstyle=f"arc3,rad={bend}"))
        return fig


def _row(ax, Rectangle, item: Item, x: float, y: float) -> None:
    """The values at each position: one cell each, shaded for a vector by its weight."""
    y0 = y + HEAD + 0.08
    if item.kind == "vec":
        labels, weights = item.values
    else:
        labels, weights = item.values, None
    for p, v in enumerate(labels):
        shade = "white"
        if weights is not None:
            level = max(0.0, min(1.0, weights[p]))
            shade = (1 - 0.55 * level, 1 - 0.3 * level, 1 - 0.55 * level)
        ax.add_patch(Rectangle((x + 0.1 + p * CELL, y0), CELL, CELL, facecolor=shade,
                               edgecolor="#c3cad2", linewidth=0.5))
        ax.text(x + 0.1 + (p + 0.5) * CELL, y0 + CELL / 2, _cell(v), fontsize=_font(v),
                ha="center", va="center", family="monospace")


def _grid(ax, Rectangle, item: Item, x: float, y: float, w: float, n: int) -> None:
    """A selector's grid: queries down, keys across, darker where a query attends more."""
    cell = min(CELL, 3.2 / n) if n > 9 else CELL
    side = n * cell
    x0 = x + (w - side) / 2
    y0 = y + HEAD + 0.18
    ax.imshow(item.values, cmap="Oranges", vmin=0, vmax=max(1e-9, float(np.max(item.values))),
              extent=(x0, x0 + side, y0 + side, y0), interpolation="nearest", zorder=2)
    ax.add_patch(Rectangle((x0, y0), side, side, fill=False, edgecolor="#8a96a3",
                           linewidth=0.5, zorder=3))
    ax.text(x0 - 0.04, y0 - 0.02, "q↓ k→", fontsize=5.5, ha="right", va="bottom",
            color="#56606b")
    ax.text(x + w / 2, y + HEAD + side + 0.3, item.detail, fontsize=6, ha="center",
            va="center", color="#56606b")


def _cell(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "T" if v else "F"
    if isinstance(v, (float, np.floating)):
        return compact(float(v))
    if v is None:
        return "-"
    text = str(v)
    return text if len(text) <= 5 else text[:4] + "…"


def _font(v) -> float:
    return 7.5 if len(_cell(v)) <= 3 else 6.0


def flow_svg(program: ir.Program, tokens, title: str | None = None) -> str:
    """The flow graph of `program` on `tokens` as a standalone SVG document."""
    import io
    seq, items = flow_items(program, tokens)
    fig = flow_figure(items, seq, title)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def flow_dot(program: ir.Program, tokens, title: str | None = None) -> str:
    """The flow graph as Graphviz DOT text (no matplotlib needed; `dot -Tsvg` lays it out):
    a record per binding with its values, a selector's rows as `q: keys it attends`."""
    seq, items = flow_items(program, tokens)

    def quoted(*lines) -> str:
        """A DOT string of `lines` (escaped, then joined by DOT's own \\n)."""
        escaped = [str(t).replace("\\", "\\\\").replace('"', '\\"') for t in lines]
        return '"' + "\\n".join(escaped) + '"'

    lines = ["digraph flow {", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fontname="monospace", fontsize=10];']
    if title:
        lines.append(f"  label={quoted(title)}; labelloc=t;")
    for item in items:
        if item.kind == "grid":
            text = [item.label] + [f"{q}: " + " ".join(str(k) for k in np.flatnonzero(row > 1e-9))
                                   for q, row in enumerate(np.asarray(item.values))]
        else:
            values = item.values[0] if item.kind == "vec" else item.values
            text = [item.label, " ".join(_cell(v) for v in values)]
        colour = COLOURS["output"] if item.output else COLOURS[item.kind]
        lines.append(f"  {quoted(item.key)} [label={quoted(*text)}, fillcolor={quoted(colour)}];")
    for item in items:
        for r in item.reads:
            lines.append(f"  {quoted(r)} -> {quoted(item.key)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def flow_page(program: ir.Program, tokens, title: str) -> str:
    """The flow graph in a self-contained page, with the input and a legend."""
    seq, items = flow_items(program, tokens)
    page = Page(title)
    page.para("input: " + " ".join(str(t) for t in seq), "note")
    fig = flow_figure(items, seq)
    page.figure(fig, "flow", "Each box is a binding with its value at every position (a "
                "vector shows its value of largest weight, shaded by that weight); grids are "
                "selectors on this input, queries down and keys across, shaded by the weight "
                "each query gives each key; arrows are reads. The output is pink.",
                cls="plot wide flow")
    rows = []
    label = {item.key: item.label for item in items}
    for item in items:
        if item.kind == "grid":
            continue
        values = item.values[0] if item.kind == "vec" else item.values
        reads = ", ".join(label[r] for r in item.reads)
        rows.append(f"<tr><th>{esc(item.label)}</th><td>{esc(item.detail)}</td><td><code>"
                    f"{esc(' '.join(_cell(v) for v in values))}</code></td>"
                    f"<td><code>{esc(reads)}</code></td></tr>")
    page.add('<table class="data"><thead><tr><th>binding</th><th>type</th><th>values</th>'
             f'<th>reads</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return page.html()


