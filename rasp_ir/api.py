"""The Python API: what the `rasp` command does, as functions returning objects.

    import rasp_ir

    program = rasp_ir.load("examples/reverse.rasp")
    [result] = rasp_ir.run(program, ["hello"])
    result.output                                # ['o', 'l', 'l', 'e', 'h']
    model = rasp_ir.compile(program, output="reverse.model")
    rasp_ir.equivalent(program, "examples/reverse.rasp").equal      # True

Each function is a thin wrapper over the library (the grammar, the interpreter, the compiler,
the extractor), imported inside the function so that `import rasp_ir` stays light. A program
argument may be an `rasp_ir.nodes.Program`, a path to a .rasp file (str or Path), or program
text (a str holding a `;` or a newline). Mistakes in programs, inputs or checkpoints raise
`rasp_ir.diagnostics.RaspError`, whose `diagnostics` carry the codes and positions the command
line prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from rasp_ir.nodes import Program

__all__ = ["load", "parse", "run", "compile", "extract", "equivalent", "verify"]


def load(path) -> "Program":
    """The program in the .rasp file at `path` (its side-file of tables is read on demand)."""
    import grammar
    return grammar.load(Path(path))


def parse(text: str, file: str = "<string>") -> "Program":
    """The program written in `text`; `file` names it in diagnostics."""
    import grammar
    return grammar.parse(text, file)


def _program(program):
    from rasp_ir import nodes
    if isinstance(program, nodes.Program):
        return program
    if isinstance(program, str) and (";" in program or "\n" in program):
        return parse(program)
    return load(program)


def run(program, inputs, add_bos: bool = True) -> list:
    """Evaluate the program's @output on each input; one `rasp_ir.interpreter.Result` per
    input, with `.input` (the tokens run), `.output` (a value per position) and `.logits`
    (for logits outputs the raw logits, for softmax or sigmoid predictions the probabilities,
    per position; else None). An input is a list of tokens, or a str of one-character tokens.
    With add_bos, the program's @bos token is put in front of inputs that lack it."""
    from rasp_ir.interpreter import run as interpret
    sequences = [list(x) for x in inputs]
    return interpret(_program(program), sequences, add_bos=add_bos)


def compile(program, max_len: int | None = None, output: str | Path | None = None):
    """The program's @output compiled to an exact transformer: a
    `compiler.compile.CompiledModel` (`.model`, a torch module; `.run(inputs)`, decoded
    outputs; `.logits(inputs)`; `.stats`). The vocabulary and maximum length come from @vocab
    and @maxlen unless `max_len` is given. With `output`, it is also written there (the
    directory `rasp run --model` and `rasp verify` read)."""
    from compiler.compile import compile_program, save_compiled
    compiled = compile_program(_program(program), max_len)
    if output is not None:
        save_compiled(compiled, Path(output))
    return compiled


class Extracted(NamedTuple):
    """What `extract` returns: the program written and its report (docs/report.md)."""
    program: "Program"
    report: object


def extract(checkpoint: str | Path, output: str | Path, *, stage: str = "pruned",
            task: str | None = None, quick: bool = False, threshold: float | None = None,
            n: int | None = None, seed: int = 0, workers: int | None = None,
            max_runs: int = 8, executor=None, device: str = "cpu",
            progress=None) -> Extracted:
    """`rasp extract CHECKPOINT -o OUTPUT`: rewrite a trained checkpoint (or a model written
    by `rasp compile`) as a RASP program, written to `output` (a .rasp path) with its tables
    and report beside it; pruning runs are cached in OUTPUT.runs/. stage "pruned" (the short
    program) or "full" (the exact program of every path); the other options are the command's.
    `executor`: "local", "ray[:ADDRESS]", "dask[:ADDRESS]" (as --executor) or any
    concurrent.futures.Executor, which the caller keeps and shuts down.
    `progress(text, done=None, total=None)` hears about each step."""
    import os

    from extractor.decompile.compiled import extract_compiled
    from extractor.decompile.extract import (ExtractSettings, extract_full, extract_program,
                                             write_extraction)
    from extractor.tasks.checkpoint import load_subject
    output = Path(output)
    if output.suffix != ".rasp":
        from rasp_ir.diagnostics import Diagnostic, RaspError
        raise RaspError([Diagnostic("X503", f"{output}: the program's file name must end in "
                                    ".rasp (its tables go beside it)")])
    subject = load_subject(checkpoint, task)
    if stage == "full":
        result = extract_full(subject, n=n or 2000, seed=seed, progress=progress)
    elif subject.kind == "compiled":
        result = extract_compiled(subject, 1.0 if threshold is None else threshold, seed,
                                  progress=progress)
    else:
        from extractor.decompile.cluster import open_executor
        from extractor.decompile.sweep import check_device
        check_device(device)
        settings = ExtractSettings(
            threshold=0.9 if threshold is None else threshold,
            workers=workers or min(2, os.cpu_count() or 1), seed=seed,
            n=n or (200 if quick else 1000), quick=quick, max_runs=max_runs, device=device)
        own = executor is None or isinstance(executor, str)
        pool = open_executor(executor or "local", settings.workers, device) if own else executor
        try:
            result = extract_program(subject, checkpoint, task, output.with_suffix(".runs"),
                                     settings, pool, progress=progress)
        finally:
            if own:
                pool.shutdown(cancel_futures=True)
    report = write_extraction(result, output, checkpoint, subject, None, seed,
                              progress=progress)
    return Extracted(result.program, report)


def equivalent(a, b, max_len: int | None = None, **options):
    """`rasp equiv A B`: whether programs `a` and `b` agree on every input up to `max_len`;
    a `rasp_ir.equiv.Equivalence` (`.equal`, `.proven`, `.counterexample`, `.summary()`).
    options: bound, examples, seed, tolerance, hypothesis_examples (rasp_ir.equiv.equivalent)."""
    from rasp_ir.equiv import equivalent as decide
    return decide(_program(a), _program(b), max_len, **options)


def verify(program, checkpoint: str | Path, task: str | None = None, **options):
    """`rasp verify PROGRAM CHECKPOINT`: match of the program with the checkpoint per length
    bucket, where the task scores; an `extractor.checking.verify.Verification` (`.matches`,
    `.buckets`, `.generated_buckets()`, `.counterexample`, `.summary()`). options: n, seed,
    max_len, bound, examples, all_positions (extractor.checking.verify.verify)."""
    from extractor.checking.verify import verify as compare
    return compare(_program(program), checkpoint, task, **options)
