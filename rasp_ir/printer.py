"""Pretty-printer: IR to canonical .rasp text, the parser's inverse (`parse(pretty(p)) == p`).

Canonical form: directives first, then `load`s, one binding per line, keyword arguments for
select/aggregate/project, Python precedence with only the parentheses it needs.
"""

from __future__ import annotations

import contextvars
import math

import numpy as np

from . import nodes as ir
from . import ops

# binding strength, loosest first (Python's table)
LAMBDA, COND, OR, AND, NOT, COMPARE, ADD, MUL, UNARY, POWER, ATOM = range(11)
# under @compat "rasp0.1" the parser uses RASP 0.1's operator table: parenthesise every operator
_FULL_PARENS = contextvars.ContextVar("full_parens", default=False)
_BINARY_LEVEL = {"or": OR, "and": AND, "+": ADD, "-": ADD, "*": MUL, "/": MUL, "%": MUL,
                 "^": POWER, **{op: COMPARE for op in ops.COMPARISONS}}


def pretty(program: ir.Program) -> str:
    """The canonical text of a whole program (library bindings print as their `load`)."""
    token = _FULL_PARENS.set(program.compat is not None)
    try:
        return _program(program)
    finally:
        _FULL_PARENS.reset(token)


def _program(program: ir.Program) -> str:
    lines = []
    if program.compat:
        lines.append(f"@compat {literal(program.compat)};")
    if program.vocab is not None:
        name = f"{program.vocab_name} = " if program.vocab_name else ""
        lines.append(f"@vocab {name}{{{', '.join(literal(v) for v in program.vocab)}}};")
    if program.maxlen is not None:
        lines.append(f"@maxlen {program.maxlen};")
    if program.causal:
        lines.append("@causal;")
    if program.bos is not None:
        lines.append(f"@bos {literal(program.bos)};")
    if program.attention != "hard":
        lines.append(f"@attention {literal(program.attention)};")
    if program.hard_scale != 1e4:
        lines.append(f"@hard_scale {literal(program.hard_scale)};")
    if lines:
        lines.append("")
    for name in program.loads:
        lines.append(f"load {literal(name)};")
    if program.loads:
        lines.append("")
    for b in program.bindings:
        if b.origin is None:
            lines.extend(table_comments(b.value))
            lines.append(f"{b.name} = {expr(b.value)};")
    if program.output is not None or program.expects:
        lines.append("")
    if program.output is not None:
        lines.append(f"@output {expr(program.output)};")
    for e in program.expects:
        subject = expr(e.subject, ATOM)
        lines.append(f"@expect {subject}({sequence(e.input)}) == {sequence(e.expected)};")
    return "\n".join(lines).strip("\n") + "\n"


def sequence(values: tuple) -> str:
    """An input or expected value: a string when every item is one character, else a list."""
    if values and all(isinstance(v, str) and len(v) == 1 for v in values):
        return literal("".join(values))
    return literal(list(values))


def literal(value) -> str:
    """A constant in source syntax (strings with double quotes and Python escapes)."""
    if isinstance(value, str):
        out = ['"']
        for ch in value:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\t":
                out.append("\\t")
            elif ch.isprintable():
                out.append(ch)
            else:
                out.append(f"\\U{ord(ch):08x}")
        return "".join(out) + '"'
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        if math.isinf(value):      # float("1e999") is how the lexer reads infinity
            return "1e999" if value > 0 else "-1e999"
        if math.isnan(value):      # folded back to nan when the program is read again
            return "(1e999 - 1e999)"
        text = repr(value)
        return text
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"{value!r} has no literal")


def _level(node) -> int:
    if isinstance(node, ir.BinaryOp):
        return _BINARY_LEVEL[node.op]
    if isinstance(node, ir.UnaryOp):
        return NOT if node.op == "not" else UNARY
    if isinstance(node, ir.Const):
        v = node.value
        if isinstance(v, (int, float)) and not isinstance(v, bool) and (v < 0 or repr(v)[0] == "-"):
            return UNARY
        return ATOM
    if isinstance(node, ir.Cond):
        return COND
    if isinstance(node, ir.In):
        return COMPARE
    if isinstance(node, (ir.SelectAnd,)):
        return AND
    if isinstance(node, ir.SelectOr):
        return OR
    if isinstance(node, ir.SelectNot):
        return NOT
    if isinstance(node, (ir.ScoreSum, ir.LogitsSum)):
        return ADD
    if isinstance(node, ir.ScoreScale):
        return MUL
    return ATOM


