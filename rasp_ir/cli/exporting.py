"""`rasp export`: a model written for TransformerLens or Hugging Face."""

from __future__ import annotations

from pathlib import Path

from rasp_ir.cli.common import EXIT_OK, add_command, emit_json


def add_commands(sub) -> None:
    ex = add_command(
        sub, "export", cmd_export, help="write a model for TransformerLens or Hugging Face",
        description="Write the model in CHECKPOINT (a directory written by `rasp compile` or "
        "`rasp train`, a Hugging Face GPT-2 or a TransformerLens directory) to DIR. "
        "--to transformer-lens: config.json (HookedTransformerConfig's fields under 'cfg') and "
        "model.safetensors (the HookedTransformer's state dict); load it with "
        "compiler.export.load_hooked_transformer(DIR), or give DIR to rasp eval, extract and "
        "verify. --to hugging-face: a GPT-2 checkpoint when the model is one, else a rasp-ir "
        "directory with its own modeling file (AutoModelForCausalLM.from_pretrained(DIR, "
        "trust_remote_code=True)). task.json, acc.txt and the tokenizer files are copied; a "
        "trained checkpoint without tokenizer files gets them from its task.",
        json_help="one JSON envelope; result: the format, what was written and its files")
    ex.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    ex.add_argument("--to", required=True, choices=["transformer-lens", "hugging-face"],
                    help="the format to write")
    ex.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    ex.add_argument("--task", metavar="TASK",
                    help="the task of a trained checkpoint, for its tokenizer files (default: "
                    "its task.json or folder name; none when it cannot be told)")


def cmd_export(args) -> int:
    from compiler.export import export
    from compiler.tokenizer import TOKENIZER
    result = export(args.checkpoint, args.output, args.to)
    if not (args.output / TOKENIZER).is_file():
        _task_tokenizer(args)
    result["files"] = sorted(p.name for p in args.output.iterdir() if p.is_file())
    if args.json:
        emit_json("export", {"checkpoint": str(args.checkpoint), "output": str(args.output),
                             **result})
        return EXIT_OK
    print(f"wrote {args.output} ({result['kind']}: {', '.join(result['files'])})")
    return EXIT_OK


def _task_tokenizer(args) -> None:
    """Tokenizer files from the checkpoint's task, when it has one that fits."""
    from compiler.checkpoint import load_model
    from extractor.tasks.checkpoint import task_for
    from extractor.training.train import write_task_tokenizer
    from rasp_ir.diagnostics import RaspError
    model, metadata = load_model(args.output)
    if (metadata.get("extra") or {}).get("compiled"):
        return
    try:
        task = task_for(model, metadata, args.checkpoint, args.task)
    except RaspError:
        if args.task is not None:
            raise
        return          # a checkpoint of an unknown task: no tokenizer to write
    write_task_tokenizer(args.output, task.vocab, model.config.n_positions)
