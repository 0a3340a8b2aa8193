"""Deliberately broken variants of a program, made at the IR level, for testing `rasp equiv`.

Each mutant changes one node of one binding: a comparison flipped (== to <, …), an integer
constant moved by one, + and - swapped, `and` and `or` swapped, a selector's keys and queries
swapped, an aggregate's values replaced by `tokens` or `indices`. Mutants that no longer type
check are dropped; `behaviour_changes` tells, with the interpreter alone, whether a mutant
computes something else on some input (the oracle the equivalence checker is tested against).
"""

from __future__ import annotations

import itertools
import math

import attrs
import numpy as np

from rasp_ir import nodes as ir
from rasp_ir import types as T
from rasp_ir.diagnostics import RaspError
from rasp_ir.interpreter import run
from rasp_ir.passes import bindings_read

FLIP = {"==": "<", "<": "<=", "<=": ">", ">": ">=", ">=": "!=", "!=": "=="}


def replace(node, target, new):
    """`node` with the sub-node `target` (by identity) replaced by `new`."""
    if node is target:
        return new
    changes = {}
    for name, many in ir.child_fields(type(node)):      # the children nodes.py declares
        value = getattr(node, name)
        if many:
            changed = tuple(replace(v, target, new) if isinstance(v, ir.Node) else v
                            for v in value)
            if any(a is not b for a, b in zip(changed, value)):
                changes[name] = changed
        elif value is not None:
            changed = replace(value, target, new)
            if changed is not value:
                changes[name] = changed
    return attrs.evolve(node, **changes) if changes else node


def node_mutations(node) -> list[tuple[str, ir.Node]]:
    """(description, replacement) for each way this node can be broken."""
    out = []
    if isinstance(node, ir.Compare) and node.op in FLIP:
        out.append((f"select {node.op} -> {FLIP[node.op]}", ir.Compare(FLIP[node.op])))
    if isinstance(node, ir.BinaryOp):
        swap = dict(FLIP, **{"+": "-", "-": "+", "and": "or", "or": "and"})
        if node.op in swap:
            out.append((f"{node.op} -> {swap[node.op]}", attrs.evolve(node, op=swap[node.op])))
    if isinstance(node, ir.Const) and type(node.value) is int:
        out += [(f"constant {node.value} -> {node.value + d}", ir.Const(node.value + d))
                for d in (1, -1)]
    if isinstance(node, ir.Select) and node.queries is not None:
        out.append(("select keys <-> queries",
                    attrs.evolve(node, keys=node.queries, queries=node.keys)))
    if isinstance(node, (ir.SelectAnd, ir.SelectOr)):
        kind = ir.SelectOr if isinstance(node, ir.SelectAnd) else ir.SelectAnd
        out.append(("selector and <-> or", kind(node.left, node.right)))
    if isinstance(node, ir.Aggregate):
        for source in (ir.Tokens(), ir.Indices()):
            if node.values != source:
                out.append((f"aggregate values -> {type(source).__name__.lower()}",
                            attrs.evolve(node, values=source)))
    return out


def mutants(program: ir.Program) -> list[tuple[str, ir.Program]]:
    """Every single-node mutant of the bindings the output depends on that still type checks,
    as (description, program)."""
    needed = _needed(program)
    out = []
    for i, binding in enumerate(program.bindings):
        if binding.name not in needed:
            continue
        for node in ir.walk(binding.value):
            for what, new in node_mutations(node):
                value = replace(binding.value, node, new)
                bindings = program.bindings[:i] + (attrs.evolve(binding, value=value),) + \
                    program.bindings[i + 1:]
                mutant = attrs.evolve(program, bindings=bindings)
                if not T.infer(mutant)[1]:
                    out.append((f"{binding.name}: {what}", mutant))
    return out


def _needed(program: ir.Program) -> set:
    return bindings_read(program, [program.output])


def inputs(program: ir.Program, short: int = 2, sampled: int = 40, seed: int = 0) -> list[list]:
    """Every input of lengths 1..short and `sampled` random longer ones, shortest first."""
    alphabet = [t for t in program.vocab if t != program.bos]
    head = [program.bos] if program.bos is not None else []
    top = program.maxlen or 8
    out = [head + list(s) for n in range(1 - len(head), short + 1 - len(head))
           for s in itertools.product(alphabet, repeat=n) if len(head) + n >= 1]
    rng = np.random.default_rng(seed)
    for _ in range(sampled):
        n = int(rng.integers(short + 1, top + 1)) - len(head)
        out.append(head + [alphabet[i] for i in rng.integers(0, len(alphabet), size=n)])
    return sorted(out, key=len)


def outputs(program: ir.Program, sequence: list):
    """The interpreter's output on one input, or the code of its runtime error."""
    try:
        return run(program, [sequence])[0].output
    except RaspError as exc:
        return ("error", exc.codes[0])


def same(a, b) -> bool:
    """Outputs equal, numbers within 1e-6 x max(1, |value|)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    return a == b


def differs(a: ir.Program, b: ir.Program, sequence: list) -> bool:
    return not same(outputs(a, sequence), outputs(b, sequence))


def behaviour_changes(original: ir.Program, mutant: ir.Program, sample: list[list]):
    """The first input of `sample` on which the mutant's output differs, or None."""
    for sequence in sample:
        if differs(original, mutant, sequence):
            return sequence
    return None