def expr(node, context: int = LAMBDA) -> str:
    """An expression, parenthesised if it binds looser than `context` requires."""
    text = _render(node)
    level = _level(node)
    if _FULL_PARENS.get() and level < ATOM and context > LAMBDA:
        return f"({text})"
    return f"({text})" if level < context else text


def _render(node) -> str:
    if isinstance(node, ir.Tokens):
        return "tokens" if node.view == "asis" else f"tokens_{node.view}"
    if isinstance(node, ir.Indices):
        return "indices"
    if isinstance(node, ir.Const):
        return literal(node.value)
    if isinstance(node, (ir.Ref, ir.Param)):
        return node.name
    if isinstance(node, ir.UnaryOp):
        if node.op == "not":
            return f"not {expr(node.operand, NOT)}"
        return f"{node.op}{expr(node.operand, UNARY)}"
    if isinstance(node, ir.BinaryOp):
        level = _BINARY_LEVEL[node.op]
        if node.op == "^":      # right-associative; its right side is a unary-level factor
            return f"{expr(node.left, ATOM)} ^ {expr(node.right, UNARY)}"
        right_level = level + 1
        left_level = level + 1 if level == COMPARE else level
        return f"{expr(node.left, left_level)} {node.op} {expr(node.right, right_level)}"
    if isinstance(node, ir.Cond):
        return (f"{expr(node.then, OR)} if {expr(node.cond, OR)} "
                f"else {expr(node.otherwise, COND)}")
    if isinstance(node, ir.In):
        word = "not in" if node.negate else "in"
        return f"{expr(node.operand, COMPARE + 1)} {word} {literal(list(node.options))}"
    if isinstance(node, ir.Lookup) and node.name is not None:
        return f"{node.name}({expr(node.operand)})"
    if isinstance(node, ir.Lookup):
        table = "{" + ", ".join(f"{literal(k)}: {literal(v)}"
                                for k, v in zip(node.keys, node.values)) + "}"
        return f"{table}[{expr(node.operand)}]"
    if isinstance(node, ir.Call):
        return f"{node.function}({', '.join(expr(a) for a in node.args)})"
    if isinstance(node, ir.Select):
        parts = [f"k={expr(node.keys)}"]
        if node.queries is not None:
            parts.append(f"q={expr(node.queries)}")
        parts.append(f"op={predicate(node.predicate)}")
        return f"select({', '.join(parts)})"
    if isinstance(node, ir.SelectAnd):
        return f"{expr(node.left, AND)} and {expr(node.right, AND + 1)}"
    if isinstance(node, ir.SelectOr):
        return f"{expr(node.left, OR)} or {expr(node.right, OR + 1)}"
    if isinstance(node, ir.SelectNot):
        return f"not {expr(node.operand, NOT)}"
    if isinstance(node, (ir.ScoreSum, ir.LogitsSum)):
        return " + ".join(expr(t, ADD + 1) for t in node.terms)
    if isinstance(node, ir.ScoreScale):
        return f"{literal(node.factor)} * {expr(node.operand, UNARY)}"
    if isinstance(node, ir.Aggregate):
        text = f"aggregate(s={expr(node.selector)}, v={expr(node.values)}"
        if node.default is not None:
            text += f", default={literal(node.default)}"
        return text + ")"
    if isinstance(node, ir.SelectorWidth):
        return f"selector_width({expr(node.selector)})"
    if isinstance(node, ir.Primitive):
        args = [expr(a) if not isinstance(a, ir.Matrix) else matrix(a) for a in node.args]
        args += [literal(p) for p in node.params]
        return f"{node.name}({', '.join(args)})"
    if isinstance(node, ir.Mlp):
        inputs = ", ".join(expr(i) for i in node.inputs)
        weights = ", ".join(f"{n}={matrix(getattr(node, n))}"
                            for n in ("W_in", "b_in", "W_out", "b_out"))
        if node.activation != "gelu":
            weights += f", activation={literal(node.activation)}"
        return f"mlp({inputs}, {weights})"
    if isinstance(node, ir.Project):
        inp = f"inp={expr(node.operand)}, " if node.operand is not None else ""
        return f"project({inp}op={predicate(node.predicate)})"
    if isinstance(node, ir.Predict):
        return f"{node.function}({expr(node.logits)})"
    if isinstance(node, ir.Matrix):
        return matrix(node)
    raise TypeError(f"cannot print {type(node).__name__}")


def predicate(node) -> str:
    if isinstance(node, ir.Compare):
        return f"(k {node.op} q)"
    if isinstance(node, ir.Lambda):
        return expr(node.body, ATOM)
    return matrix(node)


