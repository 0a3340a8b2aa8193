"""`rasp compile`: a program to transformer weights."""

from __future__ import annotations

from pathlib import Path

from rasp_ir.cli.common import EXIT_OK, load_program


def add_commands(sub) -> None:
    comp = sub.add_parser("compile", help="compile a program to transformer weights",
                          description="Compile FILE's @output to an exact transformer, written "
                          "to DIR as model.safetensors + config.json (with the vocabulary and "
                          "the output encoding). Vocabulary and maximum length come from the "
                          "file's @vocab and @maxlen unless --max-len is given.")
    comp.add_argument("file", type=Path)
    comp.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    comp.add_argument("--max-len", type=int, metavar="N", help="longest input (default @maxlen)")
    comp.add_argument("--stats", action="store_true",
                      help="print layers, heads, residual width, MLP width and parameters")
    comp.set_defaults(handler=cmd_compile)


def cmd_compile(args) -> int:
    from compiler.compile import compile_program, save_compiled
    program = load_program(args.file)
    compiled = compile_program(program, args.max_len)
    save_compiled(compiled, args.output)
    if args.stats:
        s = compiled.stats
        print(f"layers {s['layers']}, heads {s['heads']}, residual width "
              f"{s['residual_width']}, MLP width {s['mlp_width']}, parameters "
              f"{s['parameters']:,}")
    print(f"wrote {args.output}")
    return EXIT_OK
