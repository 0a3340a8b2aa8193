"""Extractor part 1 on every checkpoint of ../shared/checkpoints: LLN-A faithfulness per
bucket, the size of the full program, the time to build it, and its exactness (max |logit
difference| between the interpreter running the program and the linearised model, in float32,
relative to max(1, |logit|) in float32, and in float64).

    python bench/extract_full.py [--n 2000] [--check 10] [--only unique_copy,bce_D2]

Exit status 1 if a program misses (1e-4 relative in float32, 1e-9 in float64) or takes 30 s
or more to build.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from extractor.tasks.checkpoint import checkpoint_folders  # noqa: E402
from extractor.decompile.extract import extract_full  # noqa: E402
from extractor.tasks.checkpoint import load_subject
from extractor.decompile.linearise import linearised  # noqa: E402
from rasp_ir import nodes as ir  # noqa: E402
from rasp_ir.interpreter import evaluate  # noqa: E402
from rasp_ir.printer import pretty  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=ROOT.parent / "shared" / "checkpoints")
    parser.add_argument("--n", type=int, default=2000, help="sequences per faithfulness bucket")
    parser.add_argument("--check", type=int, default=10,
                        help="sequences per bucket for the exactness check")
    parser.add_argument("--only", help="comma-separated folder-name prefixes")
    args = parser.parse_args()
    torch.set_num_threads(2)
    folders = checkpoint_folders(args.dir, args.only)
    print(f"{len(folders)} checkpoints, {args.n} sequences per bucket, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print("| checkpoint | scales | LLN-A match 0-50 / 51-100 / 101-150 | KL 0-50 | paths | "
          "score terms | table entries | lines | scales s | build s | max diff: abs f32 / rel f32 / abs f64 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    failures = 0
    for folder in folders:
        subject = load_subject(folder)
        result = extract_full(subject, n=args.n)
        r = result.report.to_json()
        lln = r["lln_a"]
        matches = " / ".join(f"{b['match']:.3f}" for b in lln["faithfulness"].values())
        kl = next(iter(lln["faithfulness"].values()))["kl"]
        linear = linearised(subject.model, lln["scales"])
        task = subject.task
        rng = np.random.default_rng(0)
        examples = [task.sample(rng, lo, hi, offset=False) for lo, hi in task.test_buckets
                    for _ in range(args.check)]
        got = evaluate(result.program, [task.vocab.names(e.tokens) for e in examples],
                       ir.Ref("logits"))
        worst = rel = worst64 = 0.0
        linear64 = linearised(subject.model.double(), lln["scales"])
        with torch.no_grad():
            for e, logits in zip(examples, got):
                ids = torch.tensor(e.tokens)[None]
                ref = linear(ids)[0].numpy()
                ref64 = linear64(ids)[0].numpy()
                worst = max(worst, float(np.abs(logits - ref).max()))
                rel = max(rel, float((np.abs(logits - ref) / np.maximum(1, np.abs(ref))).max()))
                worst64 = max(worst64, float(np.abs(logits - ref64).max()))
        size = r["program"]
        lines = len(pretty(result.program).splitlines())
        build = r["seconds"]["build"]
        # float32 rounds logits of size ~80 by ~1e-4 itself: judged relative to max(1, |logit|)
        bad = rel > 1e-4 or worst64 > 1e-9 or build >= 30
        failures += bad
        print(f"| {folder.name} | {lln['method']} | {matches} | {kl:.1e} | {size['paths']} | "
              f"{size['score_terms']} | {size['table_entries']:,} | {lines} | "
              f"{r['seconds']['scales']:.1f} | {build:.2f} | {worst:.1e} / {rel:.1e} / "
              f"{worst64:.1e}{' ✗' if bad else ''} |",
              flush=True)
    print(f"\n{len(folders) - failures}/{len(folders)} exact (float32 within 1e-4 x max(1, "
          "|logit|), float64 within 1e-9) and built in under 30 s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