def matrix(node: ir.Matrix) -> str:
    """A table: `table("name")` when named (its numbers live in the side-file), otherwise
    inline with labelled rows (docs/language.md, Tables)."""
    if node.name is not None:
        return f"table({literal(node.name)})"
    if not _labels_are_keys(node.rows):
        # rows such as 1 and True are one dict key: only the positional form keeps both
        cols = f", cols={literal(list(node.cols))}" if node.cols is not None else ""
        values = [list(r) if isinstance(r, tuple) else r for r in node.values]
        return (f"matrix(rows={literal(list(node.rows))}{cols}, "
                f"values=[{', '.join(_row_text(v) for v in values)}])")
    if node.cols is None:
        return _vector(node)
    return _grid(node)


# the width the labelled forms wrap at, and their indent (a table is a statement's argument,
# so its lines sit one level in, whatever the nesting)
WIDTH = 100
_INDENT = "    "


def number(value: float) -> str:
    """A table entry: an integer when it is integral, up to 2**53 (beyond it floats skip
    integers, and `1e+16` reads better than its seventeen digits), else the shortest repr
    that reads back to the same float."""
    if math.isfinite(value) and value == int(value) and abs(value) <= 2 ** 53:
        return str(int(value))
    return literal(float(value))


def _row_text(row) -> str:
    if isinstance(row, list):
        return "[" + ", ".join(number(v) for v in row) + "]"
    return number(row)


def _labels_are_keys(labels) -> bool:
    """Whether the labels survive as the keys of a dict literal: no two equal as keys (1, 1.0
    and True are one key), and no NaN (a float key the parser would not find again)."""
    if any(isinstance(x, float) and math.isnan(x) for x in labels):
        return False
    return len(dict.fromkeys(labels)) == len(labels)


def _vector(node: ir.Matrix) -> str:
    """`matrix(rows={label: value, …})` on one line, or one aligned entry after another over
    several lines when it does not fit."""
    entries = [f"{literal(r)}: {number(v)}" for r, v in zip(node.rows, node.values)]
    one_line = f"matrix(rows={{{', '.join(entries)}}})"
    if len(one_line) <= WIDTH - 20:
        return one_line
    cell = max(len(e) for e in entries) + 1      # the comma
    per_line = max(1, (WIDTH - len(_INDENT)) // (cell + 1))
    lines = []
    for start in range(0, len(entries), per_line):
        chunk = [(e + ",").ljust(cell) for e in entries[start:start + per_line]]
        lines.append((_INDENT + " ".join(chunk)).rstrip())
    return "matrix(rows={\n" + "\n".join(lines) + "\n})"


def _grid(node: ir.Matrix) -> str:
    """`matrix(cols=[…], rows={row label: [values], …})` as an aligned grid: one line per row,
    each column right-aligned under a comment naming its label; a row too wide for a line
    continues on the next ones, aligned, and then no header is written."""
    col_labels = [literal(c) for c in node.cols]
    cells = [[number(v) for v in row] for row in node.values]
    widths = [max([len(c)] + [len(row[j]) for row in cells]) for j, c in enumerate(col_labels)]
    row_labels = [literal(r) + ":" for r in node.rows]
    label_width = max((len(x) for x in row_labels), default=0)
    start = len(_INDENT) + label_width + 2        # where the first value begins, after " ["
    # split the columns into runs that fit a line (every row breaks at the same columns)
    runs, run, used = [], [], start
    for j, w in enumerate(widths):
        if run and used + w + 2 > WIDTH:
            runs.append(run)
            run, used = [], start
        run.append(j)
        used += w + 2
    if run:
        runs.append(run)
    cols = literal(list(node.cols))
    if len(cols) > WIDTH - 40:
        cols = "[\n" + _wrap([c + "," for c in col_labels], _INDENT * 2) + "\n" + _INDENT + "]"
    lines = []
    if len(runs) == 1 and node.rows and node.cols:
        header = "  ".join(c.rjust(w) for c, w in zip(col_labels, widths))
        lines.append((_INDENT + "#").ljust(start) + header)
    for label, row in zip(row_labels, cells):
        parts = []
        for k, r in enumerate(runs):
            text = ", ".join(row[j].rjust(widths[j]) for j in r)
            lead = _INDENT + label.ljust(label_width) + " [" if k == 0 else " " * start
            parts.append(lead + text)
        lines.append(",\n".join(parts) + "],")
    return f"matrix(cols={cols}, rows={{\n" + "\n".join(lines) + "\n})"


def _wrap(items: list[str], indent: str) -> str:
    """Items separated by spaces, as many to a line as fit in WIDTH."""
    lines, line = [], indent
    for item in items:
        if line != indent and len(line) + 1 + len(item) > WIDTH:
            lines.append(line)
            line = indent
        line += ("" if line == indent else " ") + item
    lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------- comments on side-file tables

def table_comments(node) -> list[str]:
    """One `# "name": …` line for each side-file table a statement reads: its shape,
    what its rows and columns range over, and its entries of largest magnitude (the reader
    cannot see its numbers on the page). The parser drops comments, so `parse(pretty(p)) == p`
    holds."""
    seen, lines = set(), []
    for table, rows, cols in _table_roles(node):
        if table.name is None or table.name in seen:
            continue
        seen.add(table.name)
        lines.append(describe_table(table, rows, cols))
    return lines


def _table_roles(node):
    """(matrix, what its rows range over, what its columns range over) for every matrix of a
    statement, in the order the statement prints them."""
    if isinstance(node, ir.Matrix):
        yield node, "rows", "cols"
        return
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ir.Select) and isinstance(n.predicate, ir.Matrix):
            if n.queries is None:       # a key-only score: a vector over the keys
                yield n.predicate, _short(n.keys, "keys"), None
            else:
                yield n.predicate, _short(n.queries, "queries"), _short(n.keys, "keys")
        elif isinstance(n, ir.Project) and isinstance(n.predicate, ir.Matrix):
            if n.operand is None:       # a bias over the outputs
                yield n.predicate, "outputs", None
            else:
                yield n.predicate, _short(n.operand, "inputs"), "outputs"
        elif isinstance(n, ir.Primitive):
            for a in n.args:
                if isinstance(a, ir.Matrix):
                    yield a, _short(n.args[0], "inputs"), "outputs"
        elif isinstance(n, ir.Mlp):
            yield n.W_in, "inputs", "hidden units"
            yield n.b_in, "hidden units", None
            yield n.W_out, "hidden units", "outputs"
            yield n.b_out, "outputs", None
        stack.extend(reversed([c for c in n.children() if not isinstance(c, ir.Matrix)]))


