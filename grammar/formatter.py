"""`rasp fmt`: the layout of a .rasp file made canonical, every token and comment kept.

The formatter reads tokens, not the IR, so functions, loops, library calls, positional
arguments, parentheses, literals and comments stay as they are written; only whitespace
changes (docs/language.md, Formatting):

- one statement per line; a `def` or `for` body four spaces in, its `}` on a line of its own;
- inside a statement, spaces as the printer writes them (`a + b`, `f(x, y)`, `op=(k == q)`,
  `-x`, `{"a": 1}`); a line break of the source is kept, and the continuation line is indented
  four spaces for each line whose brackets are still open (at least four);
- at most one blank line between statements, none at the start or end of a file or block;
- a comment on a line of its own stays above the code after it, at that code's indentation; a
  comment after code stays at the end of its line, and the comments ending consecutive lines
  line up two spaces after the longest of those lines;
- a `matrix(…)` literal keeps its layout as written (the printer aligns its columns).

`format_source(pretty(p)) == pretty(p)`: the printer's output is already formatted.
"""

from __future__ import annotations

import attrs

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {")", "]", "}"}
_OPERANDS = {"NAME", "INT", "FLOAT", "STRING", "VERBATIM"}
_NO_SPACE_BEFORE = {",", ";", ")", "]", "}", ":", ".."}
INDENT = "    "


@attrs.define
class _Token:
    type: str
    value: str
    start: int
    end: int
    line: int
    end_line: int
    newlines: int = 0          # line breaks between the previous token (or comment) and this one
    unary: bool = False        # a `-`/`+` that applies to what follows


@attrs.define
class _Line:
    indent: int
    code: str = ""
    comment: str | None = None
    kind: str = "code"         # "code", "comment" (a comment on its own line) or "blank"
    opens_block: bool = False


@attrs.define
class _Bracket:
    block: bool                # a def/for body rather than a bracket of an expression
    line: int = -1             # the output line it was opened on


def format_source(text: str) -> str:
    """The canonical layout of `text`, which must lex (parse it first for good diagnostics).
    Raises ValueError if formatting would change the tokens (a bug of the formatter)."""
    tokens = _tokens(text)
    out = _Layout(tokens).run()
    result = _render(out)
    if _signature(_tokens(result)) != _signature(tokens):
        raise ValueError("rasp fmt: formatting would change the program's tokens (a bug in "
                         "grammar/formatter.py); the file is left as it is")
    return result


def _tokens(text: str) -> list[_Token]:
    from grammar.parser import lark_parser
    raw = [t for t in lark_parser().lex(text, dont_ignore=True) if t.type != "WS"]
    out: list[_Token] = []
    previous_end = 0
    i = 0
    while i < len(raw):
        t = raw[i]
        token = _Token(t.type, t.value, t.start_pos, t.end_pos, t.line, t.end_line or t.line)
        if t.type == "NOT_IN":
            token.value = "not in"
        if (t.type == "NAME" and t.value == "matrix" and i + 1 < len(raw)
                and raw[i + 1].value == "("):
            j = _matching(raw, i + 1)
            if j is not None:       # a table keeps its layout: one token, spaces and all
                last = raw[j]
                token = _Token("VERBATIM", text[t.start_pos:last.end_pos], t.start_pos,
                               last.end_pos, t.line, last.end_line or last.line)
                i = j
        token.newlines = text.count("\n", previous_end, token.start)
        previous_end = token.end
        out.append(token)
        i += 1
    return out


def _matching(raw, i: int) -> int | None:
    depth = 0
    for j in range(i, len(raw)):
        if raw[j].value in _OPENERS and raw[j].type != "STRING":
            depth += 1
        elif raw[j].value in _CLOSERS and raw[j].type != "STRING":
            depth -= 1
            if depth == 0:
                return j
    return None


def _signature(tokens: list[_Token]) -> list[tuple[str, str]]:
    """What formatting must keep: every token and comment, in order (tables as their tokens)."""
    return [(t.type, " ".join(t.value.split()) if t.type == "VERBATIM" else t.value.rstrip())
            for t in tokens]


def _is_operand(token: _Token | None) -> bool:
    """Whether `token` ends an operand (so a `-` after it subtracts, a `(` after it calls)."""
    return token is not None and (token.type in _OPERANDS or token.value in _CLOSERS)


