"""Which values live in the residual stream, which block computes each, and in which layer.

A value is *materialised* (given a subspace of the residual stream) only where a block must
read it: attention outputs, and element-wise expressions that no linear map can compute
(functions of two or more inputs, or non-affine functions of a number). Every other
element-wise expression is folded into the linear maps of the blocks that read it (W_Q, W_K,
W_V, W_in, W_U), so maps cost no layer. Blocks are placed as early as their inputs allow:
time 0 is the embedding, time 2l+1 the attention of layer l, time 2l+2 its MLP.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from rasp_ir import nodes as ir
from rasp_ir import types as T
from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.limits import too_large

from . import functions as F
from . import vectorised as V
from .lower import TooLarge, sized
from .contract import Atom, Block, CompileError, Dense, Head, Linear, Plan, Var, index_of
from .validate import activation_of, needed_nodes, primitive_problem

MAX_MLP_UNITS = 1 << 17     # one block's hidden units; larger tables are reported, not built
AFFINE_CHECK = 1 << 14      # combinations tried when checking that a map is affine
SPLIT_UNITS = 1 << 14       # above this, a map is split into smaller maps (one more layer)


def _next(time: int, parity: int) -> int:
    """The first time after `time` with the given parity (1: attention, 0: MLP)."""
    t = time + 1
    return t if t % 2 == parity else t + 1


class Planner:
    """Builds a Plan for one program (see `plan`)."""

    def __init__(self, program: ir.Program, maxlen: int, types: dict | None = None):
        self.program, self.maxlen = program, maxlen
        self.bindings = {b.name: b for b in program.bindings}
        self.ctx = T.Context.of(program)
        self.ctx.maxlen = maxlen
        if types is not None:
            self.ctx.bindings = dict(types)
        else:
            self.ctx.bindings, problems = _infer(program, self.ctx)
            if problems:
                raise CompileError(problems[0].node, problems[0].message)
        self.vars: list[Var] = []
        self.heads: list[Head] = []
        self.blocks: list[Block] = []
        self.dense: list[Dense] = []
        self.activation = activation_of(program)     # "relu" or "gelu"
        self.held: dict = {}     # node (structurally: equal nodes share) -> its variable
        self.names: set[str] = set()
        # heads whose raw output is not the value itself (selector width writes 1/(w+1)):
        # head output Var -> the Fn that recovers the value from the residual
        self.reads: dict[Var, F.Fn] = {}
        self._parents: dict | None = None
        self.copies: dict[Var, Var] = {}
        self.encoded: dict = {}      # (node, kind, values) -> a variable holding it so
        self._fns: dict = {}
        self._built: dict = {}      # generation -> {sub-expression: Fn} (see F.build)
        self._generation = 0     # bumped whenever a variable or a read changes

    # ------------------------------------------------------------ variables

    def type_of(self, node):
        return T.type_of(node, self.ctx)

    def new_var(self, name, kind, values, time, bos=None, affine=None) -> Var:
        base, i = name, 2
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        var = Var(name, kind, values, time, bos, affine)
        self.vars.append(var)
        return var

    def source(self, node) -> Var:
        key = ("tokens", node.view) if isinstance(node, ir.Tokens) else ("indices",)
        if key not in self.held:
            t = self.type_of(node)
            name = "indices" if key == ("indices",) else (
                "tokens" if node.view == "asis" else f"tokens_{node.view}")
            kind = "num" if isinstance(t, T.Num) else "cat"
            self.held[key] = self.new_var(name, kind, t.values, 0)
        return self.held[key]

    def leaf_of(self, node):
        """The variable that holds `node`, creating attention heads on the way; None when
        `node` is an element-wise expression to expand."""
        if isinstance(node, (ir.Tokens, ir.Indices)):
            return self.source(node)
        if node in self.held:
            return self.held[node]
        if isinstance(node, ir.Ref):
            value = self.bindings[node.name].value
            if F.is_elementwise(value):
                return None
            var = self.leaf_of(value)
            return var
        if isinstance(node, ir.Aggregate):
            return self.aggregate(node)
        if isinstance(node, ir.SelectorWidth):
            return self.selector_width(node)
        if isinstance(node, ir.Mlp):
            return self.dense_mlp(node)
        if isinstance(node, ir.Primitive):
            reason = primitive_problem(node, self.type_of)
            if reason:
                raise CompileError(node, reason)
        if F.is_elementwise(node):
            return None
        raise CompileError(node, f"{type(node).__name__} has no compiled form here")

    def fn(self, node) -> F.Fn:
        """`node` as a function of residual variables (cached until a variable is added)."""
        # a cached function stays right while heads are added (a head is created before
        # anything reads it); materialising an element-wise expression invalidates the cache
        key = (node, self._generation)
        if key not in self._fns:
            memo = self._built.setdefault(self._generation, {})
            self._fns[key] = F.build(node, self._leaf, self.bindings, memo).pruned()
        return self._fns[key]

    def _leaf(self, node):
        var = self.leaf_of(node)
        if var is None:
            return None
        return self.reads.get(var, var)

    def _target(self, node):
        while isinstance(node, ir.Ref):
            node = self.bindings[node.name].value
        return node

    def values_of(self, leaf) -> tuple:
        values = leaf.values
        if values is None:
            raise CompileError(None, f"the value set of `{leaf.name}` is not finite")
        return values

    # ------------------------------------------------------------ linear reads

    def linear(self, node, encoding: str, basis: tuple | None = None) -> Linear:
        """A linear read computing `node` as `encoding` ("cat" over `basis`, "num", or "vec"),
        materialising it first when no linear map can compute it."""
        fn = self.fn(node)
        try:
            form = self._linear_form(fn, encoding, basis)
            if form is not None:
                return form
            var = self.materialise(node, encoding if encoding != "vec" else "cat", basis)
            form = self._linear_form(F.Fn((var,), lambda env: env[var]), encoding, basis)
            if form is None:
                # a value set no encoding holds (a "number" that can also be a string, as
                # `"0" * 0` makes one): refused, where the weights' assembly would crash
                raise CompileError(node, f"its values cannot be encoded as {encoding}")
            return form
        except TooLarge as exc:
            where = getattr(node, "span", None) or output_span(self.program)
            raise RaspError([Diagnostic("E306", str(exc), where, "lower @maxlen or the "
                                        "number of values this s-op ranges over")],
                            self.program.source) from None

    def _linear_form(self, fn: F.Fn, encoding, basis) -> Linear | None:
        form = self._raw_linear_form(fn, encoding, basis)
        return expand(form) if form is not None else None

    def _raw_linear_form(self, fn: F.Fn, encoding, basis) -> Linear | None:
        leaves = fn.leaves
        width = 1 if encoding == "num" else len(basis)
        enc = (lambda v: np.array([float(v)])) if encoding == "num" else \
            (lambda v: _onehot(basis, v))
        if not leaves:
            return Linear({}, enc(fn.call({})), width)
        if len(leaves) == 1 and leaves[0].kind == "cat":
            var = leaves[0]
            sized(var.width * width, f"a linear read ({var.width:,} values × {width:,})")
            rows = np.zeros((var.width, width))
            for i, value in enumerate(var.values):
                try:
                    rows[i] = enc(fn.call({var: value}))
                except (F.Undefined, KeyError):
                    pass   # never reached at run time
            return Linear({var: rows}, np.zeros(width), width)
        if len(leaves) == 1 and leaves[0].kind == "vec" and encoding == "vec":
            sized(width * width, f"a linear read ({width:,} × {width:,})")
            return Linear({leaves[0]: np.eye(width)}, np.zeros(width), width)
        if encoding == "num" and all(v.kind == "num" for v in leaves):
            return self._affine(fn, leaves)
        return None

    def _affine(self, fn: F.Fn, leaves) -> Linear | None:
        """Coefficients of `fn` if it is affine in its numerical leaves: by construction
        (sums and constant multiples), or checked on every combination of their value sets
        (so `round(x * 11)` of x in {k/11} is the linear 11·x). Never by sampling: a function
        like `a == 0 and b == 0` looks constant on most samples."""
        if fn.affine is not None and set(fn.affine[0]) <= set(leaves):
            coefficients, c = fn.affine
            return Linear({v: np.array([[coefficients.get(v, 0.0)]]) for v in leaves},
                          np.array([c]), 1)
        if any(v.values is None for v in leaves) or \
                math.prod(len(v.values) for v in leaves) > AFFINE_CHECK:
            return None
        solution = _affine_fit(fn)
        if solution is None:
            return None
        c, coefficients = solution[0], solution[1:]
        return Linear({v: np.array([[a]]) for v, a in zip(leaves, coefficients)},
                      np.array([c]), 1)

    # ------------------------------------------------------------ MLP blocks

    def materialise(self, node, encoding: str, basis: tuple | None = None) -> Var:
        """Give an expression its own subspace in the wanted encoding, computed by an MLP."""
        t = self.type_of(node)
        if encoding == "cat" or basis is not None:
            values = basis if basis is not None else _finite(t, node)
            out_kind = "cat"
        else:
            values = t.values if T.is_sop(t) else None
            out_kind = "num"
        held = self.held.get(node)
        if held is not None and held.kind == out_kind and (out_kind == "num"
                                                           or held.values == values):
            return held
        if (node, out_kind, values) in self.encoded:
            return self.encoded[(node, out_kind, values)]
        fn = self._fitting_fn(node)
        time = _next(max((leaf.time for leaf in fn.leaves), default=0), 0)
        name = node.name if isinstance(node, ir.Ref) else "map"
        var = self.new_var(name, out_kind, values, time)
        self.blocks.append(Block(fn, var, time, node))
        self.encoded[(node, out_kind, values)] = var
        if held is None:         # a head keeps its own output as what reads the node
            self.held[node] = var
            self._generation += 1
        return var

    def _fitting_fn(self, node) -> F.Fn:
        """The function of `node` in a form one MLP computes: at most one numerical input
        (numbers are read by discretising them), and a lookup table of bounded size. Where
        that fails, numerical inputs get categorical copies first, then sub-expressions get
        their own variables (each costs an MLP layer, so only when needed)."""
        fn = self.fn(node)
        if self._fits(fn) and self._units(fn) <= SPLIT_UNITS:
            return fn
        numeric = [leaf for leaf in fn.leaves if leaf.kind == "num"]
        if len(numeric) > 1 and self._virtualise_affine(node):
            fn = self.fn(node)
            numeric = [leaf for leaf in fn.leaves if leaf.kind == "num"]
            if self._fits(fn) and self._units(fn) <= SPLIT_UNITS:
                return fn
        for child in self._split_points(node, len(fn.leaves)):
            t = self.type_of(child)
            self.materialise(child, "cat" if _known(t) else "num")
        fn = self.fn(node)
        numeric = [leaf for leaf in fn.leaves if leaf.kind == "num"]
        if len(numeric) > 1:
            for leaf in numeric:
                self.discretise(leaf)
            fn = self.fn(node)
            if self._fits(fn) and self._units(fn) <= SPLIT_UNITS:
                return fn
        fn = self.fn(node)
        if not self._fits(fn):
            raise CompileError(node, "this element-wise expression combines several numbers "
                               "non-linearly; only one numerical input per map can be "
                               "compiled exactly")
        return fn

    def _virtualise_affine(self, node) -> bool:
        """Give each sub-expression that is an affine function of two or more numbers (a
        difference of counts, say) a virtual variable: an MLP can discretise an affine read
        of the residual as easily as a single dimension."""
        found, stack = False, [node]
        while stack:
            current = stack.pop()
            for child in self._elementwise_children(current):
                sub = self.fn(child)
                numeric = [leaf for leaf in sub.leaves if leaf.kind == "num"]
                t = self.type_of(child)
                if len(numeric) >= 2 and len(numeric) == len(sub.leaves) and T.is_sop(t) \
                        and t.values is not None:
                    form = self._affine(sub, sub.leaves)
                    if form is not None:
                        time = max(leaf.time for leaf in sub.leaves)
                        var = self.new_var("affine", "num", t.values, time,
                                           affine=expand(form))
                        self.held[child] = var
                        found = True
                        continue
                if len(numeric) >= 2:
                    stack.append(child)
        if found:
            self._generation += 1     # once: sibling sub-expressions do not read each other
        return found

    def discretise(self, var: Var) -> Var:
        """A categorical copy of a numerical variable (one-hot over its finite value set);
        every later read of `var` goes through the copy."""
        raw = [v for v, read in self.reads.items() if v is var or var in read.leaves]
        source = raw[0] if raw else var
        if source in self.copies:
            return self.copies[source]
        if source.values is None:
            raise CompileError(None, f"`{source.name}` has no finite value set")
        copy = self.new_var(source.name + "_cat", "cat", source.values,
                            _next(source.time, 0))
        self.blocks.append(Block(F.Fn((source,), lambda env: env[source]), copy, copy.time,
                                 None))
        self.copies[source] = copy
        read = self.reads.get(source, F.Fn((source,), lambda env: env[source]))
        leaves = tuple(copy if leaf is source else leaf for leaf in read.leaves)
        self.reads[source] = F.Fn(leaves, lambda env, read=read: read.call(
            {**env, source: env[copy]}))
        self._generation += 1
        return copy

    def _units(self, fn: F.Fn) -> int:
        units = 1
        for leaf in fn.leaves:
            units *= len(leaf.values) if leaf.kind != "num" else 2 * len(leaf.values) - 1
        return units

    def _split_points(self, node, n_leaves: int) -> list:
        """The largest sub-expressions of `node` that read fewer inputs than `node` does."""
        points, stack = [], [node]
        while stack:
            current = stack.pop()
            if not (F.is_elementwise(current) or isinstance(current, ir.Ref)
                    and F.is_elementwise(self._target(current))):
                continue
            for child in self._elementwise_children(current):
                leaves = self.fn(child).leaves
                if not leaves:
                    continue
                if len(leaves) < n_leaves:
                    points.append(child)
                else:
                    stack.append(child)
        return points

    def _elementwise_children(self, node):
        node = self._target(node) if isinstance(node, ir.Ref) and F.is_elementwise(
            self._target(node)) else node
        return [c for c in node.children()
                if F.is_elementwise(c) or isinstance(c, (ir.Ref, ir.SelectorWidth, ir.Aggregate))]

    def _fits(self, fn: F.Fn) -> bool:
        if sum(leaf.kind == "num" for leaf in fn.leaves) > 1:
            return False
        units = 1
        for leaf in fn.leaves:
            if leaf.values is None:
                return False
            units *= len(leaf.values) if leaf.kind != "num" else 2 * len(leaf.values) - 1
        return units <= MAX_MLP_UNITS

    def dense_mlp(self, node: ir.Mlp) -> Var:
        """An `mlp` node as an MLP block of its own weights. Exact where the model's activation
        is the node's (see `activation_of`); its units are off at the BOS position."""
        if node.activation != self.activation:
            raise CompileError(node, f"a {node.activation} mlp in a model whose activation is "
                               f"{self.activation}")
        parts = []
        for inp in node.inputs:
            t = self.type_of(inp)
            if isinstance(t, T.Num):
                parts.append(self.linear(inp, "num"))
            else:
                basis = _finite(t, inp)
                parts.append(self.linear(inp, "vec" if isinstance(t, T.Vec) else "cat", basis))
        read = _concat_linear(parts)
        matrix = lambda m: np.asarray(m.values, dtype=np.float64)      # noqa: E731
        W_in, W_out = matrix(node.W_in), matrix(node.W_out)
        b_in, b_out = matrix(node.b_in).reshape(-1), matrix(node.b_out).reshape(-1)
        time = _next(max((v.time for v in read.rows), default=0), 0)
        out_t = self.type_of(node)
        var = self.new_var(_name_of(node, self.bindings), "vec", T.basis_of(out_t), time)
        self.dense.append(Dense(node, read, W_in, b_in, W_out, b_out, var, time))
        self.held[node] = var
        return var

    # ------------------------------------------------------------ attention

    def selector_atoms(self, sel) -> list[Atom]:
        """A boolean selector as a conjunction of atoms (each a table over one query variable
        and one key variable); `or` is compiled when both sides read the same variables."""
        if isinstance(sel, ir.Ref):
            return self.selector_atoms(self.bindings[sel.name].value)
        if isinstance(sel, ir.SelectAnd):
            return self.selector_atoms(sel.left) + self.selector_atoms(sel.right)
        if isinstance(sel, ir.SelectNot):
            atoms = self.selector_atoms(sel.operand)
            if len(atoms) != 1:
                raise CompileError(sel, "`not` of a combination of selects over different "
                                   "s-ops cannot be compiled exactly")
            a = atoms[0]
            return [Atom(a.query, a.key, 1.0 - a.table)]
        if isinstance(sel, ir.SelectOr):
            left, right = self.selector_atoms(sel.left), self.selector_atoms(sel.right)
            if len(left) == len(right) == 1 and left[0].query is right[0].query \
                    and left[0].key is right[0].key:
                return [Atom(left[0].query, left[0].key, np.maximum(left[0].table,
                                                                    right[0].table))]
            raise CompileError(sel, "`or` of selects over different s-ops cannot be compiled "
                               "exactly", )
        if isinstance(sel, ir.Select):
            return [self.atom(sel)]
        raise CompileError(sel, f"{type(sel).__name__} is not a boolean selector")

    def side(self, node) -> tuple[Var | None, tuple, tuple]:
        """(variable or None for a constant, the side's value at each of that variable's values
        as a column (compiler/vectorised.py), those values) for one side of a select; sides that
        are not functions of one categorical variable are materialised as categorical
        variables first."""
        fn = self.fn(node)
        if not fn.leaves:
            values, undefined = fn.column()
            return None, (values.reshape(1), None if undefined is None else
                          undefined.reshape(1)), (None,)
        if len(fn.leaves) == 1 and fn.leaves[0].kind == "cat":
            return fn.leaves[0], fn.column(), fn.leaves[0].values
        var = self.materialise(node, "cat")
        return var, (V.atoms(var.values), None), var.values

    def atom(self, sel: ir.Select) -> Atom:
        if isinstance(sel.predicate, ir.Matrix):
            raise CompileError(sel, "a score selector inside a boolean combination")
        kvar, keys, _ = self.side(sel.keys)
        qvar, queries = None, None       # None: query-independent, one row over the keys
        if sel.queries is not None:
            qvar, queries, _ = self.side(sel.queries)
        rows = 1 if queries is None else len(queries[0])
        message = too_large(rows * len(keys[0]), f"the table of this selector ({rows:,} query "
                            f"× {len(keys[0]):,} key values)")
        if message is not None:       # before the table (and its broadcast operands) exist
            raise RaspError([Diagnostic("E306", message, sel.span, "lower @maxlen or the "
                                        "number of values the keys and queries range over")],
                            self.program.source)
        return Atom(qvar, kvar, F.predicate_table(sel.predicate, keys, queries))

    def aggregate(self, node: ir.Aggregate) -> Var:
        sel_t = self.type_of(node.selector)
        value_t = self.type_of(node.values)
        soft = isinstance(sel_t, T.Score) or self.program.attention == "softmax"
        if soft:
            return self._soft_aggregate(node, value_t)
        atoms = self.selector_atoms(node.selector)
        out_t = self.type_of(node)
        if isinstance(value_t, T.Num):
            value = self.linear(node.values, "num")
            default = node.default if node.default is not None else 0
            widths = self._known_widths(atoms)
            if widths is not None and default == 0 and value_t.values is not None \
                    and set(value_t.values) <= {0, 1} and self._multiplied(node):
                return self._count_head(node, atoms, value, widths)
            out = ("num", out_t.values, default)
        elif isinstance(value_t, T.Cat):
            basis = _finite(out_t, node)
            value = self.linear(node.values, "cat", basis)
            default = node.default
            if default is None and self.program.compat == "rasp0.1":
                default = 0
            out = ("cat", basis, default)
        else:
            raise CompileError(node, "hard attention over a vector")
        return self._head(node, "mean", atoms, [], value, out)

    def _head(self, node, mode, atoms, scores, value, out) -> Var:
        kind, values, default = out
        inputs = [a.query for a in atoms] + [a.key for a in atoms] + list(value.rows if value
                                                                            else [])
        inputs += [v for term in scores for v in term[:2]]
        time = _next(max((v.time for v in inputs if v is not None), default=0), 1)
        var = self.new_var(_name_of(node, self.bindings), kind, values, time, bos=default)
        self.heads.append(Head(node, mode, atoms, scores, value, var, time))
        self.held[node] = var
        return var

    def _multiplied(self, node) -> bool:
        """Whether a mean is multiplied by something (a count being computed, as in
        prefix_count): then writing count / D costs no MLP, where the mean would need one."""
        if self._parents is None:
            self._parents = {}
            for b in self.program.bindings:
                for n in ir.walk(b.value):
                    for c in n.children():
                        self._parents.setdefault(id(c), []).append(n)
            if self.program.output is not None:
                for n in ir.walk(self.program.output):
                    for c in n.children():
                        self._parents.setdefault(id(c), []).append(n)
        users = list(self._parents.get(id(node), []))
        for b in self.program.bindings:
            if b.value is node:
                users += [p for n in self._refs(b.name) for p in self._parents.get(id(n), [])]
        return any(isinstance(u, ir.BinaryOp) and u.op == "*" for u in users)

    def _refs(self, name):
        roots = [b.value for b in self.program.bindings]
        if self.program.output is not None:
            roots.append(self.program.output)
        return [n for r in roots for n in ir.walk(r) if isinstance(n, ir.Ref) and n.name == name]

    def _known_widths(self, atoms) -> list | None:
        """How many keys each query index selects, when that depends on the index alone:
        every select compares indices (or constants) and only keys up to the query can be
        selected (under @causal, or because the predicate says so)."""
        indices = self.source(ir.Indices())
        if any(v is not None and v is not indices for a in atoms for v in (a.query, a.key)):
            return None
        n = self.maxlen
        joint = np.ones((n, n))
        for a in atoms:
            rows = a.table if a.query is not None else np.repeat(a.table[:1], n, axis=0)
            joint *= rows if a.key is not None else np.repeat(rows[:, :1], n, axis=1)
        later = np.triu(joint, k=1)
        if not self.program.causal and later.any():
            return None
        return [int(joint[i, :i + 1].sum()) for i in range(n)]

    def _count_head(self, node, atoms, value, widths) -> Var:
        """A mean of 0/1 values whose selector width is known from the query index: the BOS
        sink takes the weight of D - w keys, so the head writes count / D, a value set of
        only D = maxlen + 1 values, and the mean is count / w."""
        D = self.maxlen + 1
        values = tuple(c / D for c in range(D))
        var = self._head(node, "count", atoms, [], value, ("num", values, 0.0))
        indices = self.source(ir.Indices())
        self.heads[-1].sink = (indices, np.log(D - np.array(widths, dtype=np.float64)))
        self.heads[-1].time = var.time = max(var.time, 1)

        def mean(env):
            w = widths[env[indices]]
            return round(env[var] * D) / w if w else 0

        def means(grid):        # `mean` on a whole grid: it is read by every table of counts
            w = np.array(widths, dtype=np.int64)[grid.leaf(indices)[0]]
            with np.errstate(divide="ignore", invalid="ignore"):
                out = np.rint(grid.leaf(var)[0] * D).astype(np.int64) / w   # round: half even
            if (w == 0).any():          # no key: the int 0, as `mean` gives
                out = out.astype(object)
                out[np.broadcast_to(w == 0, out.shape)] = 0
            return out, None
        self.reads[var] = F.Fn((var, indices), mean, vector=means)
        return var

    def selector_width(self, node: ir.SelectorWidth) -> Var:
        atoms = self.selector_atoms(node.selector)
        values = tuple(1.0 / (w + 1) for w in range(self.maxlen + 1))
        var = self._head(node, "width", atoms, [], None, ("num", values, 1.0))
        self.reads[var] = F.Fn((var,), lambda env: round(1 / env[var]) - 1)
        return var

    def _soft_aggregate(self, node, value_t) -> Var:
        scores = self.score_terms(node.selector, 1.0)
        out_t = self.type_of(node)
        if isinstance(value_t, T.Num):
            value, out = self.linear(node.values, "num"), ("num", None, 0.0)
        else:
            basis = out_t.basis
            encoding = "vec" if isinstance(value_t, T.Vec) else "cat"
            value = self.linear(node.values, encoding, basis)
            out = ("vec", basis, None)
        return self._head(node, "softmax", [], scores, value, out)

    def score_terms(self, sel, factor: float) -> list:
        """A score selector as a sum of bilinear terms (query var, key var, matrix)."""
        if isinstance(sel, ir.Ref):
            return self.score_terms(self.bindings[sel.name].value, factor)
        if isinstance(sel, ir.ScoreSum):
            return [t for term in sel.terms for t in self.score_terms(term, factor)]
        if isinstance(sel, ir.ScoreScale):
            return self.score_terms(sel.operand, factor * sel.factor)
        if isinstance(sel, ir.Select) and isinstance(sel.predicate, ir.Matrix):
            kvar = self._vector_side(sel.keys)
            matrix = np.asarray(sel.predicate.values, dtype=np.float64)
            if sel.queries is None:
                return [(None, kvar, factor * matrix[None, :])]
            qvar = self._vector_side(sel.queries)
            return [(qvar, kvar, factor * matrix)]
        scale = factor * self.program.hard_scale
        t = self.type_of(sel)
        if isinstance(t, T.Sel):
            atoms = self.selector_atoms(sel)
            return [(a.query, a.key, scale * a.table) for a in atoms] if len(atoms) == 1 else \
                _conjunction_error(sel)
        if isinstance(sel, ir.Select):     # a numeric op, or a predicate over vector bases
            kvar = self._vector_side(sel.keys)
            pred, unit = self._op_values(sel.predicate)
            scale = factor * unit
            if sel.queries is None:
                row = np.array([[pred(k) for k in kvar.values]])
                return [(None, kvar, scale * row)]
            qvar = self._vector_side(sel.queries)
            table = np.array([[pred(k, q) for k in kvar.values] for q in qvar.values])
            return [(qvar, kvar, scale * table)]
        raise CompileError(sel, f"{type(sel).__name__} in a score")

    def _vector_side(self, node) -> Var:
        t = self.type_of(node)
        if isinstance(t, T.Vec):
            fn = self.fn(node)
            if len(fn.leaves) == 1 and isinstance(fn.leaves[0], Var):
                return fn.leaves[0]
            raise CompileError(node, "a vector that is not held by one variable")
        var, _, _ = self.side(node)
        if var is None:
            raise CompileError(node, "a constant side of a score selector")
        if var.values != T.basis_of(t):
            var = self.materialise(node, "cat", T.basis_of(t))
        return var

    # ------------------------------------------------------------ output

    def output(self, node) -> tuple[Linear, str, tuple | None]:
        t = self.type_of(node)
        if isinstance(self._target(node), (ir.Predict, ir.LogitsSum, ir.Project)):
            return self.logits(node), "logits", t.basis if isinstance(t, T.Vec) else t.out
        if isinstance(t, T.Num):
            return self.linear(node, "num"), "num", None
        if isinstance(t, T.Cat):
            basis = _finite(t, node)
            if not basis:
                raise CompileError(node, "the output has no possible value: every input is a "
                                   "runtime error")
            return self.linear(node, "cat", basis), "cat", basis
        if isinstance(t, T.Vec) and t.dist:     # a distribution decodes to its argmax
            return self.linear(node, "vec", t.basis), "logits", t.basis
        if isinstance(t, T.Vec):
            return self.linear(node, "vec", t.basis), "vec", t.basis
        return self.logits(node), "logits", t.basis if isinstance(t, T.Vec) else t.out

    def logits(self, node) -> Linear:
        """Logits (and softmax/sigmoid of logits, decoded by argmax) are linear reads."""
        if isinstance(node, ir.Ref):
            return self.logits(self.bindings[node.name].value)
        if isinstance(node, ir.Predict):
            return self.logits(node.logits)
        if isinstance(node, ir.LogitsSum):
            parts = [self.logits(t) for t in node.terms]
            return _sum_linear(parts)
        if isinstance(node, ir.Project):
            pred = node.predicate
            out = self.program.vocab
            if isinstance(pred, ir.Matrix):
                # a table's own labels: a compiled model's program has logits over its
                # output values, not over its input vocabulary
                out = pred.cols if pred.cols is not None else pred.rows
            if not isinstance(pred, ir.Matrix):
                f, scale = self._op_values(pred)
            if node.operand is None:
                if isinstance(pred, ir.Matrix):
                    row = np.asarray(pred.values, dtype=np.float64)
                else:
                    row = scale * np.array([f(o) for o in out])
                return Linear({}, row, len(out))
            var = self._vector_side(node.operand)
            if isinstance(pred, ir.Matrix):
                matrix = np.asarray(pred.values, dtype=np.float64)
            else:
                matrix = scale * np.array([[f(i, o) for o in out] for i in var.values])
            return Linear({var: matrix}, np.zeros(len(out)), len(out))
        raise CompileError(node, f"{type(node).__name__} cannot produce logits")


    def _op_values(self, pred) -> tuple:
        """(f giving an op's value as a float, its scale): a numeric op as written, a
        predicate's truth lifted by @hard_scale."""
        if T.numeric_op(pred):
            return F.numeric(pred), 1.0
        truth = F.predicate(pred)
        return (lambda *a: 1.0 if truth(*a) else 0.0), self.program.hard_scale


