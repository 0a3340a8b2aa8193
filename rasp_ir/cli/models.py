"""`rasp eval`, `rasp train` and `rasp tasks`: trained models and their tasks."""

from __future__ import annotations

from pathlib import Path

from rasp_ir.cli.common import EXIT_OK, add_command, emit_json, print_buckets, progress_for


def add_commands(sub) -> None:
    lengths_help = ("comma-separated length buckets LO-HI (default: the task's, for the "
                    "paper's tasks 0-50,51-100,101-150)")
    ev = add_command(sub, "eval", cmd_eval, help="accuracy of a checkpoint per length bucket",
                     quiet=True, json_help='one JSON envelope; result.buckets maps each length '
                     'bucket to the accuracy, result.recorded to the acc.txt value if any',
                     description="Evaluate CHECKPOINT (a Hugging Face GPT-2 or rasp-ir "
                        "directory) on fixed sets of its task, per length bucket, with the "
                        "D-RASP paper's metric: a sequence counts when every scored "
                        "prediction is right (for next-token-set tasks: every vocabulary "
                        "entry's sign at every position). The task comes from --task, the "
                        "checkpoint's task.json, or its folder name (bce_tomita4-@2l2h16d… is "
                        "tomita4 in next-token-set mode).")
    ev.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    ev.add_argument("--task", metavar="TASK",
                    help="a task name, FILE.jsonl or FILE.py:CLASS (`rasp tasks` lists names)")
    ev.add_argument("--lengths", metavar="BUCKETS", help=lengths_help)
    ev.add_argument("--n", type=int, default=2000, metavar="N",
                    help="sequences per bucket (default 2000)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation sets")

    tr = add_command(sub, "train", cmd_train, help="train a small GPT-2 model on a task",
                     quiet=True, description="Train a GPT-2-style model on TASK on the CPU with the "
                        "D-RASP paper's recipe (AdamW, weight decay 0.01, clipping 1.0, linear "
                        "decay, batches of 64, random position offsets), stopping early once "
                        "the in-distribution bucket is entirely right. Writes DIR/config.json "
                        "+ model.safetensors (loadable by transformers.GPT2LMHeadModel), "
                        "DIR/task.json (task, vocabulary, training record, accuracy) and "
                        "DIR/acc.txt.")
    tr.add_argument("task", metavar="TASK",
                    help="a task name, FILE.jsonl or FILE.py:CLASS (`rasp tasks` lists names)")
    tr.add_argument("--layers", type=int, required=True)
    tr.add_argument("--heads", type=int, required=True)
    tr.add_argument("--d-model", type=int, required=True)
    tr.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    tr.add_argument("--dropout", type=float, default=0.0,
                    help="GPT-2's dropout: embeddings, attention, residual (default 0)")
    tr.add_argument("--steps", type=int, default=30_000,
                    help="most optimiser steps; the learning rate decays to 0 over them "
                    "(default 30000)")
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--eval-every", type=int, default=3_000, metavar="STEPS",
                    help="steps between in-distribution evaluations (default 3000)")
    tr.add_argument("--n", type=int, default=2000, metavar="N",
                    help="sequences per evaluation bucket (default 2000)")
    tr.add_argument("--lengths", metavar="BUCKETS", help=lengths_help)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    tr.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    tr.add_argument("--force", action="store_true",
                    help="write into DIR even when it already holds a model (an earlier "
                    "training's, a compiled one); its files this training does not write are "
                    "removed")

    add_command(sub, "tasks", cmd_tasks, help="list the tasks `rasp train` and `rasp eval` know",
                description="List the registered tasks: name, mode (lm: next token; bce: "
                "next-token sets), vocabulary size and a description.",
                json_help="one JSON envelope; result.tasks lists name, mode, vocab_size and "
                "description")


