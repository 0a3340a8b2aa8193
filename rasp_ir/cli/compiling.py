"""`rasp compile`: a program to transformer weights."""

from __future__ import annotations

from pathlib import Path

from rasp_ir.cli.common import EXIT_OK, add_command, emit_json, load_program


def add_commands(sub) -> None:
    comp = add_command(
        sub, "compile", cmd_compile, help="compile a program to transformer weights",
        description="Compile FILE's @output to an exact transformer, written to DIR as "
        "model.safetensors + config.json (with the vocabulary and the output encoding). "
        "Vocabulary and maximum length come from the file's @vocab and @maxlen unless "
        "--max-len is given.",
        json_help="one JSON envelope; result: the output directory and the model's layers, "
        "heads, widths and parameters")
    comp.add_argument("file", type=Path, help="the program, or - for standard input")
    comp.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    comp.add_argument("--max-len", type=int, metavar="N", help="longest input (default @maxlen)")
    comp.add_argument("--force", action="store_true",
                      help="write into DIR even when it holds another kind of model (a trained "
                      "checkpoint, an export); files of it this compile does not write are "
                      "removed")
    comp.add_argument("--stats", action="store_true",
                      help="print layers, heads, residual width, MLP width and parameters")


def cmd_compile(args) -> int:
    from compiler.compile import compile_program, save_compiled
    from rasp_ir.outputs import claim_model_directory
    program = load_program(args.file)
    # over an earlier compile: a rerun; over a trained checkpoint or an export: --force
    claim = claim_model_directory(args.output, "compile", args.force, rerun_kind="compiled")
    compiled = compile_program(program, args.max_len)
    save_compiled(compiled, args.output)
    claim.tidy()            # the earlier model's files this compile did not write again
    if args.json:
        emit_json("compile", {"output": str(args.output), "stats": compiled.stats})
        return EXIT_OK
    if args.stats:
        s = compiled.stats
        print(f"layers {s['layers']}, heads {s['heads']}, residual width "
              f"{s['residual_width']}, MLP width {s['mlp_width']}, parameters "
              f"{s['parameters']:,}")
    print(f"wrote {args.output}")
    return EXIT_OK
