"""A task read from a JSON Lines file: one labelled token sequence per line.

Format (UTF-8, one JSON object per line, blank lines ignored):

    {"vocab": ["a", "b"], "train_lengths": [1, 8]}              optional first line
    {"input": ["a", "b", "b"], "target": ["b", "b", "a", "<eos>"]}
    {"input": ["a", "b"], "next": [["a"], ["b"], ["a", "<eos>"]]}

- `input` + `target`: a language-modelling example, the sequence `<bos> input <sep> target`,
  scored on every target token (teacher forcing). Put `<eos>` in `target` to score it.
- `input` + `next`: a next-token-set example, the sequence `<bos> input <eos>`; `next` has one
  set per position before `<eos>` (after `<bos>`, after each input token), each a list of the
  tokens allowed there, `<eos>` included when the prefix is complete.
- All examples of a file are of one kind. Tokens are strings (numbers are read as their
  decimal text: 3 is "3").
- The optional header fixes the vocabulary's order (`vocab`: the symbols, without special
  tokens) and the training lengths. Without it the vocabulary is every symbol in the file,
  numbers first in numeric order, then the rest in code-point order; the training lengths span
  the file. An example's length is len(input). Training examples get no position offset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from extractor.tasks.base import IGNORE, Example, Task
from extractor.tasks.vocabulary import BOS, EOS, SEP, SPECIALS, Vocabulary
from rasp_ir.diagnostics import Diagnostic, RaspError


class JsonlTask(Task):
    """The examples of a JSON Lines file (see the module docstring)."""

    def __init__(self, path: Path, mode: str, symbols: list[str],
                 records: list[tuple[int, list[str], list]], train_lengths=None):
        self.path = path
        self.name = str(path)
        self.mode = mode
        self.description = f"{len(records)} examples from {path}"
        self._vocab = Vocabulary(symbols)
        self.examples = [self._encode(*record) for record in records]
        lengths = [e.length for e in self.examples]
        self.min_length, self.max_length = min(lengths), max(lengths)
        self.train_lengths = tuple(train_lengths or (self.min_length, self.max_length))
        self._longest = max(len(e.tokens) for e in self.examples)

    @property
    def vocab(self):
        return self._vocab

    @property
    def n_positions(self):
        return self._longest

    @property
    def test_buckets(self):
        """The training lengths, and the longer lengths of the file if it has any."""
        lo, hi = self.train_lengths
        return [(lo, hi)] + ([(hi + 1, self.max_length)] if self.max_length > hi else [])

    def valid_length(self, n):
        return any(e.length == n for e in self.examples)

    def _encode(self, line: int, inputs: list[str], labels: list) -> Example:
        v = self.vocab
        if self.mode == "lm":
            tokens = np.array(v.ids([BOS, *inputs, SEP, *labels]))
            targets = np.full(len(tokens), IGNORE, dtype=np.int64)
            targets[len(inputs) + 1:-1] = tokens[len(inputs) + 2:]
        else:
            tokens = np.array(v.ids([BOS, *inputs, EOS]))
            targets = np.zeros((len(tokens), len(v)), dtype=np.uint8)
            for i, allowed in enumerate(labels):
                targets[i, v.ids(allowed)] = 1
        return Example(tokens.astype(np.int64), targets, 0, len(inputs))

    def _within(self, lo: int, hi: int) -> list[Example]:
        return [e for e in self.examples if lo <= e.length <= hi]

    def sample(self, rng, lo, hi, offset):
        pool = self._within(lo, hi)
        if not pool:
            raise ValueError(f"{self.path} has no examples with lengths {lo}-{hi}")
        return pool[int(rng.integers(len(pool)))]

    def example(self, rng, n, offset):
        return self.sample(rng, n, n, offset)

    def evaluation_set(self, lo, hi, n, seed=0):
        """The file's first n examples with lengths in [lo, hi] (fewer if it has fewer)."""
        return self._within(lo, hi)[:n]


