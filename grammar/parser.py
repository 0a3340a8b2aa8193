"""Text to Lark tree, with syntax errors turned into coded diagnostics (E1xx)."""

from __future__ import annotations

import functools
import hashlib
import io
import re
import sys
from pathlib import Path

import lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

import attrs

from rasp_ir import limits
from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.nodes import Span

# terminal names as words users recognise
_WORDS = {
    "SEMICOLON": "`;`", "NAME": "a name", "INT": "an integer", "FLOAT": "a number",
    "STRING": "a string", "COMP": "a comparison operator (==, <, …)", "LPAR": "`(`",
    "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "LBRACE": "`{`", "RBRACE": "`}`",
    "COMMA": "`,`", "EQUAL": "`=`", "COLON": "`:`", "DIRECTIVE": "a directive (@…)",
    "RETURN": "`return`", "PLUS": "`+`", "MINUS": "`-`", "STAR": "`*`", "SLASH": "`/`",
    "IN": "`in`", "NOT_IN": "`not in`", "DOT": "`.`", "$END": "the end of the file",
}
_CLOSERS = {")": "(", "]": "[", "}": "{"}


_COMPAT = re.compile(r'^[ \t]*@compat[ \t]+"rasp0\.1"[ \t]*;', re.M)


_OPTIONS = dict(parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=True)


@functools.cache
def lark_parser(compat: bool = False) -> lark.Lark:
    """The LALR parser, its tables built once per process; with `compat`, the variant grammar
    rasp01.lark, which imports rasp.lark and overrides its operator rules with RASP 0.1's.

    Building the tables takes about half a second, so they are kept on disk (`_cache_file`)
    and read back by later processes; a missing, stale or unreadable cache is rebuilt, and an
    unwritable cache directory only costs the time."""
    name = "rasp01.lark" if compat else "rasp.lark"
    cache = _cache_file(name)
    if cache is not None:
        try:
            with open(cache, "rb") as f:
                return lark.Lark.load(f)
        except Exception:       # absent, truncated or from another Lark: build it again
            pass
    # read from the package, so that rasp01.lark's `%import .rasp` finds its neighbour
    parser = lark.Lark.open_from_package("grammar", name, ("",), **_OPTIONS)
    if cache is not None:
        try:
            from rasp_ir.files import atomic_write_bytes
            buffer = io.BytesIO()
            parser.save(buffer)
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(cache, buffer.getvalue())
        except OSError:
            pass
    return parser


def _cache_file(name: str) -> Path | None:
    """Where the tables of grammar `name` are kept: in rasp_ir.program_cache.cache_dir()
    ($RASP_IR_CACHE, else $XDG_CACHE_HOME/rasp-ir, else ~/.cache/rasp-ir); the file name holds
    a hash of both grammar files, the Lark version, the options and the Python version, so an
    edited grammar or a new Lark gets new tables. None when there is no cache directory."""
    from rasp_ir.program_cache import cache_dir
    root = cache_dir()
    if root is None:
        return None
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for part in ("rasp.lark", "rasp01.lark"):
        digest.update((here / part).read_bytes())
    digest.update(repr((lark.__version__, sorted(_OPTIONS.items()),
                        sys.version_info[:2])).encode())
    return root / f"{name}.{digest.hexdigest()[:16]}.lalr"


def declares_compat(text: str) -> bool:
    """Whether the text asks for RASP 0.1's operator precedence."""
    return bool(_COMPAT.search(text))


def parse_tree(text: str, file: str = "<string>", compat: bool | None = None) -> lark.Tree:
    """The Lark tree of `text`; raises RaspError with a coded diagnostic per syntax error.
    `compat` None means: as the file's own `@compat` directive says."""
    if compat is None:
        compat = declares_compat(text)
    unbalanced = _bracket_problem(text, file)
    if unbalanced is not None and unbalanced.code == "E111":
        raise RaspError([unbalanced], text)
    try:
        tree = lark_parser(compat).parse(text)
    except UnexpectedInput as exc:
        if unbalanced:
            raise RaspError([unbalanced], text) from None
        diagnostics = _every_syntax_error(text, file, compat) or [_classify(exc, text, file)]
        raise RaspError(diagnostics, text) from None
    deep = _too_deep(tree, file)
    if deep:
        raise RaspError(deep, text)
    return tree


