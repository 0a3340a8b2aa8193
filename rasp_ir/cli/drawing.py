"""`rasp report`, `rasp draw` and `rasp attention`: pictures as self-contained HTML (or SVG)
files, drawn by rasp_ir/viz with matplotlib (the `viz` extra, imported inside the commands)."""

from __future__ import annotations

import time
from pathlib import Path

from rasp_ir.cli.common import EXIT_OK, add_command, emit_json, load_program, parse_input


JSON_HELP = ('one JSON envelope; result: {"output": the file written, "bytes": its size, '
             '"seconds": the time taken}')


def add_commands(sub) -> None:
    rp = add_command(
        sub, "report", cmd_report, help="an extraction's report as one HTML page",
        json_help=JSON_HELP,
        description="Write the report of the extraction that wrote PROG (its PROG.report.json, "
        "the tables of PROG.tables.safetensors and, where there is one, PROG.mlps.safetensors) "
        "as one self-contained HTML file: the program, coloured, each statement linked to its "
        "pictures; match and task accuracy per length bucket; the pruning frontier of each "
        "stage; a heatmap of every score, selector and projection table; each replaced MLP's "
        "output beside its primitive's; the replacements; times and settings. Needs the viz "
        "extra (pip install 'rasp-ir[viz]').")
    rp.add_argument("program", type=Path, metavar="PROG.rasp")
    rp.add_argument("-o", "--output", type=Path, default=None, metavar="FILE.html",
                    help="where to write the page (default: PROG.html beside the program)")

    dr = add_command(
        sub, "draw", cmd_draw, help="the computation-flow graph of a program on one input",
        json_help=JSON_HELP,
        description="Draw PROG on INPUT: a box per binding with its value at every position, "
        "an arrow per read, each selector as its attention grid on that input. FILE.svg is the "
        "picture alone; FILE.html a page holding it and a table of the values; FILE.dot the "
        "graph as Graphviz text (no matplotlib needed). INPUT as for `rasp run`.")
    dr.add_argument("program", type=Path, metavar="PROG")
    dr.add_argument("input", metavar="INPUT")
    dr.add_argument("-o", "--output", type=Path, default=None,
                    metavar="FILE.svg|FILE.html|FILE.dot",
                    help="where to write it (default: PROG.flow.html beside the program)")

    at = add_command(
        sub, "attention", cmd_attention,
        help="a model's attention per layer and head on one input", json_help=JSON_HELP,
        description="Run CHECKPOINT (a trained checkpoint or a `rasp compile` directory) on "
        "INPUT and draw each layer's attention pattern per head (queries down, keys across), "
        "beside the selectors of PROG on the same input when --program is given. The BOS token "
        "is prepended where the input lacks it.")
    at.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    at.add_argument("input", metavar="INPUT")
    at.add_argument("--program", type=Path, default=None, metavar="PROG",
                    help="a program whose selectors to draw beside the model's heads")
    at.add_argument("--task", metavar="TASK", default=None,
                    help="the task of a trained checkpoint (default: its task.json or name)")
    at.add_argument("-o", "--output", type=Path, default=None, metavar="FILE.html",
                    help="where to write the page (default: NAME.attention.html in the "
                    "current folder, NAME the checkpoint's folder name)")


def cmd_report(args) -> int:
    output = args.output or args.program.with_suffix(".html")
    _check_output(output, (".html",))
    started = time.perf_counter()
    size = write_report(args.program, output)
    return _done(args, output, size, time.perf_counter() - started)


def write_report(program_path: Path, output: Path) -> int:
    """The report page of the extraction that wrote `program_path`, written to `output`
    atomically; its size in bytes. `rasp extract --html` calls this too."""
    from rasp_ir.files import atomic_write_text
    from rasp_ir.viz.report import read_mlp_views, read_report, report_page
    report = read_report(program_path)        # first: a missing report is the likelier error
    program = load_program(program_path)
    page = report_page(program, program.source or program_path.read_text(encoding="utf-8"),
                       report, read_mlp_views(program_path))
    _write(output, page, atomic_write_text)
    return len(page.encode("utf-8"))


def cmd_draw(args) -> int:
    started = time.perf_counter()
    output = args.output or args.program.with_suffix(".flow.html")
    _check_output(output, (".svg", ".html", ".dot"))
    program = load_program(args.program)
    tokens = parse_input(args.input, program.vocab)
    from rasp_ir.files import atomic_write_text
    if output.suffix == ".dot":            # Graphviz text: no matplotlib needed
        from rasp_ir.viz.flow import flow_dot
        text = flow_dot(program, tokens, f"{args.program.name} on {args.input}")
    elif output.suffix == ".svg":
        from rasp_ir.viz.flow import flow_svg
        text = flow_svg(program, tokens, f"{args.program.name} on {args.input}")
    else:
        from rasp_ir.viz.flow import flow_page
        text = flow_page(program, tokens, f"{args.program.name} on {args.input}")
    _write(output, text, atomic_write_text)
    return _done(args, output, len(text.encode("utf-8")), time.perf_counter() - started)


