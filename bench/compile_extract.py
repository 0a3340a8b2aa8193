"""Compile, extract, compare: every example program through the round trip of issue 7 §4.

    python bench/compile_extract.py [--only reverse,sort] [--max-len 8] [--out DIR]

For each `examples/*.rasp` that compiles: `rasp compile` at length N (default 8, or the
program's @maxlen when smaller), `rasp extract` on the compiled model (default stage: greedy
pruning at match 1.0, MLP tables, primitives, simplification), the program written and read back,
then `rasp equiv SOURCE EXTRACTED --max-len N`: exhaustive up to the length where the inputs
number at most 200,000 (the default bound), property-based beyond. One row per example:
printed lines of the source and of the extracted program, the extracted program's match on the
generated inputs, what equiv established, and the time.

Exit status 1 when equiv finds a difference for any example.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import grammar
    from compiler.compile import compile_program, save_compiled
    from extractor.decompile.compiled import extract_compiled
    from extractor.decompile.extract import program_lines
    from extractor.tasks.checkpoint import load_subject
    from rasp_ir.diagnostics import RaspError
    from rasp_ir.equiv import equivalent
    from rasp_ir.tables import write_program

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated example names")
    parser.add_argument("--max-len", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the models and programs here (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rasp-compile-extract-"))
    out.mkdir(parents=True, exist_ok=True)
    examples = sorted((ROOT / "examples").glob("*.rasp"))
    if args.only:
        examples = [e for e in examples if e.stem in args.only.split(",")]
    print("| example | N | vocab | source lines | extracted lines | ratio | match | equiv | "
          "extract s | equiv s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    failed = 0
    for path in examples:
        source = grammar.load(path)
        n = min(args.max_len, source.maxlen or args.max_len)
        try:
            compiled = compile_program(source, n)
        except RaspError as exc:
            print(f"| {path.stem} | {n} | | | | | | does not compile: {exc.codes[0]} | | |")
            continue
        model_dir = out / path.stem
        save_compiled(compiled, model_dir)
        start = time.perf_counter()
        result = extract_compiled(load_subject(model_dir))
        seconds = time.perf_counter() - start
        written = out / f"{path.stem}.extracted.rasp"
        write_program(result.program, written)
        extracted = grammar.load(written)            # what `rasp equiv` reads
        start = time.perf_counter()
        eq = equivalent(source, extracted, max_len=n, names=(path.name, written.name))
        equiv_seconds = time.perf_counter() - start
        s = eq.search
        if not eq.equal:
            verdict = f"DIFFERENT at {eq.counterexample.input}"
            failed += 1
        elif eq.proven:
            verdict = f"proven, all {s.checked:,} inputs to length {n}"
        else:
            verdict = (f"proven to length {s.exhaustive_up_to} ({s.space.total(1, s.exhaustive_up_to):,} "
                       f"inputs), no difference in {s.random_inputs + s.hypothesis_inputs:,} "
                       f"more to length {n}")
        a, b = program_lines(source), program_lines(extracted)
        match = result.report.evaluation.worst()
        print(f"| {path.stem} | {n} | {len(source.vocab or ())} | {a} | {b} | {b / a:.1f} | "
              f"{match:.4f} | {verdict} | {seconds:.1f} | {equiv_seconds:.1f} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
