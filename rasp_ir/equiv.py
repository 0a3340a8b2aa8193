"""`rasp equiv`: do two programs agree on every input up to a length?

Inputs are every sequence over the programs' common vocabulary (after their BOS token, when
they declare one) of lengths 1..N. When one side's @bos is a token the other side does not know
(a program extracted from a compiled model, whose compiler put its own BOS position in front,
against its source), that side gets its BOS token put in front of each input and its output at
that position dropped; its @maxlen then counts that BOS. Where all of them number at most `bound`, every one is run
(batched), and equality is proven; beyond that, longer lengths are checked on random and
Hypothesis-generated inputs (rasp_ir/search.py), which can find a difference but not prove
there is none. Outputs are compared as rasp_ir/compare.py describes, by the rule of
rasp_ir/agreement.py; a runtime error is an output too (two errors agree when their codes do).
"""

from __future__ import annotations

from attrs import define, frozen

from . import nodes as ir
from .agreement import TOLERANCE
from .compare import ProgramRunner, comparable, outcome_agreement, shown
from .diagnostics import Diagnostic, RaspError
from .search import InputSpace, SearchResult, batched, search

DEFAULT_BOUND = 200_000       # inputs run exhaustively at most
MAX_LEN_CAP = 12              # default N: the smaller @maxlen, at most this
DEFAULT_EXAMPLES = 2000       # random inputs beyond the exhaustive lengths


@frozen
class Counterexample:
    """An input on which two sides differ, each side's output (a list per position, or the
    text of its runtime error) and the positions that differ."""
    input: list
    output_a: list | str
    output_b: list | str
    differs_at: list


@define
class Equivalence:
    equal: bool                       # no difference found
    proven: bool                      # ... and every input up to max_len was checked
    max_len: int
    comparison: str                   # how outputs were compared
    search: SearchResult
    counterexample: Counterexample | None = None

    def summary(self) -> dict:
        s = self.search
        out = {"equal": self.equal, "proven": self.proven, "mode": s.mode,
               "max_len": self.max_len, "bound": s.bound,
               "exhaustive_up_to": max(s.exhaustive_up_to, 0),
               "inputs_checked": s.checked, "random_inputs": s.random_inputs,
               "hypothesis_inputs": s.hypothesis_inputs,
               "input_space": s.space.total(), "comparison": self.comparison,
               "counterexample": None}
        if self.counterexample is not None:
            c = self.counterexample
            out["counterexample"] = {
                "input": c.input, "a": c.output_a, "b": c.output_b, "differs_at": c.differs_at,
                "found_by": s.found_by, "found_length": len(s.found or []),
                "shrink_rounds": s.shrink_rounds}
        return out


def prefixes(a: ir.Program, b: ir.Program) -> tuple[tuple, tuple]:
    """What each side puts in front of an input: its BOS token when the other side does not
    know that token (a compiled model's BOS, in front of the source's own BOS if it has one)."""
    def extra(p, other):
        known = set(other.vocab or ()) | {other.bos}
        return (p.bos,) if p.bos is not None and p.bos not in known else ()
    pre = extra(a, b), extra(b, a)
    return ((), ()) if all(pre) else pre


def as_text(vocab_a: list, vocab_b: list) -> bool:
    """Whether B's tokens are A's written as text (a compiled model's vocabulary of numbers,
    which the compiler stores as strings): A's inputs are then given to B as their text."""
    return (set(vocab_a) != set(vocab_b) and all(isinstance(t, str) for t in vocab_b)
            and sorted(map(str, vocab_a)) == sorted(vocab_b))


