"""Lark tree to IR program: runs the surface language's macros (def, for, comprehensions, meta
values) the way RASP 0.1 does, and builds a typed IR node for every s-op and selector.

Every statement is elaborated even after an error, so a file reports all of its problems; a
name whose definition failed is bound to POISON, which silences follow-on errors.
"""

from __future__ import annotations

import ast
import difflib
import math
import warnings
from typing import Callable

import attrs
import lark

from rasp_ir import limits
from rasp_ir import nodes as ir
from rasp_ir import ops
from rasp_ir import types as T
from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.names import RESERVED
from rasp_ir.nodes import Span

from .builtins import Args
from .values import (POISON, Builtin, Env, Function, Issue, PoisonError, Term, describe_value,
                     is_atom)

_ARITH = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%", "pow": "^"}
_ANY = object()


class Elaborator:
    """Elaborates one file (a program or a library) into IR bindings and directives."""

    def __init__(self, file: str, source: str, base: Env | None, origin: str | None = None,
                 search_dirs: tuple = (), library: dict | None = None, *,
                 loader: Callable[[str, tuple, Span | None], tuple[dict, list]]):
        """`loader(name, search_dirs, span)` reads the library a `load` names: its exported
        names and its bindings (given by the caller, since reading a library elaborates it)."""
        self.file, self.source, self.origin = file, source, origin
        # the top-level names this file may not bind (the default library's own file defines
        # two of them: `rasp fmt` and `rasp check` read it as a program)
        self.reserved = RESERVED
        self.search_dirs = search_dirs
        self.loader = loader
        self.env = Env(parent=base)
        self.bindings: list[ir.Binding] = []
        self.library: dict[str, ir.Binding] = dict(library or {})
        self.lib_rank: dict[str, int] = {name: i for i, name in enumerate(self.library)}
        # what a program records as bound before its own names (the passes keep clear of them)
        self.predefined: set[str] = set(self.library) | (base.names() if base else set())
        self.taken: set[str] = set(self.predefined)
        self.diagnostics: list[Diagnostic] = []
        self.ctx = T.Context()
        self.directives: dict = {}
        self.loads: list[str] = []
        self.output: ir.Node | None = None
        self.output_span: Span | None = None
        self.expects: list[ir.Expect] = []
        self.call_stack: list[tuple[Function, Span | None]] = []
        self.side_tables = None
        self.started = False
        self.expanded = 0           # loop iterations and built elements (limits.MAX_EXPANSION)
        self.current_file = file    # the file whose tree is being elaborated (changes in calls)

    # ------------------------------------------------------------ top level

    def run(self, tree: lark.Tree) -> list:
        """Elaborate every item; returns the values of expression statements (for the REPL)."""
        results = []
        for item in tree.children:
            try:
                if item.data == "directive":
                    self.directive(item)
                else:
                    results.append(self.statement(item, self.env, top=True))
            except Issue as issue:
                self.report(issue, item)
            except PoisonError:
                pass
            except RaspError as exc:
                self.diagnostics.extend(exc.diagnostics)
            finally:
                self._warnings(item)
        return results

    def _warnings(self, item):
        """The typing rules' warnings on `item` (they do not stop its typing) as diagnostics."""
        for issue in self.ctx.warnings:
            self.report(Issue(issue.code, issue.message, getattr(issue.node, "span", None),
                              issue.hint), item)
        self.ctx.warnings.clear()

    def report(self, issue: Issue, where):
        span = issue.span or self.span(where)
        self.diagnostics.append(Diagnostic(issue.code, issue.message, span, issue.hint,
                                           issue.note))

    def span(self, tree) -> Span | None:
        meta = getattr(tree, "meta", None)
        if isinstance(tree, lark.Token):
            return Span(self.current_file, tree.line, tree.column, tree.end_line,
                        tree.end_column)
        if meta is None or getattr(meta, "empty", True):
            return None
        return Span(self.current_file, meta.line, meta.column, meta.end_line, meta.end_column)

    def program(self, extra_roots: tuple = ()) -> ir.Program:
        """The finished program: library bindings it uses first (in library order), then its own."""
        used = self._used_library(extra_roots)
        own = list(self.bindings)
        lib = sorted((self.library[n] for n in used), key=lambda b: self.lib_rank[b.name])
        d = self.directives
        return ir.Program(
            bindings=tuple(lib + own), output=self.output, vocab=d.get("vocab"),
            vocab_name=d.get("vocab_name"), maxlen=d.get("maxlen"), causal=d.get("causal", False),
            bos=d.get("bos"), attention=d.get("attention", "hard"),
            hard_scale=d.get("hard_scale", 1e4), compat=d.get("compat"),
            loads=tuple(self.loads), expects=tuple(self.expects), source=self.source,
            predefined=frozenset(self.predefined), output_span=self.output_span)

    def _used_library(self, extra_roots=()) -> set[str]:
        roots = [b.value for b in self.bindings] + list(extra_roots)
        roots += [e.subject for e in self.expects]
        if self.output is not None:
            roots.append(self.output)
        used, stack = set(), roots
        while stack:
            for n in ir.walk(stack.pop()):
                if isinstance(n, ir.Ref) and n.name in self.library and n.name not in used:
                    used.add(n.name)
                    stack.append(self.library[n.name].value)
        return used

    # ------------------------------------------------------------ types

    def typed(self, node: ir.Node, span: Span | None = None) -> Term:
        """Wrap a new node with its type, turning a failed typing rule into an Issue."""
        try:
            hash(node)
        except TypeError:           # a list or dict where a builtin takes a constant
            raise Issue("E205", "an argument that must be a constant (a number, a string, "
                        "True/False/None) is a list, a dict or a set", span) from None
        try:
            return Term(node, T.type_of(node, self.ctx))
        except T.TypeIssue as issue:
            where = getattr(issue.node, "span", None) or span
            raise Issue(issue.code, issue.message, where, issue.hint) from None

    def use(self, value):
        """A value read from a scope: library bindings join the program on first use."""
        if isinstance(value, Term) and value.lib is not None:
            self._add_library(value.lib)
            return Term(value.node, T.type_of(value.node, self.ctx))
        if isinstance(value, Term) and isinstance(value.node, (ir.Tokens, ir.Indices)):
            return Term(value.node, T.type_of(value.node, self.ctx))
        return value

    def _add_library(self, binding: ir.Binding):
        if binding.name in self.ctx.bindings:
            return
        for n in ir.walk(binding.value):
            if isinstance(n, ir.Ref) and n.name in self.library:
                self._add_library(self.library[n.name])
        self.ctx.bindings[binding.name] = T.type_of(binding.value, self.ctx)

    # ------------------------------------------------------------ directives

    def directive(self, tree):
        token, body = tree.children
        name = token.value[1:]
        span = self.span(tree)
        setup = {"vocab", "maxlen", "causal", "bos", "attention", "hard_scale", "compat"}
        if name in setup and self.started:
            raise Issue("E110", f"@{name} must come before the first statement", span,
                        "move the program's directives to the top of the file")
        d = self.directives
        if name == "causal":
            d["causal"] = True
            return
        if body is None:
            raise Issue("E110", f"@{name} needs a value", span)
        if name == "vocab":
            if body.data == "dir_assign":
                var, expr = body.children
                value = _vocab_tokens(self.meta(self.expr(expr, self.env), span, "@vocab"), span)
                d["vocab_name"] = var.value
                self.env.values[var.value] = list(value)
            else:
                value = _vocab_tokens(self.meta(self.expr(body, self.env), span, "@vocab"), span)
            vocab = tuple(_unique(value))
            if len(vocab) > limits.MAX_VOCAB:
                raise Issue("E243", f"@vocab has {len(vocab):,} tokens; the limit is "
                            f"{limits.MAX_VOCAB:,}", span,
                            note="rasp_ir/limits.py MAX_VOCAB; docs/limits.md")
            d["vocab"] = self.ctx.vocab = vocab
            return
        if body.data == "dir_assign":
            raise Issue("E110", f"@{name} does not take `name = …`", span)
        if name == "output":
            value = self.expr(body, self.env)
            if not isinstance(value, Term):
                raise Issue("E260", "@output must be an s-op, a vector or logits, got "
                            f"{describe_value(value)}", span)
            if isinstance(value.type, (T.Sel, T.Score)):
                raise Issue("E260", "@output is a selector; a program outputs one value per "
                            "position", span, "aggregate it, or output selector_width(...)")
            self.output, self.output_span = value.node, span
            return
        if name == "expect":
            self.expects.append(self.expect(body, span))
            return
        value = self.meta(self.expr(body, self.env), span, f"@{name}")
        if name == "maxlen":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_LEN:
                raise Issue("E110", f"@maxlen takes a positive integer (at most {MAX_LEN})", span)
            d["maxlen"] = self.ctx.maxlen = value
        elif name == "bos":
            # a token, as @vocab's are: a list or a mapping here once reached the type checker
            # (an unhashable program; found by the long fuzz run)
            if value is None or not isinstance(value, (str, int, float, bool)):
                raise Issue("E110", f"@bos takes a token, got {describe_value(value)}", span,
                            '@bos "<bos>";')
            d["bos"] = value
        elif name == "attention":
            if value not in ("hard", "softmax"):
                raise Issue("E110", '@attention is "hard" or "softmax"', span)
            d["attention"] = self.ctx.attention = value
        elif name == "hard_scale":
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise Issue("E110", "@hard_scale takes a finite number", span)
            d["hard_scale"] = float(value)
        elif name == "compat":
            if value != "rasp0.1":
                raise Issue("E110", 'the only compatibility mode is "rasp0.1"', span)
            d["compat"] = value
        else:
            known = "@vocab @maxlen @causal @bos @output @expect @attention @hard_scale @compat"
            raise Issue("E110", f"unknown directive @{name}", span, f"known directives: {known}")

    def expect(self, body, span) -> ir.Expect:
        shape_hint = 'write it as @expect program("input") == expected;'
        if body.data != "compare" or len(body.children) != 3 or body.children[1] != "==":
            raise Issue("E270", "@expect needs the form `program(input) == expected`", span,
                        shape_hint)
        call, _, expected_tree = body.children
        if call.data != "call" or call.children[1] is None or len(call.children[1].children) != 1:
            raise Issue("E270", "@expect's left side must apply a program to one input", span,
                        shape_hint)
        subject = self.expr(call.children[0], self.env)
        if not isinstance(subject, Term):
            raise Issue("E270", f"@expect applies {describe_value(subject)}, not a program", span)
        inp = _sequence(self.meta(self.expr(call.children[1].children[0], self.env), span, "input"))
        expected = self.meta(self.expr(expected_tree, self.env), span, "expected value")
        expected = _sequence(expected)
        for what, value in (("input", inp), ("expected value", expected)):
            if not _is_data(value):
                raise Issue("E270", f"@expect's {what} must be built of constants (strings, "
                            "numbers, lists)", span, shape_hint)
        if self.ctx.vocab is not None:
            bad = [t for t in inp if t not in self.ctx.vocab]
            if bad:
                raise Issue("E270", f"@expect input token {bad[0]!r} is not in @vocab", span)
        return ir.Expect(subject.node, tuple(inp), tuple(_freeze(expected)), span=span)

    def meta(self, value, span, what):
        if isinstance(value, (Term, Function, Builtin)):
            raise Issue("E205", f"{what} must be a constant, got {describe_value(value)}", span)
        return value

    # ------------------------------------------------------------ statements

    def statement(self, tree, env: Env, top: bool = False):
        kind = tree.data
        if top and kind != "load_stmt":
            self.started = True
        if kind == "expr_stmt":
            return self.expr(tree.children[0], env)
        if kind == "assign":
            self.assign(tree, env, top)
        elif kind == "def_stmt":
            name, params, body = tree.children
            self.bind_meta(name.value, Function(name.value, _names(params), body, env,
                                                    self.current_file),
                           env, top, self.span(name))
        elif kind == "for_stmt":
            self.for_loop(tree, env, top)
        elif kind == "load_stmt":
            self.load(tree, env, top)
        return None

    def assign(self, tree, env, top):
        targets, values_trees = (t.children for t in tree.children)
        span = self.span(tree)
        for t in targets:
            if t.data != "name":
                raise Issue("E109", "only names can be assigned to", self.span(t),
                            "to compare values use `==`")
        names = [t.children[0].value for t in targets]
        try:
            values = [self.expr(v, env) for v in values_trees]
            if len(values) == 1 and len(names) > 1:
                values = values[0]
                if not isinstance(values, (tuple, list)) or len(values) != len(names):
                    raise Issue("E240", f"cannot unpack {describe_value(values)} into "
                                f"{len(names)} names", span)
            elif len(values) != len(names):
                raise Issue("E240", f"{len(names)} names but {len(values)} values", span)
        except (Issue, PoisonError):
            for name in names:
                env.values[name] = POISON
            raise
        for name, target, value in zip(names, targets, values):
            self.bind(name, value, env, top, self.span(target), span)

    def check_reserved(self, name, span, top):
        if top and name in self.reserved and self.origin is None:
            raise Issue("E251", f"cannot set reserved name `{name}`", span,
                        "pick another name; `tokens` may be rebound to tokens_str/int/float/bool")

    def bind_meta(self, name, value, env, top, span):
        self.check_reserved(name, span, top)
        env.values[name] = value

    def bind(self, name, value, env, top, span, stmt_span=None):
        self.check_reserved(name, span, top)
        if isinstance(value, Term):
            node = value.node
            alias = isinstance(node, (ir.Tokens, ir.Indices, ir.Param)) or \
                (not top and isinstance(node, ir.Ref))
            if name == "tokens" and isinstance(node, ir.Tokens):
                alias = True
            if alias:
                env.values[name] = Term(node, value.type)
                return
            local = name if top else f"{self.call_stack[-1][0].name}_{name}"
            unique = self.fresh(local)
            binding = ir.Binding(unique, node, self.origin, span=stmt_span or span)
            self.bindings.append(binding)
            self.ctx.bindings[unique] = value.type
            ref = ir.Ref(unique, span=span)
            env.values[name] = Term(ref, value.type, binding if self.origin else None)
            return
        env.values[name] = value

    def fresh(self, name: str) -> str:
        unique, i = name, 2
        while unique in self.taken:
            unique, i = f"{name}_{i}", i + 1
        self.taken.add(unique)
        return unique

    def for_loop(self, tree, env, top):
        names_tree, iterable_tree, *body = tree.children
        names = _names(names_tree)
        iterable = self.expr(iterable_tree, env)
        for item in self.iterate(iterable, self.span(iterable_tree)):
            self.unpack_into(names, item, env, self.span(names_tree))
            for stmt in body:
                self.statement(stmt, env, top)

    def grow(self, count: int, span, what: str = "elements"):
        """Count `count` more loop iterations or built elements against limits.MAX_EXPANSION
        (for the whole program), before they are built; E243 past it."""
        self.expanded += count
        if self.expanded > limits.MAX_EXPANSION:
            raise Issue("E243", f"the program builds more than {limits.MAX_EXPANSION:,} "
                        f"{what} while it is elaborated ({count:,} here)", span,
                        "loops and comprehensions are expanded in full before the program runs",
                        "rasp_ir/limits.py MAX_EXPANSION; docs/limits.md")

    def iterate(self, value, span):
        if isinstance(value, (dict, list, tuple, str, range)):
            self.grow(len(value), span, "loop iterations and elements")
        if isinstance(value, Term):
            raise Issue("E242", "cannot loop over an s-op; its value is only known per input",
                        span, "loop over a list, a dict or range(...)")
        if isinstance(value, dict):
            return list(value)
        if isinstance(value, (list, tuple, str, range)):
            return list(value)
        raise Issue("E242", f"cannot loop over {describe_value(value)}", span)

    def unpack_into(self, names, item, env, span):
        if len(names) == 1:
            env.values[names[0]] = item
            return
        if not isinstance(item, (list, tuple)) or len(item) != len(names):
            raise Issue("E240", f"cannot unpack {describe_value(item)} into {len(names)} names",
                        span)
        for n, v in zip(names, item):
            env.values[n] = v

    def load(self, tree, env, top):
        name = _string_literal(tree.children[0], self.span(tree.children[0]))
        span = self.span(tree)
        exports, bindings = self.loader(name, self.search_dirs, span)
        for b in bindings:
            if b.name not in self.library:
                self.library[b.name] = b
                self.lib_rank[b.name] = len(self.lib_rank)
                self.taken.add(b.name)
        env.values.update(exports)
        if top and self.origin is None:
            self.predefined |= set(exports) | {b.name for b in bindings}
            if name not in self.loads:
                self.loads.append(name)

    # ------------------------------------------------------------ expressions

    def expr(self, tree, env: Env):
        method = getattr(self, "x_" + tree.data, None)
        if method is None:
            raise Issue("E101", f"`{tree.data}` is not an expression", self.span(tree))
        return method(tree, env)

    def x_name(self, tree, env):
        name = tree.children[0].value
        try:
            value = env.lookup(name)
        except KeyError:
            close = difflib.get_close_matches(name, sorted(env.names()), n=1)
            raise Issue("E250", f"undefined name `{name}`", self.span(tree),
                        f"did you mean `{close[0]}`?" if close else None) from None
        if value is POISON:
            raise PoisonError(name)
        value = self.use(value)
        if isinstance(value, Term) and isinstance(value.node, ir.Ref):
            return Term(attrs.evolve(value.node, span=self.span(tree)), value.type)
        return value

    def x_int(self, tree, env):
        return _integer(tree.children[0], self.span(tree))

    def x_float(self, tree, env):
        return float(tree.children[0].value)

    def x_string(self, tree, env):
        return _string_literal(tree.children[0], self.span(tree))

    def x_list(self, tree, env):
        self.grow(len(tree.children), self.span(tree))
        return [self.expr(c, env) for c in tree.children if c is not None]

    def x_set(self, tree, env):
        self.grow(len(tree.children), self.span(tree))
        return _unique(self.expr(c, env) for c in tree.children if c is not None)

    def x_dict(self, tree, env):
        out = {}
        for pair in tree.children:
            if pair is None:
                continue
            key = self.expr(pair.children[0], env)
            if isinstance(key, (Term, list, dict)):
                raise Issue("E205", "dict keys must be constants", self.span(pair))
            out[key] = self.expr(pair.children[1], env)
        return out

    def x_range_lit(self, tree, env):
        low, high = (_integer(t, self.span(tree)) for t in tree.children)
        self.grow(len(range(low, high + 1)), self.span(tree))
        return list(range(low, high + 1))

    def comprehension(self, comp_for, env, make):
        names_tree, iterable_tree, condition = comp_for.children
        names = _names(names_tree)
        scope = Env(parent=env)
        for item in self.iterate(self.expr(iterable_tree, env), self.span(iterable_tree)):
            self.unpack_into(names, item, scope, self.span(names_tree))
            if condition is not None:
                keep = self.expr(condition, scope)
                if isinstance(keep, Term):
                    raise Issue("E242", "a comprehension's condition must be a constant",
                                self.span(condition))
                if not keep:
                    continue
            make(scope)

    def x_listcomp(self, tree, env):
        element, comp_for = tree.children
        out = []
        self.comprehension(comp_for, env, lambda scope: out.append(self.expr(element, scope)))
        return out

    def x_dictcomp(self, tree, env):
        pair, comp_for = tree.children
        out = {}

        def make(scope):
            out[self.expr(pair.children[0], scope)] = self.expr(pair.children[1], scope)
        self.comprehension(comp_for, env, make)
        return out

    def x_lambda_(self, tree, env):
        params, body = tree.children
        return Function("lambda", _names(params) if params is not None else (), body, env,
                        self.current_file, is_lambda=True)

    # arithmetic ---------------------------------------------------

    def _arith(self, tree, env):
        left, right = (self.expr(c, env) for c in tree.children)
        return self.binary(_ARITH[tree.data], left, right, self.span(tree))

    x_add = x_sub = x_mul = x_div = x_mod = x_pow = _arith

    def x_neg(self, tree, env):
        return self.unary("-", self.expr(tree.children[0], env), self.span(tree))

    def x_pos(self, tree, env):
        return self.unary("+", self.expr(tree.children[0], env), self.span(tree))

    def x_not_op(self, tree, env):
        return self.unary("not", self.expr(tree.children[0], env), self.span(tree))

    def x_and_op(self, tree, env):
        left, right = (self.expr(c, env) for c in tree.children)
        return self.logical("and", left, right, self.span(tree))

    def x_or_op(self, tree, env):
        left, right = (self.expr(c, env) for c in tree.children)
        return self.logical("or", left, right, self.span(tree))

    def x_compare(self, tree, env):
        if len(tree.children) > 3:
            raise Issue("E108", "chained comparisons like `a < b < c` are ambiguous",
                        self.span(tree), "write `a < b and b < c`")
        left_tree, op_token, right_tree = tree.children
        left, right = self.expr(left_tree, env), self.expr(right_tree, env)
        op = " ".join(op_token.value.split())
        span = self.span(tree)
        if op in ("in", "not in"):
            return self.membership(left, right, op == "not in", span)
        return self.binary(op, left, right, span)

    def x_cond(self, tree, env):
        then_tree, cond_tree, else_tree = tree.children
        cond = self.expr(cond_tree, env)
        span = self.span(tree)
        if not isinstance(cond, Term):
            # a constant condition chooses a branch while elaborating (RASP 0.1's laziness)
            return self.expr(then_tree if cond else else_tree, env)
        then, otherwise = self.expr(then_tree, env), self.expr(else_tree, env)
        return self.typed(ir.Cond(cond.node, self.lift(then, span), self.lift(otherwise, span),
                                  span=span), span)

    def x_index(self, tree, env):
        base = self.expr(tree.children[0], env)
        index = self.expr(tree.children[1], env)
        span = self.span(tree)
        if isinstance(base, Term):
            if isinstance(index, Term):
                raise Issue("E207", "the index into a sequence must be a constant integer, "
                            "got an s-op", span, "to move values between positions use "
                            "aggregate(select(...), values)")
            if not isinstance(index, int) or isinstance(index, bool):
                raise Issue("E207", f"the index into a sequence must be an integer, got "
                            f"{index!r}", span)
            return self.broadcast_position(base, index, span)
        if isinstance(index, Term):
            if isinstance(base, dict):
                keys, values = tuple(base), tuple(base.values())
            elif isinstance(base, (list, tuple, str)):
                keys, values = tuple(range(len(base))), tuple(base)
            else:
                raise Issue("E205", f"cannot index {describe_value(base)}", span)
            if not all(is_atom(v) for v in keys + values):
                raise Issue("E205", "a table indexed by an s-op must hold constants", span)
            return self.typed(ir.Lookup(keys, values, index.node, span=span), span)
        try:
            return base[index]
        except KeyError:
            raise Issue("E206", f"key {index!r} is not in the dict", span) from None
        except IndexError:
            raise Issue("E208", f"index {index} out of range for a list of length "
                        f"{len(base)}", span) from None
        except TypeError as exc:
            raise Issue("E205", f"cannot index {describe_value(base)} with {index!r}: {exc}",
                        span) from None

    def broadcast_position(self, base: Term, index: int, span):
        """`x[i]`: the value at position i, at every position (an aggregate, as RASP 0.1)."""
        if index >= 0:
            where = ir.Const(index)
        else:
            length = self.use(self.env.lookup("length"))
            where = ir.BinaryOp("+", length.node, ir.Const(index))
        sel = ir.Select(ir.Indices(), where, ir.Compare("=="), span=span)
        return self.typed(ir.Aggregate(sel, base.node, span=span), span)

    # calls --------------------------------------------------------

    def x_call(self, tree, env):
        callee_tree, args_tree = tree.children
        callee = self.expr(callee_tree, env)
        span = self.span(tree)
        positional, keywords = [], {}
        for arg in (args_tree.children if args_tree is not None else ()):
            if arg is None:
                continue
            if isinstance(arg, lark.Tree) and arg.data == "kwarg":
                name, value = arg.children
                if name.value in keywords:
                    raise Issue("E240", f"argument `{name.value}` given twice", self.span(arg))
                keywords[name.value] = value
            elif keywords:
                raise Issue("E240", "positional arguments must come before keyword ones",
                            self.span(arg))
            else:
                positional.append(arg)
        if isinstance(callee, Builtin):
            return callee.handler(self, Args(self, callee, positional, keywords, env, span), span)
        if isinstance(callee, Function):
            return self.call_function(callee, positional, keywords, env, span)
        if isinstance(callee, Term):
            if keywords or len(positional) != 1:
                raise Issue("E240", "a program is applied to exactly one input", span)
            return self.apply(callee, self.expr(positional[0], env), span)
        raise Issue("E253", f"{describe_value(callee)} is not a function", span)

    def call_function(self, fn: Function, positional, keywords, env, span):
        args = [self.arg_value(a, env) for a in positional]
        if keywords:
            for name in fn.params[len(args):]:
                if name in keywords:
                    args.append(self.expr(keywords.pop(name), env))
            if keywords:
                raise Issue("E240", f"{fn.name} has no parameter `{next(iter(keywords))}`", span)
        return self.expand(fn, args, span)

    def arg_value(self, tree, env):
        if isinstance(tree, lark.Tree) and tree.data == "op_arg":
            raise Issue("E101", "a bare comparison operator is only an argument of select",
                        self.span(tree))
        return self.expr(tree, env)

    def expand(self, fn: Function, args: list, span):
        """Expand a macro: bind parameters in a scope of the definition, run the body."""
        if len(args) != len(fn.params):
            raise Issue("E240", f"wrong number of arguments for {fn.name}: expected "
                        f"{len(fn.params)}, got {len(args)}", span)
        if len(self.call_stack) >= limits.MAX_CALL_DEPTH:
            raise Issue("E243", f"functions expand more than {limits.MAX_CALL_DEPTH} calls deep "
                        f"(here {fn.name})", span, "functions are macros, expanded at each call",
                        "rasp_ir/limits.py MAX_CALL_DEPTH; docs/limits.md")
        if any(active is fn for active, _ in self.call_stack):
            raise Issue("E241", f"{fn.name} calls itself; functions are macros and cannot "
                        "recurse", span, "unroll the recursion with a for loop")
        scope = Env(parent=fn.closure, values=dict(zip(fn.params, args)))
        self.call_stack.append((fn, span))
        caller_file, self.current_file = self.current_file, fn.file
        try:
            if fn.is_lambda:
                return self.expr(fn.body, scope)
            *statements, ret = fn.body.children
            for stmt in statements:
                self.statement(stmt, scope)
            values = [self.expr(e, scope) for e in ret.children]
            return values[0] if len(values) == 1 else tuple(values)
        except Issue as issue:
            if issue.span is not None and issue.span.file != caller_file:
                where = issue.span
                raise Issue(issue.code, issue.message, span, issue.hint,
                            f"inside {fn.name}, at {where.file}:{where.line}:{where.column}") \
                    from None
            raise
        finally:
            self.call_stack.pop()
            self.current_file = caller_file

    def apply(self, term: Term, value, span):
        """`program(input)` while elaborating (the REPL's way of running a program)."""
        from rasp_ir.interpreter import run
        if isinstance(value, Term):
            raise Issue("E205", "a program is applied to a constant input", span)
        snapshot = attrs.evolve(self.program((term.node,)), output=term.node, expects=())
        results = run(snapshot, [_sequence(value)], add_bos=False)
        if isinstance(term.type, (T.Sel, T.Score)):
            return results[0].output
        return results[0].output

    # ------------------------------------------------------------ operations on values

    def lift(self, value, span) -> ir.Node:
        """A value as an IR node: Terms as they are, atoms as constants."""
        if isinstance(value, Term):
            return value.node
        if value is None or isinstance(value, (bool, int, float, str)):
            return ir.Const(value)
        raise Issue("E201", f"{describe_value(value)} cannot be used as an s-op", span)

    def unary(self, op, value, span):
        if not isinstance(value, Term):
            try:
                return ops.unary(op, value)
            except TypeError as exc:
                raise Issue("E201", str(exc), span) from None
        if op == "not" and isinstance(value.type, (T.Sel, T.Score)):
            return self.typed(ir.SelectNot(value.node, span=span), span)
        return self.typed(ir.UnaryOp(op, value.node, span=span), span)

    def binary(self, op, left, right, span):
        if not isinstance(left, Term) and not isinstance(right, Term):
            if op in ("*", "+"):
                sized = [v for v in (left, right) if isinstance(v, (str, list, tuple))]
                counts = [v for v in (left, right) if isinstance(v, int)]
                if op == "*" and len(sized) == 1 and counts:
                    self.grow(len(sized[0]) * max(0, counts[0]), span)
                elif op == "+" and len(sized) == 2:
                    self.grow(len(left) + len(right), span)
            try:
                return ops.binary(op, left, right)
            except ZeroDivisionError:
                raise Issue("R231", "division by zero", span) from None
            except OverflowError:
                raise Issue("E201", f"`{op}` on {describe_value(left)} and "
                            f"{describe_value(right)} gives a number too large to represent",
                            span) from None
            except (TypeError, ValueError) as exc:
                raise Issue("E201", f"cannot apply `{op}` to {describe_value(left)} and "
                            f"{describe_value(right)}", span, str(exc)) from None
        kinds = [getattr(v, "type", None) for v in (left, right)]
        selectors = [isinstance(k, (T.Sel, T.Score)) for k in kinds]
        if any(selectors):
            return self.selector_arith(op, left, right, selectors, span)
        if any(isinstance(k, (T.Logits, T.Vec)) for k in kinds):
            if op == "+" and all(isinstance(k, T.Logits) for k in kinds):
                terms = _flatten(ir.LogitsSum, left.node) + _flatten(ir.LogitsSum, right.node)
                return self.typed(ir.LogitsSum(terms, span=span), span)
            raise Issue("E201", f"cannot apply `{op}` to {describe_value(left)} and "
                        f"{describe_value(right)}", span,
                        "vectors combine through primitives; logits add with `+`")
        return self.typed(ir.BinaryOp(op, self.lift(left, span), self.lift(right, span),
                                      span=span), span)

    def selector_arith(self, op, left, right, selectors, span):
        if op == "+" and all(selectors):
            terms = _flatten(ir.ScoreSum, left.node) + _flatten(ir.ScoreSum, right.node)
            return self.typed(ir.ScoreSum(terms, span=span), span)
        if op == "*" and selectors.count(True) == 1:
            factor, sel = (left, right) if selectors[1] else (right, left)
            if isinstance(factor, (int, float)) and not isinstance(factor, bool):
                return self.typed(ir.ScoreScale(float(factor), sel.node, span=span), span)
        raise Issue("E214", f"cannot apply `{op}` to selector(s) and "
                    f"{describe_value(right if selectors[0] else left)}", span,
                    "selectors combine with and/or/not, or add into a score with `+`")

    def logical(self, op, left, right, span):
        if not isinstance(left, Term) and not isinstance(right, Term):
            return self.binary(op, left, right, span)     # constants: folded, errors coded
        sel = [isinstance(getattr(v, "type", None), (T.Sel, T.Score)) for v in (left, right)]
        if any(sel):
            if not all(sel):
                raise Issue("E202", f"cannot apply {op} between a selector and a non-selector",
                            span, "compare the s-op first, or combine two selectors")
            node = ir.SelectAnd if op == "and" else ir.SelectOr
            return self.typed(node(left.node, right.node, span=span), span)
        return self.typed(ir.BinaryOp(op, self.lift(left, span), self.lift(right, span),
                                      span=span), span)

    def membership(self, left, right, negate, span):
        if isinstance(right, Term):
            if isinstance(left, Term):
                raise Issue("E201", "`in` between two s-ops: the right side must be a "
                            "constant list, or the left a single value", span)
            if not (left is None or isinstance(left, (bool, int, float, str))):
                raise Issue("E201", f"`in` an s-op needs a single value on its left, got "
                            f"{describe_value(left)}", span)
            # RASP 0.1: "a" in tokens -- does the value occur anywhere in the sequence
            full = ir.Select(ir.Const(1), ir.Const(1), ir.Compare("=="))
            share = ir.Aggregate(full, ir.Call("indicator", (ir.BinaryOp(
                "==", right.node, ir.Const(left)),)))
            node = ir.BinaryOp("==" if negate else ">", share, ir.Const(0), span=span)
            return self.typed(node, span)
        if isinstance(right, dict):
            right = list(right)
        if not isinstance(left, Term):
            try:
                return (left not in right) if negate else (left in right)
            except TypeError as exc:
                raise Issue("E201", str(exc), span) from None
        if not isinstance(right, (list, tuple, str)):
            raise Issue("E201", f"`in` needs a list on its right, got {describe_value(right)}",
                        span)
        options = tuple(right) if not isinstance(right, str) else tuple(right)
        if not all(is_atom(o) for o in options):
            raise Issue("E201", "`in` needs a list of constants", span)
        return self.typed(ir.In(left.node, options, negate, span=span), span)


