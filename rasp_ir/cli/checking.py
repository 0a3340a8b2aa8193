"""`rasp equiv` (program against program) and `rasp verify` (program against model)."""

from __future__ import annotations

from pathlib import Path

from rasp_ir.cli.common import (EXIT_DIFFERENT, EXIT_OK, add_command, emit_json, progress_for,
                                tokens_text)


def add_commands(sub) -> None:
    eq = add_command(sub, "equiv", cmd_equiv, quiet=True,
                     help="check whether two programs agree on every input",
                     json_help="one JSON envelope; result: equal, proven, the search and the "
                     "counterexample (status \"finding\" when they differ)",
                     description="Decide whether programs A and B give the same output on "
                        "every input of lengths 1..N over their (common) vocabulary, after "
                        "their BOS token if they declare one. Every input is run where all of "
                        "them number at most --bound (a proof up to N); beyond that, longer "
                        "inputs are random and Hypothesis-generated (a search, not a proof). A "
                        "difference is shrunk to a minimal input and printed with both outputs. "
                        "Categorical outputs compare exactly, numbers and vectors within "
                        "--tolerance x max(1, |value|), logits and softmax predictions by the "
                        "decoded token, sigmoid predictions by the set above 1/2. Exit status: "
                        "0 no difference found, 1 different, 2 error.")
    eq.add_argument("a", type=Path, metavar="A.rasp")
    eq.add_argument("b", type=Path, metavar="B.rasp")
    eq.add_argument("--max-len", type=int, metavar="N",
                    help="longest input (default: the smaller @maxlen, at most 12)")
    eq.add_argument("--examples", type=int, metavar="K", default=None,
                    help="random inputs beyond the exhaustive lengths (default 2000; a tenth as "
                    "many, at most 500, are Hypothesis-generated)")
    eq.add_argument("--bound", type=int, metavar="M", default=None,
                    help="most inputs run exhaustively (default 200,000)")
    eq.add_argument("--tolerance", type=float, default=None,
                    help="relative tolerance for numbers and vectors (default 1e-6)")
    eq.add_argument("--seed", type=int, default=0, help="seed of the random inputs")

    ve = add_command(sub, "verify", cmd_verify, quiet=True,
                     help="compare a program with a checkpoint",
                     json_help="one JSON envelope; result: match per bucket on task data and "
                     "generated inputs, the search and the counterexample (status \"finding\" "
                     "when they differ)",
                     description="Compare PROGRAM with CHECKPOINT (a trained GPT-2 "
                     "checkpoint, or a directory written by `rasp compile`): match accuracy "
                     "per length bucket on the task's evaluation sets (trained checkpoints) and "
                     "on generated inputs of lengths 1..N (exhaustive up to --bound inputs, "
                     "then random and Hypothesis-generated), and the least input found on "
                     "which they differ, shrunk, with both outputs. A trained checkpoint is "
                     "compared where its task scores, as `rasp extract` judges: for "
                     "next-token tasks the answer positions of task data and the <sep> of "
                     "generated `<bos> PROMPT <sep>` inputs; --all-positions compares every "
                     "position of any sequence instead. A compiled model is compared at every "
                     "position. Exit status: 0 no difference found, 1 a difference, 2 error.")
    ve.add_argument("program", type=Path, metavar="PROGRAM")
    ve.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    ve.add_argument("--task", metavar="TASK",
                    help="the task of a trained checkpoint (default: its task.json or folder name)")
    ve.add_argument("--n", type=int, default=500, metavar="N",
                    help="task sequences per length bucket (default 500; 0 skips task data)")
    ve.add_argument("--seed", type=int, default=0, help="seed of the task data and random inputs")
    ve.add_argument("--max-len", type=int, metavar="N",
                    help="longest generated input (default: the program's and model's limits, "
                    "at most 12)")
    ve.add_argument("--examples", type=int, metavar="K", default=None,
                    help="random inputs beyond the exhaustive lengths (default 1000; a tenth as "
                    "many, at most 200, are Hypothesis-generated)")
    ve.add_argument("--bound", type=int, metavar="M", default=None,
                    help="most generated inputs run exhaustively (default 20,000)")
    ve.add_argument("--all-positions", action="store_true",
                    help="compare every position (BOS and prompt included) on task data and on "
                    "generated sequences of any tokens, not only those the task scores")


def _search_text(s) -> str:
    """How the inputs were chosen, in one line."""
    space = s.space
    if s.stopped and s.found_by == "exhaustive":
        return (f"exhaustive, shortest inputs first, stopped at the first difference "
                f"({s.checked:,} inputs checked, bound {s.bound:,})")
    if s.exhaustive:
        return (f"exhaustive: all {s.checked:,} inputs of lengths {space.min_len}-"
                f"{space.max_len} (bound {s.bound:,})")
    parts = []
    if s.exhaustive_up_to >= space.min_len:
        parts.append(f"exhaustive up to length {s.exhaustive_up_to} "
                     f"({space.total(hi=s.exhaustive_up_to):,} inputs, bound {s.bound:,})")
    else:
        parts.append(f"no length fits the exhaustive bound {s.bound:,}")
    lo = max(s.exhaustive_up_to + 1, space.min_len)
    hypothesis = f" + {s.hypothesis_inputs:,} Hypothesis" if s.hypothesis_inputs else ""
    parts.append(f"property-based for lengths {lo}-{space.max_len}: {s.random_inputs:,} "
                 f"random{hypothesis} inputs")
    return ", ".join(parts)