def _too_deep(tree: lark.Tree, file: str) -> list[Diagnostic]:
    """E111 for each statement whose syntax tree is deeper than limits.MAX_NESTING (measured
    without recursion, so that the recursive walks after it stay within Python's stack)."""
    out = []
    for statement in tree.children:
        if not isinstance(statement, lark.Tree):
            continue
        stack = [(statement, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > limits.MAX_NESTING:
                meta = statement.meta
                out.append(Diagnostic(
                    "E111", f"this statement nests more than {limits.MAX_NESTING} levels deep",
                    Span(file, meta.line, meta.column, meta.line, meta.column + 1),
                    "name the parts (`a = …; b = a + …;`): each name starts a new statement",
                    "rasp_ir/limits.py MAX_NESTING; docs/limits.md"))
                break
            stack.extend((c, depth + 1) for c in node.children if isinstance(c, lark.Tree))
    return out


# the operators whose precedence or grouping differs between the two tables; a statement
# without any of them reads the same under both
_PRECEDENCE_SENSITIVE = re.compile(r"\b(?:and|or|in|not|if|lambda)\b|\^|\*\*|%")


def precedence_warnings(tree: lark.Tree, text: str, file: str) -> list[Diagnostic]:
    """W101 for each statement that RASP 0.1's operator table would read differently. Only the
    statements holding an operator the tables disagree on are parsed again (the second parse
    of the whole file doubled the front end's time)."""
    out = []
    for ours in tree.children:
        meta = getattr(ours, "meta", None)
        if meta is None or getattr(meta, "empty", True):
            continue
        piece = text[meta.start_pos:meta.end_pos]
        if not _PRECEDENCE_SENSITIVE.search(piece):
            continue
        try:
            theirs = lark_parser(True).parse(piece).children[0]
        except UnexpectedInput:
            continue
        if ours != theirs:
            out.append(Diagnostic(
                "W101", "RASP 0.1 would read this statement differently: its operator "
                "precedence is not Python's", Span(file, meta.line, meta.column, meta.end_line,
                                                  meta.end_column),
                'add parentheses, or declare @compat "rasp0.1"; to use RASP 0.1\'s table'))
    return out


def _every_syntax_error(text: str, file: str, compat: bool = False) -> list[Diagnostic]:
    """Parse each top-level statement on its own and move its diagnostics to where the
    statement is, so a file with several syntax errors reports each of them (in time linear in
    the file's length)."""
    out = []
    line, line_start, seen = 1, 0, 0
    for start, end in _statements(text):
        line += text.count("\n", seen, start)
        line_start = text.rfind("\n", 0, start) + 1
        seen = start
        piece = text[start:end]
        try:
            lark_parser(compat).parse(piece)
        except UnexpectedInput as exc:
            out.append(_moved(_classify(exc, piece, file), line, start - line_start))
    return out


def _moved(d: Diagnostic, line: int, column: int) -> Diagnostic:
    """`d` found in a statement parsed alone, placed where the statement starts in its file
    (line `line`, `column` characters into it)."""
    s = d.span
    if s is None:
        return d
    shift = lambda ln, col: (ln + line - 1, col + column if ln == 1 else col)  # noqa: E731
    (sl, sc), (el, ec) = shift(s.line, s.column), shift(s.end_line, s.end_column)
    return attrs.evolve(d, span=attrs.evolve(s, line=sl, column=sc, end_line=el,
                                             end_column=ec))


def _statements(text: str):
    """(start, end) of each top-level statement: ends at `;` or `}` outside brackets."""
    depth, start, i = 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "#":
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        if ch in "\"'":
            j = i + 1
            while j < len(text) and text[j] not in (ch, "\n"):
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and ch == "}" and _closes_block(text, i):
                yield start, i + 1
                start = i + 1
        elif ch == ";" and depth == 0:
            yield start, i + 1
            start = i + 1
        i += 1
    if text[start:].strip():
        yield start, len(text)


def _closes_block(text: str, i: int) -> bool:
    """A `}` that ends a def/for body (not a dict or set literal): followed by a new statement."""
    nxt = text[i + 1:].lstrip()
    return not nxt or not nxt.startswith((";", ",", ")", "]", "[", ".", "+", "-", "*", "/", "%"))


def _span_at(text: str, file: str, pos: int, length: int = 1) -> Span:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return Span(file, line, column, line, column + max(1, length))


def _bracket_problem(text: str, file: str) -> Diagnostic | None:
    """An unmatched bracket, found by a scan that skips strings and comments."""
    stack, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "#":
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        if ch in "\"'":
            j = i + 1
            while j < len(text) and text[j] not in (ch, "\n"):
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if ch in "([{":
            stack.append((ch, i))
            if len(stack) > limits.MAX_NESTING:
                return Diagnostic("E111", f"brackets nest more than {limits.MAX_NESTING} deep",
                                  _span_at(text, file, i), "name the inner parts",
                                  "rasp_ir/limits.py MAX_NESTING; docs/limits.md")
        elif ch in ")]}":
            if not stack or stack[-1][0] != _CLOSERS[ch]:
                hint = (f"it closes `{stack[-1][0]}` from line "
                        f"{_span_at(text, file, stack[-1][1]).line}" if stack else None)
                return Diagnostic("E104", f"unmatched `{ch}`", _span_at(text, file, i), hint)
            stack.pop()
        i += 1
    if stack:
        ch, pos = stack[-1]
        return Diagnostic("E104", f"`{ch}` is never closed", _span_at(text, file, pos),
                          "add the matching bracket")
    return None


def _previous_end(text: str, pos: int) -> int:
    """The offset just after the last non-blank, non-comment character before `pos`."""
    j = pos
    while j > 0:
        line_start = text.rfind("\n", 0, j) + 1
        segment = text[line_start:j]
        hash_at = _comment_start(segment)
        if hash_at is not None:
            segment = segment[:hash_at]
        stripped = segment.rstrip()
        if stripped:
            return line_start + len(stripped)
        j = line_start - 1
    return pos


def _comment_start(segment: str) -> int | None:
    quote = None
    for i, ch in enumerate(segment):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return i
    return None


def _classify(exc: UnexpectedInput, text: str, file: str) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        span = _span_at(text, file, exc.pos_in_stream)
        if ch in "\"'":
            return Diagnostic("E107", "this string is never closed", span,
                              "strings end on the same line with the same quote")
        return Diagnostic("E106", f"unexpected character {ch!r}", span)
    expected = set(getattr(exc, "expected", ()) or getattr(exc, "accepts", ()) or ())
    token = getattr(exc, "token", None)
    if isinstance(exc, UnexpectedEOF) or token is None or token.type == "$END":
        pos = len(text.rstrip())
        if "RETURN" in expected or "RBRACE" in expected and _inside_def(text):
            return _def_without_return(text, file, pos)
        if "SEMICOLON" in expected:
            return _missing_semicolon(text, file, pos)
        return Diagnostic("E101", "the file ends in the middle of a statement",
                          _span_at(text, file, max(0, pos - 1)))
    pos = token.start_pos
    span = Span(file, token.line, token.column, token.end_line or token.line,
                token.end_column or token.column + 1)
    if token.type == "EQUAL" or (token.value == "=" and "EQUAL" not in expected):
        return Diagnostic("E103", "`=` assigns a name; it cannot appear here", span,
                          "to compare values use `==`")
    if token.type == "RBRACE" and "RETURN" in expected:
        return _def_without_return(text, file, pos)
    if "SEMICOLON" in expected and _line_of(text, pos) > _line_of(text, _previous_end(text, pos) - 1):
        return _missing_semicolon(text, file, _previous_end(text, pos))
    if expected == {"SEMICOLON"}:
        return _missing_semicolon(text, file, _previous_end(text, pos))
    words = sorted({_WORDS.get(t, f"`{t.lower()}`") for t in expected})
    shown = ", ".join(words[:6]) + (", …" if len(words) > 6 else "")
    return Diagnostic("E101", f"unexpected {_describe(token)}", span,
                      f"expected {shown}" if words else None)


def _describe(token) -> str:
    if token.type == "NAME":
        return f"name `{token.value}`"
    if token.type in ("INT", "FLOAT", "STRING"):
        return f"literal {token.value}"
    return f"`{token.value}`"


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, max(0, pos)) + 1


def _missing_semicolon(text: str, file: str, end: int) -> Diagnostic:
    return Diagnostic("E102", "missing `;` at the end of the statement",
                      _span_at(text, file, max(0, end - 1)), "every statement ends with `;`")


def _inside_def(text: str) -> bool:
    return "def " in text


def _def_without_return(text: str, file: str, pos: int) -> Diagnostic:
    start = text.rfind("def ", 0, max(pos, 1))
    span = _span_at(text, file, start if start >= 0 else pos, 3)
    return Diagnostic("E105", "this `def` has no `return`", span,
                      "a function body ends with `return value;`")
