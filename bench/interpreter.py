"""Interpreter throughput: sequences per second for `sort` and `hist` on 1,000 random sequences
of length 64, on one core.

    python bench/interpreter.py [--sequences 1000] [--length 64] [--repeats 5]
"""

from __future__ import annotations

import os

# one core: set before numpy loads its thread pools
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grammar  # noqa: E402
from rasp_ir.interpreter import run  # noqa: E402

VOCAB = list("abcdefghij")
PROGRAMS = {
    "sort": "sort(tokens, tokens)",
    "hist": "selector_width(select(tokens, tokens, ==))",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=1000)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(0)
    inputs = [[rng.choice(VOCAB) for _ in range(args.length)] for _ in range(args.sequences)]
    vocab = ", ".join(f'"{v}"' for v in VOCAB)
    for name, expression in PROGRAMS.items():
        program = grammar.parse(f"@vocab {{{vocab}}};\n@maxlen {args.length};\n"
                                f"out = {expression};\n@output out;\n")
        run(program, inputs[:10])                      # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            run(program, inputs)
            best = min(best, time.perf_counter() - start)
        print(f"{name:5} {args.sequences} sequences of length {args.length}: "
              f"{args.sequences / best:,.0f} sequences/s (best of {args.repeats}: {best * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
