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
    comp.add_argument("--stats", action="store_true",
                      help="print layers, heads, residual width, MLP width and parameters")


def cmd_compile(args) -> int:
    from compiler.compile import compile_program, save_compiled
    program = load_program(args.file)
    compiled = compile_program(program, args.max_len)
    save_compiled(compiled, args.output)
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
