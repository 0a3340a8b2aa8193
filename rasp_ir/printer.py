"""Pretty-printer: IR to canonical .rasp text, the parser's inverse (`parse(pretty(p)) == p`).

Canonical form: directives first, then `load`s, one binding per line, keyword arguments for
select/aggregate/project, Python precedence with only the parentheses it needs.
"""

from __future__ import annotations

import contextvars
import math

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
    if node.name is not None:
        return f"table({literal(node.name)})"
    cols = f", cols={literal(list(node.cols))}" if node.cols is not None else ""
    return (f"matrix(rows={literal(list(node.rows))}{cols}, "
            f"values={literal([list(r) if isinstance(r, tuple) else r for r in node.values])})")


def named_tables(program: ir.Program) -> dict[str, ir.Matrix]:
    """The named matrices of a program: what its side-file must hold."""
    out = {}
    for b in program.bindings:
        for n in ir.walk(b.value):
            if isinstance(n, ir.Matrix) and n.name is not None:
                out[n.name] = n
    return out
