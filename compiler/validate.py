"""Before any work: every construct the compiler cannot compile exactly, with where and why."""

from __future__ import annotations

from rasp_ir import nodes as ir
from rasp_ir import types as T
from rasp_ir.diagnostics import Diagnostic

_NOT_EXACT = {
    "harden": "harden (argmax of a vector) has no exact ReLU form for arbitrary vectors",
    "sharpen": "sharpen (power and renormalise) has no exact ReLU form",
    "exists": "exists (a threshold on a vector) has no exact ReLU form for arbitrary vectors",
}


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
    _, issues = types if types is not None else T.infer(program)
    problems += [Diagnostic(i.code, i.message, getattr(i.node, "span", None), i.hint)
                 for i in issues]
    for node in _needed_nodes(program):
        reason = _unsupported(node)
        if reason:
            problems.append(Diagnostic("E401", f"cannot be compiled exactly: {reason}", node.span))
    return problems


def _needed_nodes(program: ir.Program):
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


def _unsupported(node) -> str | None:
    if isinstance(node, ir.Primitive) and node.name in _NOT_EXACT:
        return _NOT_EXACT[node.name]
    if isinstance(node, ir.Mlp):
        return "an opaque GELU MLP cannot be placed in a compiled (ReLU) model exactly"
    if isinstance(node, ir.Predict) and node.function not in ("softmax", "sigmoid"):
        return f"unknown prediction {node.function}"
    return None


def plan_problems(program: ir.Program, maxlen: int) -> list[Diagnostic]:
    """Plan each binding the output needs on its own, so that every failing one is listed."""
    from .plan import CompileError, Planner
    import attrs
    problems, seen = [], set()
    needed = {n.name for n in _needed_nodes(program) if isinstance(n, ir.Ref)}
    types, _ = T.infer(program)
    targets = [b.value for b in program.bindings if b.name in needed
               and not isinstance(types.get(b.name), (T.Sel, T.Score))] + [program.output]
    for target in targets:
        try:
            planner = Planner(attrs.evolve(program, output=target), maxlen)
            planner.output(target)
        except CompileError as exc:
            node = exc.node if exc.node is not None else target
            key = (id(node), exc.reason)
            if key not in seen:
                seen.add(key)
                problems.append(Diagnostic("E401", f"cannot be compiled exactly: {exc.reason}",
                                           getattr(node, "span", None)))
    return problems