def _onehot(basis, value) -> np.ndarray:
    out = np.zeros(len(basis))
    out[index_of(basis, value)] = 1.0
    return out


def _known(t) -> bool:
    return (t.values if T.is_sop(t) else T.basis_of(t)) is not None


def _finite(t, node) -> tuple:
    values = t.values if T.is_sop(t) else T.basis_of(t)
    if values is None:
        raise CompileError(node, "its value set is not finite (declare @vocab and @maxlen)")
    return values


def _name_of(node, bindings) -> str:
    for b in bindings.values():
        if b.value is node:
            return b.name
    return type(node).__name__.lower()


def expand(linear: Linear) -> Linear:
    """The same read with virtual variables replaced by their affine definitions."""
    if not any(v.affine is not None for v in linear.rows):
        return linear
    rows: dict = {}
    const = linear.const.copy()
    for var, r in linear.rows.items():
        if var.affine is None:
            rows[var] = rows[var] + r if var in rows else r
            continue
        definition = var.affine            # (1 output) over real variables
        const = const + definition.const[0] * r[0]
        for real, coefficient in definition.rows.items():
            contribution = coefficient @ r     # (real.width, out)
            rows[real] = rows[real] + contribution if real in rows else contribution
    return Linear(rows, const, linear.width)


def _concat_linear(parts: list[Linear]) -> Linear:
    """Reads side by side: the columns of each part after those of the parts before it."""
    width = sum(p.width for p in parts)
    rows: dict = {}
    const = np.zeros(width)
    start = 0
    for p in parts:
        for var, r in p.rows.items():
            if var not in rows:
                sized(var.width * width, f"a linear read ({var.width:,} values × {width:,})")
                rows[var] = np.zeros((var.width, width))
            rows[var][:, start:start + p.width] += r
        const[start:start + p.width] = p.const
        start += p.width
    return Linear(rows, const, width)


