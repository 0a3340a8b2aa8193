"""Coded diagnostics: a code, a message in the language's own terms, a span with a caret, a hint.

Codes: E1xx syntax, E2xx types and names, E3xx value sets, R2xx runtime (interpreter),
C3xx checkpoints (compiler/checkpoint.py), T4xx tasks, training and evaluation (extractor/),
X5xx extraction, V6xx verification (`rasp equiv`, `rasp verify`), D7xx pictures (`rasp report`,
`rasp draw`, `rasp attention`), W1xx/W2xx warnings.
`rasp_ir.diagnostics.CODES` lists each with a one-line summary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import field, frozen

if TYPE_CHECKING:           # an annotation only: `rasp --help` need not build the IR classes
    from .nodes import Span

CODES = {
    "E101": "syntax error",
    "E102": "missing `;` at the end of a statement",
    "E103": "`=` where `==` was meant",
    "E104": "unbalanced brackets",
    "E105": "`def` without `return`",
    "E106": "unexpected character",
    "E107": "unterminated string",
    "E108": "chained comparison",
    "E109": "invalid assignment target",
    "E110": "unknown or malformed directive",
    "E111": "a program past a size limit: bytes, nesting depth, digits of a literal (limits.py)",
    "E201": "incompatible operand types",
    "E202": "mixing a selector and an s-op in and/or/not",
    "E203": "branches or condition of `if … else` of different kinds",
    "E204": "indicator expects a boolean s-op",
    "E205": "wrong kind of argument",
    "E206": "table lookup with a key that is missing",
    "E207": "index into a sequence is not a constant integer",
    "E208": "index out of range",
    "E210": "select's keys and queries cannot be compared",
    "E211": "a predicate that is not boolean",
    "E212": "a table whose shape does not match the bases",
    "E213": "scores combined with and/or",
    "E214": "adding a selector and an s-op",
    "E220": "aggregate's first argument is not a selector",
    "E221": "aggregate's default is not a constant",
    "E223": "a default under softmax attention",
    "E224": "selector_width expects a selector",
    "E231": "project needs a vector over a known basis and an output vocabulary",
    "E232": "logits over different vocabularies",
    "E240": "wrong number of arguments",
    "E241": "recursion (functions are macros and cannot call themselves)",
    "E242": "loop over an s-op",
    "E243": "a loop, comprehension, list, vocabulary or function expansion past its limit",
    "E244": "a library that loads itself (a load cycle)",
    "E250": "undefined name",
    "E251": "assignment to a reserved name",
    "E252": "library or side-file not found",
    "E254": "a side-file of tables is unreadable or malformed",
    "E253": "calling something that is not a function",
    "E260": "@output is a selector or missing",
    "E270": "@expect is malformed or its input is outside @vocab",
    "E271": "@expect does not hold",
    "E305": "a value set that is not finite where one is required",
    "E306": "a one-hot basis, selector or table too large to build (checked before allocating)",
    "E401": "a construct the compiler cannot compile exactly",
    "R201": "runtime type error",
    "R230": "a categorical aggregate averaged different values",
    "R231": "division by zero",
    "R232": "a value missing from a lookup table",
    "R233": "input outside @vocab, @maxlen or @bos",
    "R234": "empty or mixed-type input",
    "C301": "checkpoint directory, config.json or model.safetensors not found",
    "C302": "config.json is not a JSON object",
    "C303": "model.safetensors is unreadable (truncated or corrupted)",
    "C304": "config.json has an unknown model_type",
    "C305": "a config field is missing, unknown or of the wrong type",
    "C306": "config fields are inconsistent or unsupported",
    "C307": "a weight is missing from the checkpoint",
    "C308": "an unexpected weight in the checkpoint",
    "C309": "a weight has the wrong shape",
    "C310": "a weight is not a floating-point tensor",
    "C311": "a tied lm_head.weight differs from wte.weight",
    "C312": "the model cannot be saved in the requested format",
    "C313": "a tokenizer file (tokenizer.json, special_tokens_map.json) is unreadable or malformed",
    "C314": "an optional package is not installed (TransformerLens: the tl extra)",
    "C315": "a weight holds NaN or infinite values",
    "C316": "an output directory holds another kind of artefact or an earlier run's (--force)",
    "T401": "unknown task",
    "T402": "a task file (JSON Lines or Python) is malformed",
    "T403": "a checkpoint does not fit the task (vocabulary, mode or positions)",
    "T404": "bad length buckets or lengths outside what the task supports",
    "T405": "the task of a checkpoint cannot be determined",
    "T406": "bad training options",
    "T407": "a checkpoint's task.json names a Python task file (only --task may run code)",
    "X501": "the full program of a model would be too large (paths multiply with depth)",
    "X502": "a model with LayerNorm needs task data for its LLN-A scales",
    "X503": "bad output path for an extracted program",
    "X504": "sweep pruning needs task data (a compiled model has none)",
    "X505": "a device torch cannot use here (--device cuda without a GPU torch sees)",
    "X506": "bad --executor, its package missing, or its cluster unreachable",
    "V601": "a program cannot be checked: it has no @vocab",
    "V602": "two programs (or a program and a model) have different vocabularies or BOS tokens",
    "V603": "outputs of kinds that cannot be compared",
    "V604": "bad option for rasp equiv or rasp verify (lengths, counts, bound, tolerance)",
    "V605": "a program does not fit the checkpoint it is verified against",
    "D701": "drawing needs matplotlib (the viz extra: pip install 'rasp-ir[viz]')",
    "D702": "a file a picture reads (report, side-file) is missing or malformed",
    "D703": "bad output path for a picture",
    "D704": "an input a picture cannot be drawn on (outside the model's vocabulary, too long)",
    "W101": "RASP 0.1 would read a statement differently (operator precedence)",
    "W222": "a numerical aggregate with a non-zero default",
}


@frozen
class Diagnostic:
    """One problem found in a program."""
    code: str
    message: str
    span: Span | None = None
    hint: str | None = None
    note: str | None = field(default=None)

    @property
    def severity(self) -> str:
        return {"E": "error", "C": "error", "T": "error", "X": "error", "V": "error", "D": "error",
                "R": "runtime error",
                "W": "warning"}[self.code[0]]

    def render(self, source: str | None = None) -> str:
        """The rustc-style text: header, location, source line with carets, hint. Control
        characters are shown escaped (`\\x1b`), never sent to the terminal as they are, and a
        long source line is cut to a window around the caret."""
        lines = [f"{self.severity}[{self.code}]: {visible(self.message)}"]
        if self.span is not None:
            s = self.span
            lines.append(f"  --> {visible(s.file)}:{s.line}:{s.column}")
            text = _source_line(source, s.line)
            if text is not None:
                width = len(str(s.line))
                end = s.end_column if s.end_line == s.line else len(text) + 1
                shown, pad, carets = _window(text, s.column - 1, max(s.column, end) - 1)
                lines += [f" {' ' * width} |", f" {s.line} | {shown}",
                          f" {' ' * width} | {' ' * pad}{'^' * carets}"]
        if self.note:
            lines.append(f"   = note: {visible(self.note)}")
        if self.hint:
            lines.append(f"   = hint: {visible(self.hint)}")
        return "\n".join(lines)


_SHOWN_WIDTH = 120          # characters of a source line shown around the caret


def visible(text: str) -> str:
    """`text` with control characters (escape sequences, bells, carriage returns, C1 codes)
    written as Python escapes, so that a file cannot drive the terminal it is reported on."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else
                   ch.encode("unicode_escape").decode("ascii") for ch in text)