def load_jsonl_task(path: Path) -> JsonlTask:
    """Read a JSON Lines task; RaspError T402 names the file and line of every problem."""
    problems: list[Diagnostic] = []

    def problem(line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        problems.append(Diagnostic("T402", f"{where}: {message}"))

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise RaspError([Diagnostic("T402", f"{path}: cannot read the file ({reason})")]) \
            from None
    header, records, kinds = {}, [], {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            problem(number, f"not JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            problem(number, f"a JSON {type(obj).__name__}, expected an object")
            continue
        if not records and not kinds and "input" not in obj:
            header = _header(obj, number, problem)
            continue
        record = _record(obj, number, problem)
        if record is not None:
            kinds.setdefault(record[0], number)
            records.append((number, *record))
    if len(kinds) > 1:
        problem(max(kinds.values()), f"mixes 'target' examples (first on line {kinds.get('lm')})"
                f" with 'next' examples (first on line {kinds.get('bce')})")
    if not records and not problems:
        problem(None, "no examples (each line needs 'input' and 'target' or 'next')")
    symbols = header.get("vocab") or _symbols(records)
    known = set(symbols) | set(SPECIALS)
    for number, kind, inputs, labels in records:
        flat = inputs + (labels if kind == "lm" else [t for row in labels for t in row])
        unknown = sorted({t for t in flat if t not in known})
        if unknown:
            problem(number, f"tokens {unknown} are not in the header's vocab")
        if [t for t in inputs if t in SPECIALS]:
            problem(number, "'input' holds a special token (<bos>, <sep>, <eos> and <pad> are "
                    "added by the format)")
    if problems:
        raise RaspError(problems)
    return JsonlTask(path, "lm" if "lm" in kinds else "bce", symbols,
                     [(number, inputs, labels) for number, _, inputs, labels in records],
                     header.get("train_lengths"))


def _tokens(value) -> list[str] | None:
    if not isinstance(value, list):
        return None
    if not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in value):
        return None
    return [str(t) for t in value]


def _header(obj: dict, line: int, problem) -> dict:
    unknown = sorted(obj.keys() - {"vocab", "train_lengths", "name"})
    if unknown:
        problem(line, f"unknown header keys {unknown} (an example needs 'input')")
    header = {}
    if "vocab" in obj:
        vocab = _tokens(obj["vocab"])
        if vocab is None or len(set(vocab)) != len(vocab) or set(vocab) & set(SPECIALS):
            problem(line, "'vocab' must be a list of distinct token strings, without "
                    "special tokens")
        else:
            header["vocab"] = vocab
    if "train_lengths" in obj:
        span = obj["train_lengths"]
        if (not isinstance(span, list) or len(span) != 2
                or not all(isinstance(x, int) and x >= 0 for x in span) or span[0] > span[1]):
            problem(line, "'train_lengths' must be [lo, hi] with 0 <= lo <= hi")
        else:
            header["train_lengths"] = span
    return header


def _record(obj: dict, line: int, problem):
    """("lm" | "bce", input tokens, targets) or None after reporting the problem."""
    unknown = sorted(obj.keys() - {"input", "target", "next"})
    if unknown:
        problem(line, f"unknown keys {unknown}")
        return None
    inputs = _tokens(obj.get("input"))
    if inputs is None:
        problem(line, "'input' must be a list of tokens")
        return None
    if ("target" in obj) == ("next" in obj):
        problem(line, "give exactly one of 'target' (language modelling) and 'next' "
                "(next-token sets)")
        return None
    if "target" in obj:
        target = _tokens(obj["target"])
        if not target:
            problem(line, "'target' must be a non-empty list of tokens")
            return None
        return "lm", inputs, target
    rows = obj["next"]
    parsed = [_tokens(row) for row in rows] if isinstance(rows, list) else [None]
    if any(row is None for row in parsed):
        problem(line, "'next' must be a list of lists of tokens")
        return None
    if len(parsed) != len(inputs) + 1:
        problem(line, f"'next' has {len(parsed)} sets; it needs len(input) + 1 = "
                f"{len(inputs) + 1} (after <bos> and after each input token)")
        return None
    return "bce", inputs, parsed


def _symbols(records) -> list[str]:
    seen = set()
    for _, _, inputs, labels in records:
        seen.update(inputs)
        for item in labels:
            seen.update(item if isinstance(item, list) else [item])
    seen -= set(SPECIALS)
    numeric = [t for t in seen if t.isascii() and t.isdigit()]
    return sorted(numeric, key=lambda t: (int(t), t)) + sorted(seen - set(numeric))