def _short(node, fallback: str) -> str:
    """A side of a table as the reader sees it: the expression when it is short."""
    text = expr(node)
    return text if len(text) <= 20 and "\n" not in text else fallback
def named_tables(program: ir.Program) -> dict[str, ir.Matrix]:
    """The named matrices of a program: what its side-file must hold."""
    out = {}
    for b in program.bindings:
        for n in ir.walk(b.value):
            if isinstance(n, ir.Matrix) and n.name is not None:
                out[n.name] = n
    return out


def describe_table(table: ir.Matrix, rows: str = "rows", cols: str | None = "cols") -> str:
    """`# "name": R × C, rows × cols; largest: (row, col) value, …` in at most WIDTH
    characters: the three entries of largest magnitude, fewer where they do not fit, and
    labels cut short only where not even one whole entry fits."""
    values = np.asarray(table.values, dtype=float)
    if table.cols is None:
        shape, over = f"{len(table.rows)}", rows
    else:
        shape, over = f"{len(table.rows)} × {len(table.cols)}", f"{rows} × {cols}"
    # terse, so that three entries fit a line beside a long name: the statement below shows
    # `table("name")`, the quoted name here matches it
    head = f"# {literal(table.name)}: {shape}, {over}"
    finite = np.where(np.isfinite(values), np.abs(values), -1.0).ravel()
    if values.size == 0:
        return _fit(head + "; empty")
    if not (finite > 0).any():
        return _fit(head + ("; all zero" if (finite == 0).all() else "; no finite entries"))
    # stable: ties keep the table's order
    order = [i for i in np.argsort(-finite, kind="stable")[:3] if finite[i] > 0]
    nonzero = int((finite > 0).sum())
    # whole labels before a third entry: "(\"toke…, 18)" says less than one entry fewer
    tries = [(3, None), (2, None), (1, None), (3, 12), (2, 12), (1, 12), (2, 6), (1, 6)]
    for count, cut in tries:
        entries = [_entry(table, values, i, cut) for i in order[:count]]
        text = f"{head}; largest: {', '.join(entries)}"
        if count < nonzero:
            text += ", …"
        if len(text) <= WIDTH:
            return text
    return _fit(text)


def _entry(table, values, flat: int, cut: int | None) -> str:
    def label(x):
        text = literal(x)
        return text if cut is None or len(text) <= cut else text[:cut - 1] + "…"
    if table.cols is None:
        return f"{label(table.rows[flat])} {values[flat]:.3g}"
    r, c = divmod(flat, len(table.cols))
    return f"({label(table.rows[r])}, {label(table.cols[c])}) {values[r, c]:.3g}"


def _fit(text: str) -> str:
    return text if len(text) <= WIDTH else text[:WIDTH - 1] + "…"
