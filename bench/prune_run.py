"""One pruning run, timed: what `--answer-positions` (and `--early-stop`) cost and change.

Loads a checkpoint, estimates its LLN-A scales as `rasp extract` does, builds the pruning data
once, then runs `prune` at one λ for each answer-position count asked for, one after the
other on one torch thread (a sweep worker's share of the machine). Prints per run the seconds
of each stage, its kept edges and its selection-set match in the worst bucket.

    .venv/bin/python bench/prune_run.py ../shared/checkpoints/sort-@1l1h256d3lr01drop \\
        [--lam 0.01] [--answer-positions 0,32,16] [--early-stop 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # runnable from a checkout


def main() -> int:
    import torch

    from extractor.decompile.linearise import estimate_scales, linearised
    from extractor.decompile.prune import Data, PruneSettings, prune
    from extractor.tasks.checkpoint import load_subject

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--lam", type=float, default=0.01)
    parser.add_argument("--answer-positions", default="0,32", metavar="N,N,…")
    parser.add_argument("--early-stop", type=int, default=50, metavar="STEPS")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    subject = load_subject(args.checkpoint)
    linear = linearised(subject.model, estimate_scales(subject.model, subject.task))
    data = Data(subject.model, subject.task, PruneSettings(), 0)    # positions: not in Data
    print(f"{args.checkpoint.name}, λ = {args.lam:g}, early stop {args.early_stop}, "
          f"{args.threads} thread(s)")
    print("| answer positions | seconds | stages s | edges | worst selection match |")
    print("|---|---|---|---|---|")
    for count in (int(c) for c in args.answer_positions.split(",")):
        settings = PruneSettings(patience=args.early_stop, positions=count)
        start = time.perf_counter()
        _, result = prune(subject.model, linear, subject.task, args.lam, settings, 0,
                          data=data)
        seconds = time.perf_counter() - start
        stages = " / ".join(f"{s.seconds:.1f}" for s in result.stages)
        edges = " / ".join(str(s.edges) for s in result.stages)
        worst = " / ".join(f"{min(s.match.values()):.3f}" for s in result.stages)
        print(f"| {count or 'all'} | {seconds:.1f} | {stages} | {edges} | {worst} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
