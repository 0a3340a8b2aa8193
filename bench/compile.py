"""Compile every example at several maximum lengths; print sizes next to tracr's figures
(tracr's, measured with the vocabularies below), compile time, and agreement
with the interpreter on random inputs of lengths 1..N.

    python bench/compile.py [--lengths 5,10,20,50,64] [--inputs 200] [--programs reverse,sort]
                            [--repeat 5]

"ms" is the median of --repeat cold compiles (type inference included); the slowest single
compile is printed at the end.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grammar  # noqa: E402
from compiler.compile import compile_program  # noqa: E402
from rasp_ir.diagnostics import RaspError  # noqa: E402
from rasp_ir import types as T  # noqa: E402
from rasp_ir.interpreter import run  # noqa: E402

LETTERS = ("a", "b", "c", "d", "e")
# program: (vocabulary tracr was measured with, {N: (layers, d_model, MLP hidden, params)})
TRACR = {
    "length": (LETTERS, {5: (1, 20, 12, 1373), 10: (1, 30, 22, 2803)}),
    "reverse": (LETTERS, {5: (4, 45, 30, 20649), 10: (4, 75, 110, 95054),
                          20: (None, 135, 420, 551364), 50: (None, 315, 2550, 6972294)}),
    "histogram": (LETTERS, {5: (1, 20, 12, 1373), 10: (1, 30, 22, 2803),
                            20: (None, 50, 42, 7163), 50: (None, 110, 102, 32243)}),
    "sort_unique": (tuple(range(1, 11)), {5: (2, 35, 12, 5906), 10: (2, 45, 22, 9611)}),
    "sort": (tuple(range(1, 6)), {5: (3, 50, 25, 24968), 10: (3, 85, 50, 81198),
                                  20: (None, 155, 100, 289208), 50: (None, 365, 250, 1677638)}),
    "most_frequent": (LETTERS, {5: (5, 68, 30, 66114), 10: (5, 168, 110, 568054)}),
    "frac_prevs": (("a", "b", "c", "x"), {5: (2, 14, 1, 1108), 10: (2, 19, 1, 2373)}),
    "pair_balance": (("(", ")"), {5: (2, 16, 4, 2380)}),
    "shuffle_dyck": (tuple("(){}"), {5: (8, 55, 212, 246884), 10: (8, 70, 804, 1026950)}),
    "shuffle_dyck3": (tuple("(){}[]"), {5: (9, 70, 318, 528038), 10: (9, 85, 1206, 2099965)}),
    "count": (("a", "b", "c"), {5: (1, 18, 12, 1053)}),
}


def agreement(program, compiled, n_inputs: int, maxlen: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    vocab = list(program.vocab)
    matched = tested = 0
    inputs = []
    for _ in range(n_inputs):
        seq = [rng.choice(vocab) for _ in range(rng.randint(1, maxlen))]
        if program.bos is not None:
            seq[0] = program.bos
        inputs.append(seq)
    expected = []
    for seq in inputs:
        try:
            expected.append((seq, run(program, [seq])[0].output))
        except RaspError:
            pass
    decoded = compiled.run([seq for seq, _ in expected])
    for (seq, want), got in zip(expected, decoded):
        tested += 1
        matched += all(abs(a - b) < 1e-6 if isinstance(a, float) or isinstance(b, float)
                       else a == b for a, b in zip(want, got))
    return f"{matched}/{tested}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="5,10,20,50,64")
    parser.add_argument("--inputs", type=int, default=200)
    parser.add_argument("--programs", default=None)
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed compiles per program and N; the median is shown")
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    names = args.programs.split(",") if args.programs else sorted(
        p.stem for p in (ROOT / "examples").glob("*.rasp"))
    header = (f"{'program':15} {'N':>3} | {'layers':>6} {'d_model':>7} {'MLP':>6} {'params':>10} "
              f"{'ms':>6} {'exact':>8} | tracr: {'layers':>6} {'d_model':>7} {'MLP':>6} "
              f"{'params':>10}")
    print(header)
    print("-" * len(header))
    slowest = (0.0, "", 0)
    for name in names:
        base = grammar.load(ROOT / "examples" / f"{name}.rasp")
        vocab, tracr = TRACR.get(name, (None, {}))
        for n in lengths:
            program = attrs.evolve(base, maxlen=n, vocab=vocab or base.vocab)
            try:
                compile_program(program)                 # warm imports and lark
            except RaspError as exc:
                print(f"{name:15} {n:>3} | not compiled: {exc.diagnostics[0].message}")
                continue
            times = []
            for _ in range(args.repeat):                 # the median of cold compiles
                T._infer_cached.cache_clear()            # (typing included)
                start = time.perf_counter()
                compiled = compile_program(program)
                times.append((time.perf_counter() - start) * 1000)
            ms = statistics.median(times)
            slowest = max(slowest, (max(times), name, n))
            s = compiled.stats
            exact = agreement(program, compiled, args.inputs, n)
            t = tracr.get(n)
            theirs = (f"{t[0] if t[0] else '-':>6} {t[1]:>7} {t[2]:>6} {t[3]:>10}" if t
                      else f"{'':>6} {'':>7} {'':>6} {'':>10}")
            print(f"{name:15} {n:>3} | {s['layers']:>6} {s['residual_width']:>7} "
                  f"{s['mlp_width']:>6} {s['parameters']:>10} {ms:>6.0f} {exact:>8} | "
                  f"tracr: {theirs}")
    worst, name, n = slowest
    print(f"\nslowest single compile: {worst:.0f} ms ({name}, N={n})")


if __name__ == "__main__":
    main()