def _sum_linear(parts: list[Linear]) -> Linear:
    rows: dict = {}
    for p in parts:
        for var, r in p.rows.items():
            rows[var] = rows[var] + r if var in rows else r
    return Linear(rows, sum(p.const for p in parts), parts[0].width)


def _conjunction_error(sel):
    raise CompileError(sel, "a combination of selectors inside a score sum")


def _infer(program, ctx):
    ctx.bindings = {}
    problems = []
    for b in program.bindings:
        try:
            ctx.bindings[b.name] = T.type_of(b.value, ctx)
        except T.TypeIssue as issue:
            problems.append(issue)
    return ctx.bindings, problems


def output_span(program: ir.Program):
    """Where a problem of the whole model is reported: @output, or the binding it names when
    the output node itself carries no position (`x = indices; @output x;`)."""
    span = getattr(program.output, "span", None)
    if span is None:
        span = next((b.span for b in program.bindings if b.value == program.output), None)
    return span or program.output_span


def plan(program: ir.Program, maxlen: int, types: dict | None = None) -> Plan:
    """Materialise, schedule and size every block the program's output needs. Raises
    RaspError with an E401 for every binding the output needs that cannot be planned."""
    try:
        return _plan(program, maxlen, types)
    except CompileError as exc:
        # list every binding that fails, not only the first one met
        problems = _every_problem(program, maxlen) or [_diagnostic(exc.node, exc.reason)]
        raise RaspError(problems, program.source) from None