def cmd_attention(args) -> int:
    import torch

    from extractor.tasks.checkpoint import load_subject
    from rasp_ir.diagnostics import Diagnostic, RaspError
    from rasp_ir.files import atomic_write_text
    from rasp_ir.viz.attention import attention_page
    started = time.perf_counter()
    output = args.output or Path(f"{args.checkpoint.resolve().name}.attention.html")
    _check_output(output, (".html",))
    program = load_program(args.program) if args.program is not None else None
    subject = load_subject(args.checkpoint, args.task)
    tokens = parse_input(args.input, subject.tokens)
    if subject.bos is not None and (not tokens or tokens[0] != subject.bos):
        tokens = [subject.bos] + tokens
    index = {t: i for i, t in enumerate(subject.tokens)}
    unknown = [t for t in tokens if t not in index]
    if unknown:
        raise RaspError([Diagnostic("D704", f"token {unknown[0]!r} is not in the vocabulary "
                                    f"of {args.checkpoint}", hint="its tokens are "
                                    + " ".join(map(str, subject.tokens)))])
    limit = subject.model.config.n_positions
    if len(tokens) > limit:
        raise RaspError([Diagnostic("D704", f"the input has {len(tokens)} positions; "
                                    f"{args.checkpoint} reads at most {limit}")])
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with torch.no_grad():
        _, cache = subject.model(torch.tensor([[index[t] for t in tokens]]), return_cache=True)
    patterns = {L: cache[f"blocks.{L}.attn.hook_pattern"][0].numpy()
                for L in range(subject.model.config.n_layers)}
    page = attention_page(tokens, patterns, f"Attention of {args.checkpoint.name}",
                          program, args.program.name if args.program else None)
    _write(output, page, atomic_write_text)
    return _done(args, output, len(page.encode("utf-8")), time.perf_counter() - started)


def _done(args, output: Path, size: int, seconds: float) -> int:
    record = {"output": str(output), "bytes": size, "seconds": round(seconds, 2)}
    if args.json:
        emit_json(args.command, record)
    else:
        print(f"wrote {output} ({size / 1e6:.2f} MB) in {seconds:.1f} s")
    return EXIT_OK


def _check_output(output: Path, suffixes: tuple) -> None:
    from rasp_ir.diagnostics import Diagnostic, RaspError
    if output.suffix not in suffixes:
        raise RaspError([Diagnostic("D703", f"{output}: the file name must end in "
                                    + " or ".join(suffixes))])
    if not output.parent.is_dir():
        raise RaspError([Diagnostic("D703", f"{output.parent}: no such directory")])


def _write(output: Path, text: str, write) -> None:
    from rasp_ir.diagnostics import Diagnostic, RaspError
    try:
        write(output, text)
    except OSError as exc:        # the old file, if any, is left whole (rasp_ir/files.py)
        raise RaspError([Diagnostic("D703", f"cannot write {output}: "
                                    f"{exc.strerror or exc}")]) from None


_PICTURES: list = []          # the folder the REPL's pictures go to, made on the first one


def repl_picture(program, tokens) -> str:
    """The REPL's `draw(x, "input")` as a picture too: `rasp draw`'s page of `program` (x as
    its @output) on the input, written to $RASP_DRAW_DIR or a temporary folder; the line that
    says where, or why there is none (no matplotlib: how to install it)."""
    import os
    import tempfile

    from rasp_ir.diagnostics import RaspError
    from rasp_ir.files import atomic_write_text
    try:
        from rasp_ir.viz.flow import flow_page
        if not _PICTURES:
            folder = os.environ.get("RASP_DRAW_DIR") or tempfile.mkdtemp(prefix="rasp-draw-")
            Path(folder).mkdir(parents=True, exist_ok=True)
            _PICTURES.append(Path(folder))
        path = _PICTURES[0] / f"draw-{len(list(_PICTURES[0].glob('draw-*.html'))) + 1}.html"
        atomic_write_text(path, flow_page(program, tokens, "draw on " + " ".join(
            map(str, tokens))))
    except RaspError as exc:
        d = exc.diagnostics[0]
        if d.code == "D701":
            return f"  (a picture of it needs the viz extra: {d.hint.split(': ', 1)[-1]})"
        return f"  (no picture: {d.severity}[{d.code}]: {d.message})"
    except OSError as exc:
        return f"  (no picture: cannot write it: {exc.strerror or exc})"
    return f"  picture: {path}"
