"""Benchmark of the reference interpreter: sequences per second for `sort` and `hist`.

Builds two programs over a 10-token vocabulary with @maxlen 64, draws 1,000 random sequences
of length 64 (seeded), and times `rasp_ir.interpreter.run` on the whole batch: one warm-up
run, then the best of several repeats. Pinned to one core (BLAS threads and CPU affinity).

    .venv/bin/python bench/interpreter.py [--sequences 1000] [--length 64] [--repeats 5]
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"          # before numpy is imported

import argparse  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # runnable from a checkout

import grammar  # noqa: E402
from rasp_ir.interpreter import run  # noqa: E402

VOCAB = [str(d) for d in range(10)]
TARGET = 5_000      # sequences per second

PROGRAMS = {
    "sort": "s = sort(tokens, tokens);\n@output s;",
    "hist": "h = selector_width(select(tokens, tokens, ==));\n@output h;",
}


def build(body: str, maxlen: int):
    header = "@vocab {" + ", ".join(f'"{t}"' for t in VOCAB) + "};\n" + f"@maxlen {maxlen};\n"
    return grammar.parse(header + body, "bench.rasp")


def time_run(program, sequences, repeats: int) -> float:
    run(program, sequences[:10])                       # warm-up (caches, first-call costs)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(program, sequences)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=1000)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(args.seed)
    sequences = [[rng.choice(VOCAB) for _ in range(args.length)]
                 for _ in range(args.sequences)]
    print(f"{args.sequences} sequences of length {args.length}, vocabulary {len(VOCAB)}, "
          f"best of {args.repeats} (one core)")
    ok = True
    for name, body in PROGRAMS.items():
        program = build(body, args.length)
        seconds = time_run(program, sequences, args.repeats)
        rate = args.sequences / seconds
        ok &= rate >= TARGET
        print(f"{name:5}  {seconds * 1000:8.1f} ms  {rate:10,.0f} sequences/s"
              f"  ({'meets' if rate >= TARGET else 'below'} the {TARGET:,}/s target)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
