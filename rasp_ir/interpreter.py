"""The reference interpreter: the semantics every other part of the project is tested against.

It runs a program on a batch of inputs at once. Inputs are grouped by length, and each group is
evaluated with numpy arrays: s-ops are (batch, n), selectors and scores (batch, query, key),
vectors and logits (batch, n, basis). Only the bindings the requested values depend on are
evaluated.
"""

from __future__ import annotations

from collections import defaultdict

import attrs
import numpy as np

from . import arrays as A
from . import nodes as ir
from . import ops
from . import primitives as P
from . import types as T
from .diagnostics import Diagnostic, RaspError
from .limits import too_large


@attrs.frozen
class Result:
    """The output of one input: a value per position, and for logits or distributions the
    per-position scores over the output vocabulary."""
    input: tuple
    output: list
    logits: list | None = None


def run(program: ir.Program, inputs, node: ir.Node | None = None,
        add_bos: bool = False) -> list[Result]:
    """Evaluate `node` (default: the program's @output) on each input sequence."""
    target = node if node is not None else program.output
    if target is None:
        raise RaspError([Diagnostic("E260", "the program has no @output",
                                    hint="add a line such as `@output reverse;`")])
    interpreter = Interpreter(program)
    sequences = prepare_inputs(program, inputs, add_bos)      # validated once
    raw = _evaluate_sequences(interpreter, sequences, target)
    kind = interpreter.type_of(target)
    sets = prediction_function(program, target) == "sigmoid"
    results = []
    for seq, value in zip(sequences, raw):
        if sets:
            # next-token sets: at each position, every output whose probability passes 1/2
            basis = list(kind.basis)
            chosen = [[basis[i] for i in np.flatnonzero(row > 0.5)] for row in value]
            results.append(Result(tuple(seq), chosen, value.tolist()))
        elif isinstance(kind, T.Logits) or (isinstance(kind, T.Vec) and kind.dist):
            basis = A.to_array(list(kind.out if isinstance(kind, T.Logits) else kind.basis))
            best = basis[np.argmax(value, axis=-1)]
            results.append(Result(tuple(seq), best.tolist(), value.tolist()))
        else:
            results.append(Result(tuple(seq), value.tolist()))
    return results


def prediction_function(program: ir.Program, node: ir.Node | None = None) -> str | None:
    """"softmax" or "sigmoid" when `node` (default: the @output) is, or names, a prediction."""
    node = program.output if node is None else node
    while isinstance(node, ir.Ref):
        try:
            node = program.binding(node.name).value
        except KeyError:
            return None
    return node.function if isinstance(node, ir.Predict) else None


def evaluate(program: ir.Program, inputs, node: ir.Node, add_bos: bool = False,
             interpreter: "Interpreter | None" = None, memo: "Memo | None" = None) -> list:
    """The raw numpy value of `node` for each input (in input order). With a `memo` (one per
    list of inputs, given again with the same inputs), binding values another program
    computed the same way are taken from it."""
    sequences = prepare_inputs(program, inputs, add_bos)
    return _evaluate_sequences(interpreter or Interpreter(program), sequences, node, memo)