# ---------------------------------------------------------------- helpers

def _names(tree) -> tuple[str, ...]:
    return tuple(t.value for t in tree.children) if tree is not None else ()


MAX_LEN = 1 << 16   # the longest @maxlen: value sets of positions stay enumerable


def _string_literal(token, span) -> str:
    """The value of a STRING token (Python's escapes); a bad escape is a coded error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # "\q" is a backslash and a q, as in Python
            return ast.literal_eval(token.value)
    except (SyntaxError, ValueError) as exc:
        raise Issue("E101", f"invalid escape sequence in string {token.value}", span,
                    str(getattr(exc, "msg", exc))) from None


def _vocab_tokens(value, span) -> list:
    """The tokens of a @vocab value: a string (its characters) or a collection of atoms."""
    items = list(value) if isinstance(value, (str, list, tuple, dict)) else None
    if items is None or not all(v is None or isinstance(v, (str, int, float, bool))
                                for v in items):
        raise Issue("E110", f"@vocab takes a set of tokens, got {describe_value(value)}", span,
                    'e.g. @vocab {"a", "b"}; or @vocab {0, 1, 2};')
    return items


def _is_data(value) -> bool:
    """An atom, or a list of data: what @expect can compare against."""
    if isinstance(value, (list, tuple)):
        return all(_is_data(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _integer(token, span) -> int:
    """An INT token's value; E111 past limits.MAX_LITERAL_DIGITS digits (Python refuses to
    convert more than 4,300, and arithmetic on such numbers is slow)."""
    digits = len(token.value.lstrip("+-"))
    if digits > limits.MAX_LITERAL_DIGITS:
        raise Issue("E111", f"an integer of {digits:,} digits; the limit is "
                    f"{limits.MAX_LITERAL_DIGITS:,}", span,
                    note="rasp_ir/limits.py MAX_LITERAL_DIGITS; docs/limits.md")
    return int(token.value)


def _unique(values) -> list:
    """The values in order, each once (1 and True and 1.0 are different values here). Linear:
    hashable values are looked up by (type, value), the rest compared one by one."""
    out, seen, unhashable = [], set(), []
    for v in values:
        try:
            key = (type(v), v)
            if key in seen:
                continue
            seen.add(key)
        except TypeError:
            if any(v == o and type(v) is type(o) for o in unhashable):
                continue
            unhashable.append(v)
        out.append(v)
    return out


def _flatten(kind, node) -> tuple:
    return node.terms if isinstance(node, kind) else (node,)


def _sequence(value) -> list:
    if isinstance(value, str):
        return list(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _freeze(value):
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