def _print_counterexample(c, found_by: str | None, found, rounds: int,
                          labels: tuple[str, str]) -> None:
    how = {"exhaustive": "by exhaustive search: every shorter input agrees"}.get(found_by)
    if how is None and found is not None:
        how = (f"by {found_by or 'search'} at length {len(found)}, shrunk in {rounds} round(s) "
               "to a 1-minimal input")
    print(f"  counterexample (length {len(c.input)}" + (f", found {how}" if how else "") + "):")
    width = max(len(label) for label in labels + ("input",)) + 1
    print(f"    {'input:':<{width}} {tokens_text(c.input)}")
    for label, output in zip(labels, (c.output_a, c.output_b)):
        text = output if isinstance(output, str) else tokens_text(output)
        print(f"    {label + ':':<{width}} {text}")
    if c.differs_at:
        print(f"    differs at position(s): {', '.join(map(str, c.differs_at))}")


def cmd_equiv(args) -> int:
    import grammar
    from rasp_ir import equiv
    a, b = grammar.load(args.a), grammar.load(args.b)
    options = {k: v for k, v in (("bound", args.bound), ("examples", args.examples),
                                 ("tolerance", args.tolerance)) if v is not None}
    progress = progress_for(args, "equiv")
    try:
        result = equiv.equivalent(a, b, args.max_len, seed=args.seed,
                                  names=(str(args.a), str(args.b)), progress=progress,
                                  **options)
    finally:
        progress.close()
    status = EXIT_OK if result.equal else EXIT_DIFFERENT
    if args.json:
        emit_json("equiv", dict(result.summary(), a=str(args.a), b=str(args.b)),
                  status="ok" if result.equal else "finding")
        return status
    s = result.search
    if result.proven:
        print(f"equal: {args.a} and {args.b} agree on every input of length 1-{result.max_len}")
    elif result.equal:
        print(f"no difference found: {args.a} and {args.b} agree on every input checked "
              f"(proven up to length {max(s.exhaustive_up_to, 0)}, searched up to "
              f"{result.max_len})")
    else:
        print(f"different: {args.a} and {args.b} differ")
    print(f"  mode: {_search_text(s)}")
    print(f"  compared: {result.comparison}")
    if result.counterexample is not None:
        _print_counterexample(result.counterexample, s.found_by, s.found, s.shrink_rounds,
                              ("A", "B"))
    return status


def cmd_verify(args) -> int:
    import grammar
    from extractor.checking import verify
    program = grammar.load(args.program)
    options = {k: v for k, v in (("bound", args.bound), ("examples", args.examples))
               if v is not None}
    progress = progress_for(args, "verify")
    try:
        result = verify.verify(program, args.checkpoint, args.task, n=args.n, seed=args.seed,
                               max_len=args.max_len, all_positions=args.all_positions,
                               progress=progress, **options)
    finally:
        progress.close()
    status = EXIT_OK if result.matches else EXIT_DIFFERENT
    if args.json:
        emit_json("verify", dict(result.summary(), program=str(args.program),
                                 checkpoint=str(args.checkpoint)),
                  status="ok" if result.matches else "finding")
        return status
    what = f"{result.kind} model" + (f", task {result.task} ({result.mode})" if result.task
                                     else "")
    print(f"{args.program} vs {args.checkpoint}: {what}")
    print(f"  compared: {result.comparison}")
    if result.buckets:
        print(f"  task data ({args.n} sequences per bucket, seed {args.seed}):")
        for bucket, value in result.buckets.items():
            if "skipped" in value:
                print(f"    {bucket:<10} skipped: {value['skipped']}")
            else:
                print(f"    {bucket:<10} match {value['match']:.4f}")
    s = result.search
    prompts = result.kind == "trained" and result.mode == "lm" and not args.all_positions
    what = ("generated <bos> PROMPT <sep> inputs, lengths without the <sep>" if prompts
            else "generated sequences over the vocabulary")
    print(f"  {what} ({_search_text(s)}):")
    for bucket, value in result.generated_buckets().items():
        print(f"    {bucket:<10} match {value['match']:.4f}   ({value['sequences']:,} inputs)")
    if result.counterexample is None:
        print("  no difference found")
    else:
        source = result.counterexample_source
        found = s.found if source == s.found_by else None
        _print_counterexample(result.counterexample, None if source == "task data" else source,
                              found, s.shrink_rounds, ("program", "model"))
        if source == "task data":
            print("    (a task sequence on which they differ, shrunk to a 1-minimal input)")
    return status