class _Layout:
    """One pass over the tokens, building output lines."""

    def __init__(self, tokens: list[_Token]):
        self.tokens = tokens
        self.out: list[_Line] = []
        self.line: _Line | None = None
        self.stack: list[_Bracket] = []
        self.statement_start = True
        self.header = False             # inside `def …(…)` or `for … in …` before its `{`
        self.previous: _Token | None = None     # the last code token of this statement
        self.pending: list[tuple[str, bool]] = []   # comments on their own lines, not yet placed

    # ------------------------------------------------------------ state

    def blocks(self) -> int:
        return sum(b.block for b in self.stack)

    def open_brackets(self) -> list[_Bracket]:
        """The expression brackets opened since the innermost block."""
        out = []
        for b in reversed(self.stack):
            if b.block:
                break
            out.append(b)
        return out[::-1]

    # ------------------------------------------------------------ the pass

    def run(self) -> list[_Line]:
        for i, t in enumerate(self.tokens):
            if t.type == "COMMENT":
                self.comment(t)
            else:
                self.code(i, t)
        self.finish_line()
        self.place_comments(len(INDENT) * self.blocks())
        return self.out

    def comment(self, t: _Token) -> None:
        if self.line is not None and self.line.code and t.newlines == 0:
            self.line.comment = t.value.rstrip()
        else:
            self.pending.append((t.value.rstrip(), t.newlines >= 2))

    def code(self, i: int, t: _Token) -> None:
        closes_block = t.value == "}" and bool(self.stack) and self.stack[-1].block
        if self.line is None or self.statement_start or closes_block or t.newlines > 0:
            self.new_line(i, t, closes_block)
        elif self.space_before(t):
            self.line.code += " "
        if t.value in ("-", "+") and not _is_operand(self.previous):
            t.unary = True
        self.line.code += t.value
        self.after(t, closes_block)

    def new_line(self, i: int, t: _Token, closes_block: bool) -> None:
        starts_statement = self.statement_start or closes_block
        self.finish_line()
        blocks = self.blocks()
        if starts_statement:
            indent = len(INDENT) * (blocks - closes_block)
            comment_indent = len(INDENT) * blocks
        else:
            indent = comment_indent = self.continuation_indent(i)
        self.place_comments(comment_indent)
        if (starts_statement and not closes_block and t.newlines >= 2 and self.may_blank()):
            self.out.append(_Line(0, kind="blank"))
        self.line = _Line(indent)

    def continuation_indent(self, i: int) -> int:
        """Four spaces per line whose brackets are still open at this line, at least four; a
        line that starts by closing brackets is indented as the line that opened them."""
        closing = 0
        for t in self.tokens[i:]:
            if t.value not in _CLOSERS or t.type == "STRING" or (closing and t.newlines):
                break
            closing += 1
        brackets = self.open_brackets()
        remaining = brackets[:max(0, len(brackets) - closing)]
        lines = len({b.line for b in remaining})
        base = len(INDENT) * self.blocks()
        return base + len(INDENT) * (lines if closing else max(1, lines))

    def place_comments(self, indent: int) -> None:
        for text, blank in self.pending:
            if blank and self.may_blank():
                self.out.append(_Line(0, kind="blank"))
            self.out.append(_Line(indent, text, kind="comment"))
        self.pending = []

    def may_blank(self) -> bool:
        return bool(self.out) and self.out[-1].kind != "blank" and not self.out[-1].opens_block

    def finish_line(self) -> None:
        if self.line is not None:
            self.out.append(self.line)
            self.line = None

    def space_before(self, t: _Token) -> bool:
        p = self.previous
        if p is None or t.value in _NO_SPACE_BEFORE or p.value in _OPENERS or p.unary:
            return False
        if p.value == "..":
            return False
        if t.value == "=" or p.value == "=":
            return not self.open_brackets()     # a keyword argument: `op=…`
        if t.value in ("(", "["):
            return not _is_operand(p)           # a call or an index: `f(x)`, `xs[0]`
        return True

    def after(self, t: _Token, closes_block: bool) -> None:
        starting = self.statement_start
        self.statement_start = False
        if starting and t.type in ("DEF", "FOR"):
            self.header = True
        if t.value in _OPENERS:
            if (t.value == "{" and self.header and not self.open_brackets()
                    and _is_operand(self.previous)):
                self.stack.append(_Bracket(block=True))
                self.header = False
                self.line.opens_block = True
                self.statement_start = True
                self.previous = None
                return
            self.stack.append(_Bracket(block=False, line=len(self.out)))
        elif t.value in _CLOSERS and self.stack:
            self.stack.pop()
            if closes_block:
                self.statement_start = True
                self.previous = None
                return
        elif t.value == ";" and not self.open_brackets():
            self.statement_start = True
            self.header = False
            self.previous = None
            return
        self.previous = t


def _render(lines: list[_Line]) -> str:
    """The text of the lines, comments after code aligned by runs of consecutive lines."""
    while lines and lines[-1].kind == "blank":
        lines.pop()
    width: dict[int, int] = {}
    run: list[int] = []

    def close_run():
        if run:
            column = max(_last_length(lines[k]) for k in run) + 2
            for k in run:
                width[k] = column
            run.clear()

    for k, line in enumerate(lines):
        if line.kind == "code" and line.comment is not None:
            run.append(k)
        else:
            close_run()
    close_run()
    text = []
    for k, line in enumerate(lines):
        if line.kind == "blank":
            text.append("")
            continue
        body = " " * line.indent + line.code
        if line.comment is not None:
            body = body.ljust(width[k] + len(body) - _last_length(line)) + line.comment
        text.append(body.rstrip())
    return "\n".join(text) + "\n" if text else ""


def _last_length(line: _Line) -> int:
    body = " " * line.indent + line.code
    return len(body.rsplit("\n", 1)[-1])