def _plan(program: ir.Program, maxlen: int, types: dict | None) -> Plan:
    planner = Planner(program, maxlen, types)
    if program.output is None:
        raise CompileError(None, "the program has no @output")
    output, kind, values = planner.output(program.output)
    layers = max([(v.time + 1) // 2 for v in planner.vars] + [0])
    return Plan(planner.vars, planner.heads, planner.blocks, output, None, kind, values, layers,
                planner.dense, "gelu_new" if planner.activation == "gelu" else "relu")


def _every_problem(program: ir.Program, maxlen: int) -> list[Diagnostic]:
    """Plan each binding the output needs on its own, so that every failing one is listed."""
    problems, seen = [], set()
    needed = {n.name for n in needed_nodes(program) if isinstance(n, ir.Ref)}
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
                problems.append(_diagnostic(node, exc.reason))
    return problems


def _diagnostic(node, reason: str) -> Diagnostic:
    return Diagnostic("E401", f"cannot be compiled exactly: {reason}", getattr(node, "span", None))


def _affine_fit(fn: F.Fn) -> np.ndarray | None:
    """[c, a_1, …] with fn = c + Σ a_i·leaf_i on every combination of its leaves' values, or
    None (also where fn is undefined somewhere or not a number)."""
    values, undefined = fn.column()
    if undefined is not None and undefined.any():
        return None
    if values.dtype.kind in "bif":
        ys = values.astype(np.float64).ravel()
    else:
        try:
            ys = np.array([float(v) for v in values.ravel().tolist()])
        except (TypeError, ValueError):
            return None
    axes = [np.array([float(v) for v in leaf.values]) for leaf in fn.leaves]
    xs = np.stack([np.ones(ys.size)] + [g.ravel() for g in np.meshgrid(*axes, indexing="ij")],
                  axis=1)
    # A function that is not affine on a part of the grid is not affine on all of it, so a
    # spread-out part (every k-th point) can reject early; acceptance needs every point.
    step = max(1, ys.size // 256)
    for rows in ((slice(None, None, step), slice(None)) if step > 1 else (slice(None),)):
        solution, *_ = np.linalg.lstsq(xs[rows], ys[rows], rcond=None)
        if not np.allclose(xs[rows] @ solution, ys[rows], rtol=1e-9, atol=1e-9):
            return None
    return solution