def _window(text: str, start: int, end: int) -> tuple[str, int, int]:
    """(the part of `text` to show, spaces before the carets, number of carets) for the
    characters start..end, the line cut to about _SHOWN_WIDTH characters around them."""
    start = min(max(0, start), len(text))
    end = max(start + 1, end)
    left = max(0, start - _SHOWN_WIDTH // 3)
    right = min(len(text), max(end, left + _SHOWN_WIDTH))
    before, marked, after = (visible(text[left:start]), visible(text[start:end]),
                             visible(text[end:right]))
    if len(marked) > _SHOWN_WIDTH:
        marked, after = marked[:_SHOWN_WIDTH] + "…", ""
    prefix = "…" if left > 0 else ""
    suffix = "…" if right < len(text) else ""
    return (prefix + before + marked + after + suffix, len(prefix) + len(before),
            max(1, len(marked)))


def _source_line(source: str | None, line: int) -> str | None:
    if source is None:
        return None
    lines = source.splitlines()
    return lines[line - 1].expandtabs(1) if 0 < line <= len(lines) else None


class RaspError(Exception):
    """One or more diagnostics that stop a program from being built or run."""

    def __init__(self, diagnostics: list[Diagnostic], source: str | None = None):
        self.diagnostics = list(diagnostics)
        self.source = source
        super().__init__("\n".join(d.render(source) for d in self.diagnostics))

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnostics]

    def render(self) -> str:
        return "\n\n".join(d.render(self.source) for d in self.diagnostics)


def error(code: str, message: str, span: Span | None = None, hint: str | None = None,
          source: str | None = None, note: str | None = None) -> RaspError:
    """A RaspError holding one diagnostic."""
    return RaspError([Diagnostic(code, message, span, hint, note)], source)
