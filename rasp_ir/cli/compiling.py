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


# files a model directory may hold that rasp-ir itself writes (compile, train, export)
MODEL_FILES = ("config.json", "model.safetensors", "modeling_rasp_ir.py", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "task.json", "acc.txt",
               "vocab.json", "generation_config.json")
_WRITES_EVERY_TIME = ("config.json", "model.safetensors", "modeling_rasp_ir.py")
_started = [0.0]


def output_check(directory: Path, force: bool) -> list[str]:
    """Before `rasp compile -o DIR` writes anything: RaspError C316 when DIR is a file, or
    holds a model that is not a compiled program (a trained checkpoint, an export) and --force
    is not given. Returns the model files already in DIR: those this compile does not write
    again are removed after it (an earlier run's tokenizer files, a checkpoint's task.json and
    acc.txt), so the directory holds one model, not two."""
    import time

    from rasp_ir.diagnostics import Diagnostic, RaspError
    _started[0] = time.time() - 1
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise RaspError([Diagnostic("C316", f"{directory} is a file, not a directory; "
                                    "rasp compile writes a model directory",
                                    hint="name a new directory with -o")])
    if not directory.is_dir():
        return []
    present = [name for name in MODEL_FILES if (directory / name).exists()]
    if not present or force:
        return present
    kind = _model_kind(directory)
    if kind != "compiled":
        raise RaspError([Diagnostic(
            "C316", f"{directory} holds {kind} ({', '.join(present)}); rasp compile would "
            "replace its weights", hint="write elsewhere, or pass --force to replace it")])
    return present


def _model_kind(directory: Path) -> str:
    import json
    if (directory / "task.json").exists() or (directory / "acc.txt").exists():
        return "a trained checkpoint"
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        if isinstance(config, dict) and isinstance(config.get("extra"), dict) and \
                config["extra"].get("compiled"):
            return "compiled"
    except (OSError, ValueError):
        pass
    return "another model"


def cmd_compile(args) -> int:
    from compiler.compile import compile_program, save_compiled
    program = load_program(args.file)
    stale = output_check(args.output, args.force)
    compiled = compile_program(program, args.max_len)
    save_compiled(compiled, args.output)
    written = {p.name for p in Path(args.output).iterdir()}
    for name in stale:
        if name not in _WRITES_EVERY_TIME and name in written and \
                (Path(args.output) / name).stat().st_mtime < _started[0]:
            (Path(args.output) / name).unlink()
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