class Memo:
    """Binding values kept across evaluations of programs that share bindings on one fixed
    list of inputs: an extraction judges hundreds of programs, each one replacement away from
    the last, and recomputing the unchanged bindings (MLPs over every sequence) was most of its
    time. A value is keyed by its binding's expression and, recursively, those of every
    binding it reads, compared structurally (nodes are frozen), so two programs share a value
    exactly when they compute it the same way. Values used in none of the last `keep`
    evaluations are dropped; the kept arrays are read-only."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self.generation = 0
        self.entries: dict = {}     # key -> (value, generation last used)
        self.hits = self.misses = 0

    def next_evaluation(self) -> None:
        self.generation += 1
        oldest = self.generation - self.keep
        self.entries = {k: e for k, e in self.entries.items() if e[1] >= oldest}

    def value(self, key, compute):
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            value = compute()
            for array in (value if isinstance(value, tuple) else (value,)):
                if isinstance(array, np.ndarray):
                    array.flags.writeable = False
        else:
            self.hits += 1
            value = entry[0]
        self.entries[key] = (value, self.generation)
        return value


def _evaluate_sequences(interpreter: "Interpreter", sequences: list[list], node,
                        memo: Memo | None = None) -> list:
    """`node` on validated sequences, grouped by length into batches."""
    by_length = defaultdict(list)
    for i, seq in enumerate(sequences):
        by_length[len(seq)].append(i)
    out = [None] * len(sequences)
    if memo is not None:
        memo.next_evaluation()
    for indices in by_length.values():
        batch = [sequences[i] for i in indices]
        values = interpreter.evaluate_group(batch, node, indices, memo)
        for j, i in enumerate(indices):
            out[i] = values[j]
    return out


def prepare_inputs(program: ir.Program, inputs, add_bos: bool = False) -> list[list]:
    """Validate inputs against @vocab, @maxlen and @bos (R233, R234); strings become lists
    of characters; with `add_bos` the BOS token is prepended where it is missing."""
    sequences = []
    vocab = set(program.vocab) if program.vocab is not None else None
    for number, item in enumerate(inputs):
        try:
            seq = list(item)
        except TypeError:
            raise _input_error("R234", f"input {number + 1} is {item!r}, not a sequence of "
                               "tokens") from None
        if add_bos and program.bos is not None and (not seq or seq[0] != program.bos):
            seq.insert(0, program.bos)
        where = f"input {number + 1}"
        if not seq:
            raise _input_error("R234", f"{where} is empty; sequences need at least one token")
        types = {type(v) for v in seq}      # checked per type, not per token: inputs are long
        odd = [k for k in types if k is not type(None) and not issubclass(k, _TOKEN_TYPES)]
        if odd:
            first = next(v for v in seq if type(v) in odd)
            raise _input_error("R234", f"{where} holds {first!r}, which is not a single token")
        kinds = {_family(k) for k in types}
        if len(kinds) > 1 and not kinds <= {int, float}:
            raise _input_error("R234", f"{where} mixes value types: {seq!r}",
                               "give every token the same type")
        if vocab is not None and not vocab.issuperset(seq):
            pos, tok = next((p, t) for p, t in enumerate(seq) if t not in vocab)
            raise _input_error("R233", f"{where}: token {tok!r} at position {pos} is not "
                               "in @vocab", f"@vocab is {list(program.vocab)!r}")
        if program.maxlen is not None and len(seq) > program.maxlen:
            raise _input_error("R233", f"{where} has length {len(seq)}, more than @maxlen "
                               f"{program.maxlen}")
        if program.bos is not None and seq[0] != program.bos:
            raise _input_error("R233", f"{where} must start with the BOS token {program.bos!r}",
                               "prepend it (`rasp run` does this for you)")
        sequences.append(seq)
    return sequences


_TOKEN_TYPES = (str, int, float, np.generic)


def _family(kind: type) -> type:
    """numpy's scalar types count as the Python type they stand for (np.str_ is a str)."""
    for family, numpy_kind in ((bool, np.bool_), (str, np.str_), (int, np.integer),
                               (float, np.floating)):
        if issubclass(kind, (family, numpy_kind)):
            return family
    return kind


def _input_error(code, message, hint=None):
    return RaspError([Diagnostic(code, message, hint=hint)])


