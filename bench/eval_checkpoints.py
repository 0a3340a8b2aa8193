"""Evaluate every checkpoint of ../shared/checkpoints (the D-RASP paper's models) per length
bucket and print a table next to the accuracies each recorded in its acc.txt.

    python bench/eval_checkpoints.py [--n 2000] [--seed 0] [--only unique_copy,bce_D2]
                                     [--dir ../shared/checkpoints] [--tolerance 0.02]

Exit status 1 if any bucket differs from acc.txt by more than the tolerance. The recorded
numbers are themselves estimates from 2,000 random sequences, so a difference of about
2·sqrt(2·p(1-p)/n) is sampling noise (0.03 at p = 0.5, n = 2000).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from extractor.tasks.checkpoint import (  # noqa: E402
    checkpoint_folders, load_with_task, recorded_accuracy)
from extractor.tasks.evaluate import evaluate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=ROOT.parent / "shared" / "checkpoints")
    parser.add_argument("--n", type=int, default=2000, help="sequences per bucket")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="comma-separated folder-name prefixes")
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args()
    torch.set_num_threads(2)
    folders = checkpoint_folders(args.dir, args.only)
    print(f"{len(folders)} checkpoints, {args.n} sequences per bucket, seed {args.seed}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| checkpoint | task | 0-50 ours / acc.txt | 51-100 ours / acc.txt | "
          "101-150 ours / acc.txt | max diff | noise σ | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    failures, total_time = 0, 0.0
    for folder in folders:
        start = time.perf_counter()
        model, task = load_with_task(folder)
        ours = evaluate(model, task, n=args.n, seed=args.seed)
        seconds = time.perf_counter() - start
        total_time += seconds
        recorded = recorded_accuracy(folder) or {}
        cells, diffs, sigmas = [], [], []
        for bucket, value in ours.items():
            ref = recorded.get(bucket)
            cells.append(f"{value:.4f} / {ref if ref is not None else '—'}")
            if ref is not None:
                diffs.append(abs(value - ref))
                # std of the difference of two independent n-sample estimates of p
                p = (value + ref) / 2
                sigmas.append(math.sqrt(2 * p * (1 - p) / args.n))
        worst = max(diffs, default=float("nan"))
        failures += worst > args.tolerance
        flag = " ✗" if worst > args.tolerance else ""
        print(f"| {folder.name} | {task.name} ({task.mode}) | {' | '.join(cells)} | "
              f"{worst:.4f}{flag} | {max(sigmas, default=0):.4f} | {seconds:.1f} |")
    print(f"\n{len(folders) - failures}/{len(folders)} checkpoints within {args.tolerance} in "
          f"every bucket; {total_time:.0f} s in all")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