def input_space(a: ir.Program, b: ir.Program, max_len: int | None,
                names: tuple[str, str] = ("A", "B")) -> InputSpace:
    """The inputs both programs accept, up to `max_len` (default: the smaller @maxlen, at most
    MAX_LEN_CAP). RaspError V601 (no @vocab), V602 (vocabularies or BOS differ), V604 (a
    length beyond @maxlen)."""
    for program, name in zip((a, b), names):
        if program.vocab is None:
            raise RaspError([Diagnostic("V601", f"{name} has no @vocab, so its inputs cannot be "
                                        "enumerated", hint='declare one, e.g. @vocab {"a", "b"};')])
    pre = prefixes(a, b)
    # a BOS only one side declares is that side's business (see prefixes)
    vocab_a = [t for t in a.vocab if not pre[0] or t != a.bos]
    vocab_b = [t for t in b.vocab if not pre[1] or t != b.bos]
    seen_a = [str(t) for t in vocab_a] if as_text(vocab_a, vocab_b) else vocab_a
    only_a = [t for t in seen_a if t not in set(vocab_b)]
    only_b = [t for t in vocab_b if t not in set(seen_a)]
    problems = []
    if only_a or only_b:
        parts = [f"only {n} has {_tokens(t)}" for n, t in zip(names, (only_a, only_b)) if t]
        problems.append(Diagnostic("V602", f"{names[0]} and {names[1]} have different "
                                   f"vocabularies: {'; '.join(parts)}",
                                   hint="equivalence is checked on the inputs both programs "
                                   "accept: give them the same @vocab"))
    if (b.bos if pre[0] else a.bos) != (a.bos if pre[1] else b.bos):
        problems.append(Diagnostic("V602", f"{names[0]} has @bos {a.bos!r}, {names[1]} has "
                                   f"@bos {b.bos!r}", hint="inputs must start the same way"))
    if problems:
        raise RaspError(problems)
    # the longest input each side takes (its prefix counts against its @maxlen)
    limits = {name: p.maxlen - len(prefix) for p, name, prefix in zip((a, b), names, pre)
              if p.maxlen is not None}
    if max_len is None:
        max_len = min(list(limits.values()) + [MAX_LEN_CAP])
    elif max_len < 1:
        raise RaspError([Diagnostic("V604", f"--max-len must be at least 1, not {max_len}")])
    for name, limit in limits.items():
        if max_len > limit:
            after = " after its BOS" if pre[names.index(name)] else ""
            raise RaspError([Diagnostic("V604", f"--max-len {max_len} is longer than {name}'s "
                                        f"@maxlen {limit}{after}",
                                        hint=f"use --max-len {limit} or less")])
    bos = b.bos if pre[0] else a.bos         # the unprefixed side's BOS
    alphabet = tuple(t for t in vocab_a if t != bos)
    if not alphabet and max_len > 1:
        max_len = 1
    return InputSpace(alphabet, max_len, bos)


def _tokens(tokens: list, limit: int = 8) -> str:
    shown_ = ", ".join(repr(t) for t in tokens[:limit])
    return shown_ + (f" and {len(tokens) - limit} more" if len(tokens) > limit else "")


class _Pair:
    """Two programs run side by side on batches of equal-length inputs."""

    def __init__(self, a: ir.Program, b: ir.Program, tolerance: float,
                 names: tuple[str, str] = ("A", "B")):
        pre_a, pre_b = prefixes(a, b)
        self.a, self.b = ProgramRunner(a, prefix=pre_a), ProgramRunner(b, prefix=pre_b)
        self.b.as_text = as_text([t for t in a.vocab or () if t not in pre_a],
                                 [t for t in b.vocab or () if t not in pre_b])
        why = comparable(self.a.view, self.b.view)
        if why is not None:
            raise RaspError([Diagnostic(
                "V603", f"the outputs of {names[0]} ({self.a.output_type}) and {names[1]} "
                f"({self.b.output_type}) cannot be compared: {why}")])
        self.tolerance = tolerance

    def agree_group(self, batch: list[list]):
        return outcome_agreement(self.a.view, self.a.run(batch), self.b.view,
                                 self.b.run(batch), self.tolerance)

    def comparison(self) -> str:
        views = {self.a.view.describe(), self.b.view.describe()}
        return " vs ".join(sorted(views))

    def counterexample(self, seq: list) -> Counterexample:
        from .compare import agreement
        a, b = self.a.run([seq]), self.b.run([seq])
        if a.errors[0] is None and b.errors[0] is None:
            same = agreement(self.a.view, a.decoded, self.b.view, b.decoded, self.tolerance)[0]
            differs = [int(i) for i in (~same).nonzero()[0]]
        else:
            differs = []
        return Counterexample(list(seq), _shown(self.a.view, a), _shown(self.b.view, b), differs)


def _shown(view, outcome) -> list | str:
    error = outcome.errors[0]
    if error is not None:
        return f"error[{error.code}]: {error.message}"
    return shown(view, outcome.decoded[0])


def equivalent(a: ir.Program, b: ir.Program, max_len: int | None = None,
               bound: int = DEFAULT_BOUND, examples: int = DEFAULT_EXAMPLES, seed: int = 0,
               tolerance: float = TOLERANCE, hypothesis_examples: int | None = None,
               names: tuple[str, str] = ("A", "B"), progress=None) -> Equivalence:
    """Whether programs `a` and `b` agree on every input up to `max_len` (see the module
    docstring). `examples` random inputs (and `hypothesis_examples`, default examples // 10,
    Hypothesis inputs) are tried at the lengths beyond the exhaustive bound. `progress`: as
    rasp_ir.search.search's."""
    if bound < 0 or examples < 0 or tolerance < 0:
        raise RaspError([Diagnostic("V604", "--bound, --examples and --tolerance must not be "
                                    "negative")])
    space = input_space(a, b, max_len, names)
    pair = _Pair(a, b, tolerance, names)
    if hypothesis_examples is None:
        hypothesis_examples = min(examples // 10, 500)
    result = search(space, batched(pair.agree_group), bound, examples, hypothesis_examples,
                    seed, stop_at_first=True, progress=progress)
    equal = result.counterexample is None
    found = None if equal else pair.counterexample(result.counterexample)
    return Equivalence(equal, equal and result.exhaustive, space.max_len, pair.comparison(),
                       result, found)