class Interpreter:
    """Evaluates the nodes of one program; holds the program's inferred types."""

    def __init__(self, program: ir.Program):
        self.program = program
        types, problems = T.infer(program)
        problems = [p for p in problems if not p.code.startswith("W")]     # warnings run
        if problems:
            raise RaspError([Diagnostic(p.code, p.message, getattr(p.node, "span", None), p.hint)
                             for p in problems], program.source)
        self.ctx = T.Context.of(program)
        self.ctx.bindings = types
        self.bindings = {b.name: b for b in program.bindings}
        self._types: dict[int, object] = {}
        self._matrices: dict[int, tuple] = {}
        self._closures: dict[str, tuple] = {}
        self._project_tables: dict[int, tuple] = {}

    def type_of(self, node):
        # keyed by identity (nodes of one program compare by value, but may sit in different
        # contexts); the node is kept with its type, so a caller's temporary node cannot be
        # freed and its id reused for another (which then read the first one's type)
        key = id(node)
        if key not in self._types:
            self._types[key] = (node, T.type_of(node, self.ctx))
        return self._types[key][1]

    # ------------------------------------------------------------ driving

    def evaluate_group(self, batch: list[list], node: ir.Node, numbers: list[int],
                       memo: Memo | None = None):
        """`node` on sequences of one length; `numbers` are their positions in the input."""
        group = _Group(self, batch, numbers)
        for name in self._needed(node):
            value = self.bindings[name].value
            if memo is None:
                group.env[name] = group.value(value)
            else:
                key = (self._closure(name), tuple(numbers))
                group.env[name] = memo.value(key, lambda: group.value(value))
        return group.value(node)

    def _closure(self, name: str) -> tuple:
        """What a binding's value depends on, as a hashable key: the directives that change
        how values are computed, its expression, and the closures of the bindings it reads."""
        if name not in self._closures:
            value = self.bindings[name].value
            reads = sorted({n.name for n in ir.walk(value)
                            if isinstance(n, ir.Ref) and n.name in self.bindings})
            p = self.program
            self._closures[name] = ((p.vocab, p.maxlen, p.bos, p.attention), value,
                                    tuple(self._closure(r) for r in reads))
        return self._closures[name]

    def _needed(self, node) -> list[str]:
        """Names of the bindings `node` depends on, in program order."""
        needed, stack = set(), [node]
        while stack:
            for n in ir.walk(stack.pop()):
                if isinstance(n, ir.Ref) and n.name not in needed and n.name in self.bindings:
                    needed.add(n.name)
                    stack.append(self.bindings[n.name].value)
        return [b.name for b in self.program.bindings if b.name in needed]

    def matrix(self, m: ir.Matrix) -> np.ndarray:
        # keyed by identity, the node kept (as type_of does)
        key = id(m)
        if key not in self._matrices:
            self._matrices[key] = (m, np.asarray(m.values, dtype=np.float64))
        return self._matrices[key][1]

    def project_table(self, node: ir.Project, compute) -> np.ndarray:
        """The (basis × outputs) table of a `project` whose op is a predicate, `compute()`d
        once per program: it depends on the types alone, not on the batch. Recomputed per
        batch (a lifted predicate over 155 × 154 values with None among them), it was most
        of a count extraction's judging."""
        key = id(node)
        if key not in self._project_tables:
            self._project_tables[key] = (node, compute())
        return self._project_tables[key][1]


