"""`rasp predict`: a model's prediction at every position of an input, beside a program's."""

from __future__ import annotations

import json
from pathlib import Path

from rasp_ir.cli.common import (
    EXIT_FINDING,
    EXIT_INPUT,
    EXIT_OK,
    add_command,
    emit_json,
    parse_input,
    read_inputs,
)


def add_commands(sub) -> None:
    pr = add_command(
        sub, "predict", cmd_predict, help="show a model's prediction at every position",
        description="Run CHECKPOINT (trained, or written by `rasp compile`) on each INPUT and "
        "show its prediction at every position: the next token (argmax) for next-token tasks, "
        "the set of tokens that may come next for next-token-set tasks (bce_), the decoded "
        "output for a compiled model. A trained model's input starts with <bos> (added when "
        "missing); tokens are separated by spaces (or give a JSON list). Positions marked * "
        "are those the task scores (for next-token tasks from the first <sep> on). With "
        "--program, the program's output is shown beside the model's and the positions where "
        "they differ are marked. Exit status: 0, or 1 when model and program differ at a "
        "scored position.",
        json_help="one JSON envelope; result: kind, task, mode and per input its tokens, the "
        "model's and the program's outputs per position, the scored positions and differs_at")
    pr.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    pr.add_argument("inputs", nargs="*", metavar="INPUT",
                    help="token sequences (default: one per line of standard input)")
    pr.add_argument("--program", type=Path, metavar="PROG",
                    help="a program to run beside the model (e.g. one `rasp extract` wrote)")
    pr.add_argument("--task", metavar="TASK",
                    help="the task of a trained checkpoint (default: its task.json or folder "
                    "name)")


def cmd_predict(args) -> int:
    from extractor.checking.predict import predict, vocabulary
    from rasp_ir.cli.common import load_program
    numbered = read_inputs(args)
    if numbered is None:
        return EXIT_INPUT
    texts = [text for _, text in numbered]
    program = load_program(args.program) if args.program is not None else None
    vocab, side = vocabulary(args.checkpoint, args.task)
    inputs = [parse_input(text, vocab) for text in texts]
    result = predict(side, inputs, program)
    status = EXIT_FINDING if any(p.scored_difference for p in result.predictions) else EXIT_OK
    if args.json:
        emit_json("predict", dict(result.to_json(), checkpoint=str(args.checkpoint),
                                  program=str(args.program) if args.program else None),
                  status="finding" if status else "ok")
        return status
    what = f"task {result.task} ({result.mode})" if result.task else f"{result.kind} model"
    print(f"{args.checkpoint}: {what}" + (f"; program {args.program}" if program else ""))
    for p in result.predictions:
        _print_one(p, program is not None)
    return status


def _text(value) -> str:
    if isinstance(value, list):
        return "{" + ", ".join(map(str, value)) + "}"
    return value if isinstance(value, str) else json.dumps(value)


def _print_one(p, with_program: bool) -> None:
    print("  input: " + " ".join(map(str, p.tokens)))
    if p.program_error is not None:
        print(f"  program: {p.program_error}")
    rows = [("pos", "token", "model") + (("program",) if p.program is not None else ())]
    for i, token in enumerate(p.tokens):
        mark = "*" if p.scored[i] else " "
        row = (f"{mark}{i}", str(token), _text(p.model[i]))
        if p.program is not None:
            row += (_text(p.program[i]) + ("   <- differs" if i in p.differs_at else ""),)
        rows.append(row)
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]) - 1)]
    for r in rows:
        print("    " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    if p.program is not None:
        scored = [i for i in p.differs_at if p.scored[i]]
        print(f"  differ at {len(p.differs_at)} position(s)"
              + (f", {len(scored)} scored: {scored}" if p.differs_at else ""))
