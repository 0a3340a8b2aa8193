"""The tables a program's statements hold, found in program order with what their rows and
columns range over: score, selector and projection matrices (named side-file tables and
inline ones) and the predicates that stand in for them, evaluated over their bases."""

from __future__ import annotations

import attrs
import numpy as np

from rasp_ir import nodes as ir
from rasp_ir import ops
from rasp_ir import types as T
from rasp_ir.printer import expr

MAX_PREDICATE_CELLS = 40_000     # a predicate over larger bases is not tabulated


@attrs.frozen
class Table:
    statement: str               # the binding that holds it
    kind: str                    # "score", "selector", "key score", "projection", "bias", "lookup"
    title: str                   # the table's name, or the expression it stands for
    values: np.ndarray           # rows × cols (a vector for key scores and biases)
    rows: tuple
    cols: tuple | None
    row_name: str                # what the rows range over ("query: indices")
    col_name: str                # what the columns range over
    name: str | None = None      # the side-file name, None for an inline table or a predicate


def program_tables(program: ir.Program, interpreter=None) -> list[Table]:
    """Every drawable table of `program`, statement by statement."""
    from rasp_ir.interpreter import Interpreter
    interpreter = interpreter or Interpreter(program)
    out = []
    for b in program.bindings:
        for node in ir.walk(b.value):
            try:
                table = _table(program, interpreter, b.name, node)
            except (TypeError, ValueError, KeyError, ZeroDivisionError, OverflowError):
                table = None        # a predicate that fails on some pair of its bases
            if table is not None:
                out.append(table)
    return out


def _basis(interpreter, node) -> tuple | None:
    try:
        return T.basis_of(interpreter.type_of(node))
    except Exception:               # a node the types cannot describe: no table to draw
        return None


def _table(program, interpreter, statement: str, node) -> Table | None:
    if isinstance(node, ir.Select):
        keys = _basis(interpreter, node.keys)
        queries = _basis(interpreter, node.queries) if node.queries is not None else None
        pred = node.predicate
        k_name = f"key: {_short(node.keys)}"
        if isinstance(pred, ir.Matrix):
            if pred.cols is None or node.queries is None:
                return _matrix_table(statement, "key score", pred, k_name, "")
            return _matrix_table(statement, "score", pred, f"query: {_short(node.queries)}",
                                 k_name)
        if keys is None or (node.queries is not None and queries is None):
            return None
        if node.queries is None:
            values = _predicate(pred, keys, 0)
            if values is None:
                return None
            return Table(statement, "selector", f"select({_short(node.keys)}, "
                         f"op={_pred_text(pred)})", values, keys, None, k_name, "")
        values = _predicate(pred, queries, 1, keys, 0)
        if values is None:
            return None
        return Table(statement, "selector", f"select({_short(node.keys)}, "
                     f"{_short(node.queries)}, {_pred_text(pred)})", values, queries, keys,
                     f"query: {_short(node.queries)}", k_name)
    if isinstance(node, ir.Project):
        pred = node.predicate
        if isinstance(pred, ir.Matrix):
            if node.operand is None:
                return _matrix_table(statement, "bias", pred, "output", "")
            return _matrix_table(statement, "projection", pred,
                                 f"input: {_short(node.operand)}", "output")
        outputs = program.vocab
        if outputs is None:
            return None
        if node.operand is None:
            values = _predicate(pred, tuple(outputs), "out" if "out" in getattr(
                pred, "params", ()) else 0)
            return Table(statement, "bias", f"project(op={_pred_text(pred)})", values,
                         tuple(outputs), None, "output", "")
        inputs = _basis(interpreter, node.operand)
        if inputs is None:
            return None
        values = _predicate(pred, inputs, "inp", tuple(outputs), "out")
        if values is None:
            return None
        return Table(statement, "projection", f"project({_short(node.operand)}, "
                     f"op={_pred_text(pred)})", values, inputs, tuple(outputs),
                     f"input: {_short(node.operand)}", "output")
    if isinstance(node, ir.Primitive) and node.name == "lookup":
        m = node.args[1]
        if isinstance(m, ir.Matrix):
            return _matrix_table(statement, "lookup", m, f"input: {_short(node.args[0])}",
                                 "output")
    return None


def _matrix_table(statement, kind, m: ir.Matrix, row_name, col_name) -> Table:
    title = m.name if m.name is not None else f"{kind} table of {statement}"
    return Table(statement, kind, title, np.asarray(m.values, dtype=float), tuple(m.rows),
                 tuple(m.cols) if m.cols is not None else None, row_name, col_name, m.name)


def _predicate(pred, rows: tuple, row_param: int | str | None,
               cols: tuple | None = None, col_param: int | str | None = None):
    """The predicate's values over its bases: rows × cols, or a vector over `rows` when
    `cols` is None. A parameter is named by its position in the lambda (select: k, then q)
    or by its name (project: inp, out; positions 0, 1 where the names differ)."""
    if len(rows) * len(cols or (0,)) > MAX_PREDICATE_CELLS:
        return None
    if isinstance(pred, ir.Compare):       # `key op query`: rows are queries, cols keys
        if cols is None:
            return None
        return np.array([[_truth(ops.compare(pred.op, k, q)) for k in cols] for q in rows])
    if not isinstance(pred, ir.Lambda):
        return None
    row_name, col_name = _param(pred, row_param), _param(pred, col_param)

    def value(r, c=None):
        env = {}
        if row_name is not None:
            env[row_name] = r
        if col_name is not None:
            env[col_name] = c
        return _truth(_atom(pred.body, env))
    if cols is None:
        return np.array([value(r) for r in rows])
    return np.array([[value(r, c) for c in cols] for r in rows])


def _param(pred: ir.Lambda, which: int | str | None) -> str | None:
    if which is None:
        return None
    if isinstance(which, str):
        if which in pred.params:
            return which
        which = {"inp": 0, "out": 1}.get(which, 0)
    return pred.params[which] if which < len(pred.params) else None


def _truth(value) -> float:
    if isinstance(value, bool) or value is None:
        return float(bool(value))
    if isinstance(value, (int, float)):
        return float(value)
    return float(bool(value))


def _atom(node, env: dict):
    """A predicate body on single atoms (the interpreter's meaning, through rasp_ir.ops)."""
    if isinstance(node, ir.Param):
        return env[node.name]
    if isinstance(node, ir.Const):
        return node.value
    if isinstance(node, ir.BinaryOp):
        return ops.binary(node.op, _atom(node.left, env), _atom(node.right, env))
    if isinstance(node, ir.UnaryOp):
        return ops.unary(node.op, _atom(node.operand, env))
    if isinstance(node, ir.Cond):
        return _atom(node.then, env) if _atom(node.cond, env) else _atom(node.otherwise, env)
    if isinstance(node, ir.In):
        return (_atom(node.operand, env) in node.options) != node.negate
    if isinstance(node, ir.Call):
        return ops.call(node.function, *[_atom(a, env) for a in node.args])
    if isinstance(node, ir.Lookup):
        return dict(zip(node.keys, node.values))[_atom(node.operand, env)]
    raise ValueError(f"cannot tabulate {type(node).__name__}")


def _short(node) -> str:
    text = expr(node)
    return text if len(text) <= 40 else text[:37] + "..."


def _pred_text(pred) -> str:
    from rasp_ir.printer import predicate
    text = predicate(pred)
    return text if len(text) <= 50 else text[:47] + "..."
