"""What every command shares: exit codes, diagnostics, reading programs and inputs, printing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rasp_ir.diagnostics import Diagnostic, RaspError

# Exit codes: 0 success, 1 a finding or an error in the input, 2 a failure to run.
EXIT_OK, EXIT_ERROR = 0, 1
EXIT_DIFFERENT, EXIT_FAILED = 1, 2



def print_diagnostics(diagnostics: list[Diagnostic], source: str | None = None,
                       sources: dict | None = None) -> None:
    for d in diagnostics:
        text = source
        if d.span is not None and sources is not None:
            text = sources.get(d.span.file, source)
        if d.span is not None and text is None:
            try:
                text = Path(d.span.file).read_text(encoding="utf-8")
            except OSError:
                text = None
        print(d.render(text), file=sys.stderr)
        print(file=sys.stderr)


def load_program(path: Path):
    import grammar
    return grammar.load(path)


def parse_input(text: str, vocab: tuple | None) -> list:
    """A command-line input: a JSON list of tokens; else, where the vocabulary has tokens longer
    than one character, tokens separated by spaces; else a string of characters. Tokens are
    matched to the vocabulary's spelling (3 -> "3" when the vocabulary holds strings)."""
    tokens = None
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RaspError([Diagnostic("R233", f"input {text!r} is not a JSON list: {exc.msg} "
                                        f"at column {exc.colno}")]) from None
        if not isinstance(value, list) or any(isinstance(v, (list, dict)) for v in value):
            raise RaspError([Diagnostic("R233", f"input {text!r} must be a flat JSON list")])
        tokens = value
    if tokens is None:
        if vocab and any(isinstance(v, str) and len(v) > 1 for v in vocab):
            # a vocabulary of words (`<bos>`, `17`): tokens are separated by spaces
            tokens = text.split()
        else:
            return list(text)
    if vocab is None:
        return tokens
    known = set(vocab)
    by_text = {str(v): v for v in vocab}
    return [t if t in known else by_text.get(str(t), t) for t in tokens]


def plain(values) -> str:
    if values and all(isinstance(v, str) and len(v) == 1 for v in values):
        return "".join(values)
    return json.dumps(rounded(values), ensure_ascii=False)


def rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def read_inputs(args) -> list[str] | None:
    """The INPUT arguments, else one input per non-blank line of a piped standard input; None
    (with a message) when there are none."""
    texts = args.inputs
    if not texts:
        if sys.stdin is None or sys.stdin.isatty():
            print("rasp run: give at least one INPUT (or pipe inputs, one per line)",
                  file=sys.stderr)
            return None
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    return texts


def print_result(record: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record, ensure_ascii=False))
    else:
        print(plain(record["output"]))


def progress_enabled(args) -> bool:
    return not args.quiet and sys.stderr is not None and sys.stderr.isatty()


def print_buckets(accuracy: dict, recorded: dict | None = None) -> None:
    for bucket, value in accuracy.items():
        extra = ""
        if recorded and bucket in recorded:
            extra = f"   (acc.txt {recorded[bucket]:.4f}, diff {value - recorded[bucket]:+.4f})"
        print(f"  {bucket:<10} {value:.4f}{extra}")


def status_line(args):
    """A one-line progress display on stderr: call with text to update, None to clear."""
    enabled = progress_enabled(args)

    def show(text):
        if not enabled:
            return
        sys.stderr.write("\r\033[K" + (f"extract: {text}" if text else ""))
        sys.stderr.flush()
    return show


def failed(exc: RaspError) -> int:
    print_diagnostics(exc.diagnostics, exc.source)
    return EXIT_FAILED


def tokens_text(tokens) -> str:
    return json.dumps(list(tokens), ensure_ascii=False, default=str)