class _Group:
    """One evaluation over a batch of equal-length sequences."""

    def __init__(self, interp: Interpreter, batch: list[list], numbers: list[int]):
        self.interp, self.program = interp, interp.program
        self.numbers = numbers
        self.b, self.n = len(batch), len(batch[0])
        self.tokens = A.to_array([t for seq in batch for t in seq]).reshape(self.b, self.n)
        self.env: dict[str, np.ndarray] = {}
        self.params: dict[str, np.ndarray] = {}
        self.causal_mask = np.tril(np.ones((self.n, self.n), dtype=bool))
        self._codes: dict[int, tuple] = {}
        self._vectors: dict[tuple, tuple] = {}

    def order_codes(self, arr: np.ndarray) -> np.ndarray:
        """Small integers with the order of `arr`'s values (sorted uniques), cached per array."""
        key = id(arr)
        if key not in self._codes:
            uniques, codes = np.unique(arr, return_inverse=True)
            dtype = np.int16 if len(uniques) < 2 ** 15 else np.int64
            self._codes[key] = (arr, codes.reshape(arr.shape).astype(dtype))
        return self._codes[key][1]

    # ------------------------------------------------------------ errors

    def fail(self, code, message, node, hint=None):
        raise RaspError([Diagnostic(code, message, node.span, hint)], self.program.source)

    def atom_error(self, exc: A.AtomError, node, what: str):
        error = exc.error
        if len(exc.index) == 2 and not self.params:
            seq, pos = exc.index
            place = f"input {self.numbers[seq] + 1}, position {pos}"
        else:
            place = "a predicate or table"
        values = ", ".join(repr(v) for v in exc.args_)
        if isinstance(error, ZeroDivisionError):
            self.fail("R231", f"division by zero in {what} at {place} (values: {values})", node,
                      "guard the divisor, e.g. `x / d if d != 0 else 0`")
        if isinstance(error, KeyError):
            self.fail("R232", f"the value {values} at {place} is missing from the table", node)
        self.fail("R201", f"{what} failed at {place} on values {values}: {error}", node)

    def lift(self, fn, node, what, *args):
        try:
            return A.lift(fn, *args)
        except A.AtomError as exc:
            self.atom_error(exc, node, what)

    # ------------------------------------------------------------ dispatch

    def value(self, node):
        method = getattr(self, "_" + type(node).__name__)
        try:
            return method(node)
        except _TooLarge as exc:
            # raised where the size is known, reported at the node whose value needed it
            self.fail("E306", str(exc), node, "shorten the input, or lower @maxlen or the "
                      "vocabulary this value ranges over")

    def sized(self, entries: int, what: str) -> None:
        """_TooLarge before an array of `entries` numbers per sequence is built (the batch is
        the caller's choice; one sequence's arrays are what an input can ask for)."""
        message = too_large(entries, what)
        if message is not None:
            raise _TooLarge(message)

    def sop_shape(self):
        return (self.b, self.n)

    def _Tokens(self, node):
        if node.view == "asis":
            return self.tokens
        convert = {"str": str, "int": int, "float": float, "bool": to_bool}[node.view]
        return self.lift(convert, node, f"tokens_{node.view}", self.tokens)

    def _Indices(self, node):
        return np.broadcast_to(np.arange(self.n, dtype=np.int64), self.sop_shape())

    def _Const(self, node):
        return A.full(self.sop_shape() if not self.params else (), node.value)

    def _Ref(self, node):
        return self.env[node.name]

    def _Param(self, node):
        return self.params[node.name]

    def _UnaryOp(self, node):
        x = self.value(node.operand)
        if node.op == "not" and (x.dtype == bool or A.numeric(x)):
            return ~A.truthy(x)
        if node.op == "-" and A.numeric(x) and x.dtype != bool:
            return -x
        return self.lift(lambda a: ops.unary(node.op, a), node, f"`{node.op}`", x)

    def _BinaryOp(self, node):
        op = node.op
        a, b = self.value(node.left), self.value(node.right)
        fast = fast_binary(op, a, b)
        if fast is not None:
            return fast
        return self.lift(lambda x, y: ops.binary(op, x, y), node, f"`{op}`", a, b)

    def _Cond(self, node):
        cond = A.truthy(self.value(node.cond))
        if self.params and cond.ndim and cond.any() and not cond.all():
            return self._table_cond(node, cond)
        then, otherwise = self.value(node.then), self.value(node.otherwise)
        if then.dtype.kind == otherwise.dtype.kind or (
                A.numeric(then) and A.numeric(otherwise)
                and then.dtype != bool and otherwise.dtype != bool):
            return np.where(cond, then, otherwise)
        out = np.where(cond, then.astype(object), otherwise.astype(object))
        return A.to_array(out.ravel().tolist()).reshape(out.shape)

    def _table_cond(self, node, cond):
        """`a if c else b` in a table (a predicate or op over basis values): each branch is
        evaluated only on the cells that take it, so `(False if inp == None else
        token_id(inp) == token_id(out))` does not look None up in token_id's table."""
        shape = np.broadcast_shapes(cond.shape, *(np.shape(v) for v in self.params.values()))
        take = np.broadcast_to(cond, shape)
        saved, parts = self.params, []
        try:
            for branch, where in ((node.then, take), (node.otherwise, ~take)):
                self.params = {k: np.broadcast_to(v, shape)[where] for k, v in saved.items()}
                parts.append(np.broadcast_to(self.value(branch), (int(where.sum()),)))
        finally:
            self.params = saved
        then, otherwise = parts
        if then.dtype.kind == otherwise.dtype.kind:
            out = np.empty(shape, dtype=np.result_type(then, otherwise))
        else:
            out = np.empty(shape, dtype=object)
        out[take], out[~take] = then, otherwise
        if out.dtype == object:
            return A.to_array(out.ravel().tolist()).reshape(shape)
        return out

    def _In(self, node):
        x = self.value(node.operand)
        options = A.to_array(list(node.options))
        if options.size and A.compatible(x, options):
            result = np.isin(x, options)
        else:
            members = set(node.options)
            result = self.lift(lambda v: v in members, node, "`in`", x).astype(bool)
        return ~result if node.negate else result

    def _Lookup(self, node):
        table = dict(zip(node.keys, node.values))
        return self.lift(lambda v: table[v], node, "the table lookup", self.value(node.operand))

    def _Call(self, node):
        x = self.value(node.args[0])
        name = node.function
        if name == "indicator" and (x.dtype == bool or A.numeric(x)):
            return A.truthy(x).astype(np.int64)
        if name == "round" and A.numeric(x):
            return np.round(x).astype(np.int64)
        if name in ("numerical", "categorical"):
            return x
        return self.lift(lambda v: ops.call(name, v), node, name, x)

    # ------------------------------------------------------------ attention

    def _Select(self, node):
        self.sized(self.n * self.n, f"a selector over {self.n:,} positions")
        keys = self.value(node.keys)
        queries = self.value(node.queries) if node.queries is not None else None
        pred = node.predicate
        key_t = self.interp.type_of(node.keys)
        query_t = self.interp.type_of(node.queries) if node.queries is not None else None
        if isinstance(pred, ir.Matrix) or isinstance(key_t, T.Vec) or \
                isinstance(query_t, T.Vec) or T.numeric_op(pred):
            return self._bilinear(node, keys, queries, key_t, query_t)
        if queries is None:
            # a body without `k` (op=True) is a scalar: broadcast it over the keys
            row = A.truthy(np.broadcast_to(self._predicate(pred, node, keys=keys),
                                           keys.shape))                # (b, k)
            return np.broadcast_to(row[:, None, :], (self.b, self.n, self.n))
        if isinstance(pred, ir.Compare) and A.compatible(keys, queries):
            if keys is queries and keys.dtype.kind == "U":
                keys = queries = self.order_codes(keys)   # ints compare ~10x faster
            return ops.COMPARE[pred.op](keys[:, None, :], queries[:, :, None])
        # general case: the predicate's table over the distinct keys and queries
        key_values, key_codes = A.factorize(keys)
        query_values, query_codes = A.factorize(queries)
        k = A.to_array(key_values)[None, :]
        q = A.to_array(query_values)[:, None]
        table = A.truthy(np.broadcast_to(self._predicate(pred, node, keys=k, queries=q),
                                         (q.shape[0], k.shape[1])))
        return table[query_codes[:, :, None], key_codes[:, None, :]]

    def _predicate(self, pred, node, keys, queries=None):
        """A Compare or Lambda predicate evaluated on broadcastable key/query arrays."""
        if isinstance(pred, ir.Compare):
            if queries is None:
                self.fail("E211", "a comparison needs queries", node)
            if A.compatible(keys, queries):
                return ops.COMPARE[pred.op](keys, queries)
            return self.lift(lambda k, q: ops.compare(pred.op, k, q), node, "the predicate",
                             keys, queries)
        names = pred.params
        saved = self.params
        self.params = dict(zip(names, [keys, queries][:len(names)]))
        try:
            return self.value(pred.body)
        finally:
            self.params = saved

    def _table(self, pred, node, row_basis, col_basis, row_name, col_name):
        """An op over two bases as a matrix (rows × cols) as the op's users read it: a
        predicate's truth values lifted by @hard_scale, a numeric op's values as they are."""
        scale = 1.0 if T.numeric_op(pred) else self.program.hard_scale
        return self._values_table(pred, node, row_basis, col_basis, row_name, col_name) * scale

    def _values_table(self, pred, node, row_basis, col_basis, row_name, col_name):
        """The op's values over two bases: 0/1 for a predicate, numbers for a numeric op."""
        def numbers(v):
            try:
                return np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):     # `k + q` over strings: text, not a score
                first = np.asarray(v).ravel()[0]
                first = first.item() if hasattr(first, "item") else first
                self.fail("R201", f"a numeric op must give numbers; this one gives {first!r}",
                          node, "compare the values (k == q), or score numbers")
        shaped = numbers if T.numeric_op(pred) else (lambda v: A.truthy(v).astype(np.float64))
        self.sized(len(row_basis) * (1 if col_basis is None else len(col_basis)),
                   f"the table of {len(row_basis):,} × "
                   f"{1 if col_basis is None else len(col_basis):,} values")
        rows = A.to_array(list(row_basis))[:, None]
        if col_basis is None:
            saved = self.params
            self.params = {pred.params[0]: rows[:, 0]}
            try:
                vector = np.asarray(self.value(pred.body))
            finally:
                self.params = saved
            # a constant predicate (`op=False`) is one value: the same for every row
            return shaped(np.broadcast_to(vector, (rows.shape[0],)))
        cols = A.to_array(list(col_basis))[None, :]
        if isinstance(pred, ir.Compare):   # key op query: rows are queries, cols keys
            table = self._predicate(pred, node, keys=cols, queries=rows)
        else:
            saved = self.params
            self.params = {row_name: rows, col_name: cols}
            try:
                table = self.value(pred.body)
            finally:
                self.params = saved
        return shaped(np.broadcast_to(table, (rows.shape[0], cols.shape[1])))

    def vector(self, value, t) -> np.ndarray:
        """A cat s-op as one-hot rows over its basis; vectors as they are."""
        if isinstance(t, T.Vec):
            return value
        if isinstance(t, T.Num):
            return value.astype(np.float64)[..., None]
        # a program extracted from a model reads `token` and `pos` in hundreds of terms
        key = (id(value), t.values)
        cached = self._vectors.get(key)
        if cached is not None and cached[0] is value:
            return cached[1]
        onehot = self._one_hot(value, t)
        self._vectors[key] = (value, onehot)
        return onehot

    def _one_hot(self, value, t) -> np.ndarray:
        self.sized(self.n * len(t.values), f"a one-hot row over {len(t.values):,} values at "
                   f"each of {self.n:,} positions")
        basis = {v: i for i, v in enumerate(t.values)}
        values, codes = A.factorize(value)
        try:
            index = np.array([basis[v] for v in values], dtype=np.int64)
        except KeyError as exc:
            raise RaspError([Diagnostic("R233", f"value {exc.args[0]!r} is outside the basis "
                                        f"{list(t.values)!r}")]) from None
        # set one entry per row: np.eye over the basis would be |basis|² numbers
        onehot = np.zeros(codes.shape + (len(t.values),))
        np.put_along_axis(onehot, index[codes][..., None], 1.0, axis=-1)
        return onehot

    def _bilinear(self, node, keys, queries, key_t, query_t):
        """Score = q · M · kᵀ for a matrix, or for a predicate over vector bases."""
        pred = node.predicate
        k = self.vector(keys, key_t)                              # (b, n, |K|)
        if isinstance(pred, ir.Matrix):
            matrix = self.interp.matrix(pred)
        else:
            # a vector over the key basis when there are no queries
            matrix = self._table(pred, node,
                                 T.basis_of(query_t) if query_t is not None else T.basis_of(key_t),
                                 T.basis_of(key_t) if query_t is not None else None, "q", "k")
        if queries is None:
            row = k @ matrix                                      # (b, n_k)
            return np.broadcast_to(row[:, None, :], (self.b, self.n, self.n))
        q = self.vector(queries, query_t)                         # (b, n, |Q|)
        # two matmuls, not a three-operand einsum (which loops over every index at once)
        return (q @ matrix) @ k.transpose(0, 2, 1)                # (b, n_q, n_k)

    def _SelectAnd(self, node):
        return self.value(node.left) & self.value(node.right)

    def _SelectOr(self, node):
        return self.value(node.left) | self.value(node.right)

    def _SelectNot(self, node):
        return ~self.value(node.operand)

    def scores(self, node) -> np.ndarray:
        value = self.value(node)
        if value.dtype == bool:
            return value * self.program.hard_scale
        return value

    def _ScoreSum(self, node):
        return sum(self.scores(t) for t in node.terms)

    def _ScoreScale(self, node):
        return node.factor * self.scores(node.operand)

    def _SelectorWidth(self, node):
        sel = self.value(node.selector)
        if self.program.causal:
            sel = sel & self.causal_mask
        return np.count_nonzero(sel, axis=-1).astype(np.int64)

    def _Aggregate(self, node):
        sel_t = self.interp.type_of(node.selector)
        value_t = self.interp.type_of(node.values)
        values = self.value(node.values)
        if isinstance(sel_t, T.Score) or self.program.attention == "softmax":
            return self._soft_aggregate(node, values, value_t)
        sel = self.value(node.selector)
        if self.program.causal:
            sel = sel & self.causal_mask
        count = np.count_nonzero(sel, axis=-1)
        empty = count == 0
        if isinstance(value_t, (T.Num, T.Vec)):
            # sum, then divide: a mean of equal values is then exactly that value
            width = np.maximum(count, 1)
            if isinstance(value_t, T.Vec):
                return np.einsum("bqk,bkd->bqd", sel.astype(np.float64), values) / width[..., None]
            mean = np.einsum("bqk,bk->bq", sel.astype(np.float64),
                             self.as_numbers(values, node)) / width
            return np.where(empty, float(node.default or 0), mean)
        return self._categorical_mean(node, sel, values, count, empty)

    def as_numbers(self, values: np.ndarray, node) -> np.ndarray:
        """The values a numerical aggregate averages, as floats; R201 when one is not a number
        (`average(tokens)` on text: numerical() changes the type, not the values)."""
        try:
            return values.astype(np.float64)
        except (TypeError, ValueError):
            bad = next(v for v in values.flat if not isinstance(v, (int, float, np.number)))
            self.fail("R201", f"a numerical aggregate averages the value {str(bad)!r}, which is "
                      "not a number", node, "average numbers (numerical(indicator(tokens == "
                      "\"a\"))), or aggregate the categorical s-op with a selector that picks "
                      "one key")

    def _categorical_mean(self, node, sel, values, count, empty):
        uniques, codes = A.factorize(values)
        first = np.take_along_axis(codes, sel.argmax(-1), axis=-1)   # first selected key's value
        conflict = ~empty & (sel & (codes[:, None, :] != first[:, :, None])).any(-1)
        table = A.to_array(uniques)
        out = table[first]
        if conflict.any():
            if self.program.compat == "rasp0.1" and A.numeric(table) and table.dtype != bool:
                mean = np.einsum("bqk,bk->bq", sel / np.maximum(count, 1)[..., None],
                                 values.astype(np.float64))
                out = np.where(conflict, mean, out)
            else:
                seq, q = (int(i) for i in np.argwhere(conflict)[0])
                chosen = [uniques[c] for c in codes[seq][sel[seq, q]]]
                self.fail("R230", "a categorical aggregate averaged different values: at "
                          f"input {self.numbers[seq] + 1}, query position {q} selected "
                          f"{int(count[seq, q])} keys: {', '.join(map(repr, chosen))}", node,
                          "averaging is only defined for numerical s-ops; use a selector that "
                          "picks one key, or aggregate numerical(...) values")
        default = node.default
        if default is None and self.program.compat == "rasp0.1":
            default = 0     # RASP 0.1 fills empty rows with 0 whatever the value type
        return A.where(empty, default, out)

    def _soft_aggregate(self, node, values, value_t):
        scores = np.array(self.scores(node.selector), dtype=np.float64)
        if self.program.causal:
            scores = np.where(self.causal_mask, scores, -np.inf)
        scores = scores - scores.max(-1, keepdims=True)
        weights = np.exp(scores)
        weights /= weights.sum(-1, keepdims=True)
        # batched matmuls: numpy's einsum does not hand these to BLAS (10-40x slower at the
        # sizes of an extracted program; the same sums up to rounding)
        if isinstance(value_t, T.Num):
            return (weights @ self.as_numbers(values, node)[..., None])[..., 0]
        return weights @ self.vector(values, value_t)

    # ------------------------------------------------------------ vectors and logits

    def _Primitive(self, node):
        t = self.interp.type_of(node.args[0])
        x = self.vector(self.value(node.args[0]), t)
        if node.name not in P.NAMES:
            self.fail("E201", f"unknown primitive {node.name}", node)
        if node.name == "lookup":
            return P.lookup(x, self.interp.matrix(node.args[1]))
        if node.name == "normalize":
            return self._normalize(node, x, t)
        y = basis_y = None
        if node.name in P.COMPARED:
            y_t = self.interp.type_of(node.args[1])
            y, basis_y = self.vector(self.value(node.args[1]), y_t), T.basis_of(y_t)
        if node.name == "product":
            y = self.vector(self.value(node.args[1]), self.interp.type_of(node.args[1]))
            self.sized(self.n * x.shape[-1] * y.shape[-1], f"a product's rows over "
                       f"{x.shape[-1]:,} × {y.shape[-1]:,} pairs at {self.n:,} positions")
        seen = None
        if node.name == "tally":
            # the positions a causal mean at each position averages: its own and those before
            seen = np.broadcast_to(np.arange(1, self.n + 1) if self.program.causal
                                   else np.full(self.n, self.n), (self.b, self.n))
        out = P.apply(node.name, node.params, x, T.basis_of(t), y, seen=seen, basis_y=basis_y)
        out_t = self.interp.type_of(node)
        if node.name in P.CATEGORICAL:
            return A.to_array(list(T.basis_of(out_t)))[out]
        if node.name == "product" and isinstance(out_t, T.Cat):
            # two one-hot inputs: their product is one-hot on the pair itself
            return A.to_array(list(out_t.values))[np.argmax(out, axis=-1)]
        return out

    def _normalize(self, node, x, t):
        """normalize(x, scale): x divided by the scale at each position (R231 where it is 0)."""
        scale = np.asarray(self.value(node.args[1]), dtype=np.float64)
        if (scale == 0).any():
            self.fail("R231", "normalize divides by a scale of 0", node,
                      "a LayerNorm's scale is positive: check the expression giving it")
        out = P.normalize(x, scale)
        return out[..., 0] if isinstance(t, T.Num) else out

    def _Mlp(self, node):
        parts = [self.vector(self.value(i), self.interp.type_of(i)) for i in node.inputs]
        x = np.concatenate(parts, axis=-1)
        m = self.interp.matrix
        hidden = mlp_activation(x @ m(node.W_in) + m(node.b_in).reshape(-1), node.activation)
        return hidden @ m(node.W_out) + m(node.b_out).reshape(-1)

    def _Project(self, node):
        out = self.program.vocab
        pred = node.predicate
        if node.operand is None:
            if isinstance(pred, ir.Matrix):
                bias = self.interp.matrix(pred)
            else:
                bias = self.interp.project_table(
                    node, lambda: self._table(pred, node, out, None, "out", None))
            return np.broadcast_to(bias, (self.b, self.n, bias.shape[-1])).copy()
        t = self.interp.type_of(node.operand)
        x = self.vector(self.value(node.operand), t)
        if isinstance(pred, ir.Matrix):
            matrix = self.interp.matrix(pred)
        else:
            matrix = self.interp.project_table(
                node, lambda: self._table(pred, node, T.basis_of(t), out, "inp", "out"))
        return x @ matrix

    def _LogitsSum(self, node):
        return sum(self.value(t) for t in node.terms)

    def _Predict(self, node):
        logits = self.value(node.logits)
        if node.function == "sigmoid":
            with np.errstate(over="ignore"):    # exp(-logit) → inf for logit ≪ 0 gives 0
                return 1 / (1 + np.exp(-logits))
        shifted = np.exp(logits - logits.max(-1, keepdims=True))
        return shifted / shifted.sum(-1, keepdims=True)