def cmd_eval(args) -> int:
    import torch

    from extractor.tasks.checkpoint import load_with_task, recorded_accuracy
    from extractor.tasks.evaluate import evaluate, parse_buckets
    from rasp_ir.diagnostics import Diagnostic, RaspError
    if args.n < 1 or args.seed < 0:
        raise RaspError([Diagnostic("T404", "--n must be at least 1 and --seed at least 0")])
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model, task = load_with_task(args.checkpoint, args.task)
    buckets = parse_buckets(args.lengths, task.test_buckets)
    progress = progress_for(args, "eval")
    try:
        accuracy = evaluate(model, task, buckets, args.n, args.seed, progress=progress)
    finally:
        progress.close()
    if args.json:
        emit_json("eval", {"checkpoint": str(args.checkpoint), "task": task.name,
                           "mode": task.mode, "sequences_per_bucket": args.n, "seed": args.seed,
                           "buckets": accuracy, "recorded": recorded_accuracy(args.checkpoint)})
        return EXIT_OK
    print(f"{args.checkpoint}: task {task.name} ({task.mode}), up to {args.n} sequences per "
          f"bucket, seed {args.seed}")
    print_buckets(accuracy, recorded_accuracy(args.checkpoint))
    return EXIT_OK


def cmd_train(args) -> int:
    from rasp_ir.diagnostics import Diagnostic, RaspError
    from extractor.tasks.evaluate import check_buckets, parse_buckets
    from extractor.tasks.registry import get_task
    from extractor.training.train import TrainConfig, save_trained, train
    task = get_task(args.task)
    try:
        config = TrainConfig(layers=args.layers, heads=args.heads, d_model=args.d_model,
                             lr=args.lr, dropout=args.dropout, steps=args.steps,
                             batch_size=args.batch_size, seed=args.seed,
                             eval_every=args.eval_every, eval_n=args.n)
    except (TypeError, ValueError) as exc:
        raise RaspError([Diagnostic("T406", f"bad training option: {exc}")]) from None
    if args.d_model % args.heads:
        raise RaspError([Diagnostic("T406", f"--d-model {args.d_model} is not divisible by "
                                    f"--heads {args.heads}")])
    if args.threads < 1:
        raise RaspError([Diagnostic("T406", "--threads must be at least 1")])
    buckets = parse_buckets(args.lengths, task.test_buckets)
    check_buckets(task, buckets + [tuple(task.train_lengths)])
    from rasp_ir.outputs import claim_model_directory
    # before training, not after it: a model that took an hour is never replaced unasked,
    # and a refusal costs nothing
    claim = claim_model_directory(args.output, "train", args.force)
    progress = progress_for(args, "train")
    try:
        result = train(task, config, buckets, progress=progress, threads=args.threads)
    finally:
        progress.close()
    save_trained(result, task, config, args.output)
    claim.tidy()            # an earlier model's files this training did not write again
    if args.json:
        emit_json("train", {"task": task.name, "arch": config.arch_name, "steps": result.steps,
                            "seconds": round(result.seconds, 2),
                            "stopped_early": result.stopped_early,
                            "accuracy": result.accuracy, "output": str(args.output)})
        return EXIT_OK
    ended = ("in-distribution accuracy reached 1.0" if result.stopped_early
             else "step limit reached")
    print(f"trained {task.name} {config.arch_name}: {result.steps} steps in "
          f"{result.seconds:.1f} s ({ended})")
    print_buckets(result.accuracy)
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_tasks(args) -> int:
    from extractor.tasks.registry import get_task, task_names
    tasks = [get_task(name) for name in task_names()]
    if args.json:
        emit_json("tasks", {"tasks": [{"name": t.name, "mode": t.mode,
                                       "vocab_size": len(t.vocab),
                                       "description": t.description} for t in tasks]})
        return EXIT_OK
    for task in tasks:
        print(f"{task.name:<24} {task.mode:<4} {len(task.vocab):>4} tokens  {task.description}")
    return EXIT_OK
