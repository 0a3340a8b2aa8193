"""The values an elaborating program manipulates besides plain Python atoms and containers."""

from __future__ import annotations

from typing import Any, Callable

import attrs

from rasp_ir import nodes as ir
from rasp_ir import types as T
from rasp_ir.nodes import Span


@attrs.frozen
class Term:
    """An IR value (s-op, selector, vector, logits) with its static type. `lib` is the library
    binding it names, added to a program the first time the program uses it."""
    node: ir.Node
    type: Any
    lib: ir.Binding | None = None


@attrs.frozen(eq=False)
class Function:
    """A `def` or lambda: a macro expanded at each call, in the scope it was defined in."""
    name: str
    params: tuple[str, ...]
    body: Any               # Lark tree: a `body` (def) or an expression (lambda)
    closure: "Env"
    file: str
    is_lambda: bool = False


@attrs.frozen(eq=False)
class Builtin:
    """A function of the base environment, called with unevaluated argument trees."""
    name: str
    handler: Callable
    params: tuple[str, ...]


def is_atom(value) -> bool:
    """A constant that can sit at a position of an s-op: str, int, float, bool or None."""
    return value is None or isinstance(value, (bool, int, float, str))


class PoisonError(Exception):
    """A value that already produced a diagnostic was used: stay quiet and skip."""


POISON = object()   # what a name is bound to after its definition failed


class Issue(Exception):
    """A diagnostic raised while elaborating, located later at the statement if `span` is None."""

    def __init__(self, code: str, message: str, span: Span | None = None,
                 hint: str | None = None, note: str | None = None):
        super().__init__(message)
        self.code, self.message, self.span, self.hint, self.note = code, message, span, hint, note


class Env:
    """A scope: names to values, with lexical parents."""

    def __init__(self, parent: "Env | None" = None, values: dict | None = None):
        self.parent = parent
        self.values = values if values is not None else {}

    def lookup(self, name: str):
        env = self
        while env is not None:
            if name in env.values:
                return env.values[name]
            env = env.parent
        raise KeyError(name)

    def names(self) -> set[str]:
        out, env = set(), self
        while env is not None:
            out |= set(env.values)
            env = env.parent
        return out


def describe_value(value) -> str:
    """How a diagnostic names a value: `the s-op of type …`, `the function f`, `the number 3`."""
    if isinstance(value, Term):
        return f"the {T.describe(value.type)} of type {value.type}"
    if isinstance(value, Function):
        return f"the function {value.name}"
    if isinstance(value, Builtin):
        return f"the builtin {value.name}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return f"a {type(value).__name__}"
