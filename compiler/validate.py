"""Before any work: every construct the compiler cannot compile exactly, with where and why."""

from __future__ import annotations

from rasp_ir import nodes as ir
from rasp_ir import types as T
from rasp_ir.diagnostics import Diagnostic

# Primitives on a vector (a softmax aggregate's distribution, an mlp's output) range over a
# continuum; an MLP computes a continuous, piecewise-linear (ReLU) or smooth (GELU) function
# of it, so these have no exact compiled form there. On categorical values (one-hot rows, a
# finite set) each is a lookup table, which the compiler builds.
_ON_VECTORS = {
    "harden": "harden (the argmax of a vector) jumps where two entries tie; an MLP computes a "
              "continuous function of its input",
    "sharpen": "sharpen (powers renormalised by their sum) divides by a function of the input; "
               "no MLP computes it exactly",
    "exists": "exists (one entry of a vector above a threshold) is a step, and an MLP computes "
              "a continuous function of its input",
    "is_pure": "is_pure (the largest entry of a vector above a threshold) jumps at ties and at "
               "the threshold; an MLP computes a continuous function of its input",
    "balance": "balance (the sign of a difference of two entries) is a step, and an MLP "
               "computes a continuous function of its input",
    "diff": "diff (a difference of two entries rounded to steps of 1/m) is a staircase, and an "
            "MLP computes a continuous function of its input",
    "tally": "tally (a difference of two entries times the number of positions, rounded) "
             "multiplies by the position and rounds; no MLP computes it exactly",
    "product": "product multiplies the entries of two vectors; no MLP computes a product of "
               "two continuous inputs exactly",
    "lookup": "lookup of a vector (a linear map) is not folded into the reading block's weights "
              "yet",
}
# a range of x's basis scanned from y's value: a step at the threshold on a vector; on
# one-hot inputs a lookup over the pairs of values, which the compiler does not build yet
_ORDERED = ("{} (the first entry above a threshold on one side of another value) is a step "
            "on a vector, and on categorical values a table over pairs of values that the "
            "compiler does not build yet")
_VECTOR_RESULTS = {
    "sharpen": "sharpen of a categorical value (its one-hot row, unchanged) is a vector, and "
               "the compiler writes vectors only from attention and mlp nodes",
    "lookup": "lookup of a categorical value is a vector (a row of the table), and the "
              "compiler writes vectors only from attention and mlp nodes",
}
_NORMALIZE = ("normalize (a stated LayerNorm: its input divided by a scale per position) "
              "divides by a function of the input, and the compiler writes vectors only from "
              "attention and mlp nodes; no MLP divides exactly")
_ACTIVATIONS = ("relu", "gelu")


def primitive_problem(node: ir.Primitive, type_of) -> str | None:
    """Why the primitive `node` cannot be compiled exactly (None when it can): `erase` is a
    constant; the others compile on categorical arguments only (`type_of(arg)`)."""
    if node.name == "erase":
        return None
    if node.name == "tally":      # it reads the position, on any argument
        return _ON_VECTORS["tally"]
    if node.name == "normalize":  # a vector divided by a number per position, on any argument
        return _NORMALIZE
    if node.name in ("least_above", "greatest_below"):
        return _ORDERED.format(node.name)
    if node.name not in _ON_VECTORS:
        return f"unknown primitive {node.name}"
    kinds = [type_of(arg) for arg in node.args[:2 if node.name == "product" else 1]]
    if any(t is None for t in kinds):
        return None          # a type error, reported as such
    if not all(isinstance(t, T.Cat) for t in kinds):
        return _ON_VECTORS[node.name] + " (its argument is a vector here)"
    return _VECTOR_RESULTS.get(node.name)


def activation_of(program: ir.Program) -> str:
    """The activation of the compiled model, "gelu" (GPT-2's tanh GELU) when the output needs
    a gelu `mlp` node, else "relu". The compiler's own MLPs are exact under either
    (compiler/lower.py scales them for GELU); a gelu and a relu `mlp` in one program cannot
    both be exact, which `validate` reports."""
    needed = [n for n in needed_nodes(program) if isinstance(n, ir.Mlp)]
    return "gelu" if any(n.activation == "gelu" for n in needed) else "relu"


def validate(program: ir.Program, maxlen: int | None,
             types: tuple | None = None) -> list[Diagnostic]:
    """Every problem that stops `program` from compiling exactly (empty when it compiles).
    `types` is `rasp_ir.types.infer`'s answer for the program at `maxlen`, if known."""
    problems = []
    if program.vocab is None:
        problems.append(Diagnostic("E401", "the program needs @vocab to be compiled",
                                   hint='declare the input tokens, e.g. @vocab {"a", "b"};'))
    if maxlen is None:
        problems.append(Diagnostic("E401", "the program needs @maxlen (or --max-len) to be "
                                   "compiled"))
    if program.output is None:
        problems.append(Diagnostic("E260", "the program has no @output to compile"))
    if program.compat is not None:
        problems.append(Diagnostic(
            "E401", 'a @compat "rasp0.1" program cannot be compiled exactly: RASP 0.1 averages '
            "categorical values and fills empty rows with 0 whatever the type",
            hint='remove @compat "rasp0.1" (and add parentheses where W101 warns)'))
    if problems:
        return problems
    bindings, issues = types if types is not None else T.infer(program)
    problems += [Diagnostic(i.code, i.message, getattr(i.node, "span", None), i.hint)
                 for i in issues]
    ctx = T.Context.of(program)
    ctx.maxlen = maxlen
    ctx.bindings = dict(bindings)

    def type_of(node):
        try:
            return T.type_of(node, ctx)
        except T.TypeIssue:          # reported above
            return None
    needed = needed_nodes(program)
    activations = sorted({n.activation for n in needed if isinstance(n, ir.Mlp)})
    # in source order (the walk starts from the output)
    needed.sort(key=lambda n: (n.span.line, n.span.column) if getattr(n, "span", None)
                else (0, 0))
    for node in needed:
        reason = _unsupported(node, type_of)
        if reason is None and isinstance(node, ir.Mlp) and len(activations) > 1:
            reason = (f"this {node.activation} mlp shares the program with "
                      f"{' and '.join(a for a in activations if a != node.activation)} mlp "
                      "nodes, and a compiled transformer has one activation")
        if reason:
            problems.append(Diagnostic("E401", f"cannot be compiled exactly: {reason}", node.span))
    return problems


def needed_nodes(program: ir.Program) -> list:
    """Every node the output reads, through the bindings its references name (each once)."""
    bindings = {b.name: b for b in program.bindings}
    seen, stack, out = set(), [program.output], []
    while stack:
        for n in ir.walk(stack.pop()):
            if id(n) in seen:
                continue
            seen.add(id(n))
            out.append(n)
            if isinstance(n, ir.Ref) and n.name in bindings:
                stack.append(bindings[n.name].value)
    return out


def _unsupported(node, type_of) -> str | None:
    if isinstance(node, ir.Primitive):
        return primitive_problem(node, type_of)
    if isinstance(node, ir.Mlp) and node.activation not in _ACTIVATIONS:
        return f"an mlp with activation {node.activation} (the compiler has relu and gelu)"
    if isinstance(node, ir.Predict) and node.function not in ("softmax", "sigmoid"):
        return f"unknown prediction {node.function}"
    return None