class _TooLarge(Exception):
    """An array one sequence would need is past MAX_TABLE_ENTRIES; `_Group.value` reports it
    as E306 at the node being evaluated."""


def mlp_activation(x: np.ndarray, name: str) -> np.ndarray:
    """An `mlp` node's activation: "relu" (compiled models) or "gelu", GPT-2's tanh
    approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (the checkpoints the extractor
    reads), in float64 as everything here."""
    if name == "relu":
        return np.maximum(x, 0)
    # torch's fused kernel, not eight numpy passes over the largest arrays the interpreter
    # makes (every position × d_mlp): 3.3 times faster on one thread, and an extraction
    # judging a program with an opaque MLP spent a third of its time here. Same formula,
    # within 1e-15. Imported here: only extracted programs have gelu, and `rasp run` on
    # others starts without loading torch.
    import torch
    x = np.require(x, np.float64, ["C_CONTIGUOUS", "WRITEABLE"])   # what from_numpy takes
    return torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()


def to_bool(v):
    """A token read as a bool: "True"/"true"/"1" or "False"/"false"/"0" for a string
    (ValueError for any other string), Python's truth value for anything else."""
    if isinstance(v, str):
        if v in ("True", "true", "1"):
            return True
        if v in ("False", "false", "0"):
            return False
        raise ValueError(f"cannot read {v!r} as a bool")
    return bool(v)


_FAST_ARITH = {"+": np.add, "-": np.subtract, "*": np.multiply}


def fast_binary(op, a, b):
    """numpy's version of `a op b` where it agrees with Python's; None otherwise."""
    if op in ops.COMPARISONS:
        if A.compatible(a, b):
            return ops.COMPARE[op](a, b)
        return None
    if op in ("and", "or") and a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
        fn = np.logical_and if op == "and" else np.logical_or
        return fn(A.truthy(a), A.truthy(b))
    if not (A.numeric(a) and A.numeric(b)):
        return None
    if a.dtype == bool:
        a = a.astype(np.int64)
    if b.dtype == bool:
        b = b.astype(np.int64)
    if op in _FAST_ARITH:
        return _FAST_ARITH[op](a, b)
    if op in ("/", "%") and not np.any(b == 0):
        return np.true_divide(a, b) if op == "/" else np.mod(a, b)
    return None
