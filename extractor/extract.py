"""`rasp extract`: a checkpoint to a program, with what it measured along the way.

Stage "full" (extractor part 1): LLN-A scales estimated on task data, the linearised model's
faithfulness to the original per length bucket, then the exact path program of the linearised
model (extractor/paths.py). Compiled models have no LayerNorm: their program is exact as is.
"""

from __future__ import annotations

import time
from pathlib import Path

from attrs import frozen

from rasp_ir import nodes as ir
from rasp_ir.diagnostics import Diagnostic, RaspError

from .paths import MAX_ENTRIES, full_program, size


@frozen
class Subject:
    """A model to extract, with the names of its inputs and outputs."""
    model: object                 # compiler.transformer.Transformer
    tokens: tuple                 # name of each token id
    outputs: tuple                # label of each logit
    prediction: str | None        # "softmax", "sigmoid" or None (the output is the logits)
    task: object | None           # extractor.tasks.Task (None for compiled models)
    kind: str                     # "trained" or "compiled"


def load_subject(directory: str | Path, task_spec: str | None = None) -> Subject:
    """A trained checkpoint (with its task) or a model directory written by `rasp compile`."""
    from compiler.checkpoint import load_model
    directory = Path(directory)
    model, metadata = load_model(directory)       # read once, whichever kind it is
    if (metadata.get("extra") or {}).get("compiled"):
        from compiler.compile import compiled_from
        if task_spec is not None:
            raise RaspError([Diagnostic("T406", f"{directory} is a compiled program; --task "
                                        "applies to trained checkpoints only")])
        compiled = compiled_from(model, metadata, directory)
        vocab = tuple(compiled.vocab)
        if any(not isinstance(v, str) for v in vocab):
            # the compiler's BOS is a string; an IR vocabulary holds one type of token
            vocab = tuple(str(v) for v in vocab)
        d_out = model.config.d_vocab_out
        outputs = tuple(compiled.output_values) if compiled.output_values is not None \
            else tuple(range(d_out))
        return Subject(model, vocab, outputs, compiled.output_function, None, "compiled")
    from .checkpoint_tasks import task_for
    task = task_for(model, metadata, directory, task_spec)
    tokens = tuple(task.vocab.tokens)
    prediction = "softmax" if task.mode == "lm" else "sigmoid"
    return Subject(model.eval(), tokens, tokens, prediction, task, "trained")


@frozen
class Extraction:
    program: ir.Program
    report: dict


def extract_full(subject: Subject, n: int = 2000, seed: int = 0, limit: int = MAX_ENTRIES,
                 fit_steps: int = 100, progress=None) -> Extraction:
    """The full program of `subject` and a report: LLN-A scales and faithfulness, program
    size, times. `progress(text)` hears about each step."""
    from .linearise import faithfulness, layer_norms, linearised
    model, report = subject.model, {"stage": "full", "kind": subject.kind}
    c = model.config
    report["model"] = {"layers": c.n_layers, "heads": c.n_heads, "d_model": c.d_model,
                       "n_positions": c.n_positions, "vocab": c.vocab_size}
    if subject.task is not None:
        report["task"] = subject.task.name
        report["mode"] = subject.task.mode
    timings = report["seconds"] = {}
    if layer_norms(model):
        if subject.task is None:
            raise RaspError([Diagnostic("X502", "a model with LayerNorm needs task data to "
                                        "estimate the LLN-A scales", hint="pass --task")])
        start = time.perf_counter()
        if progress:
            progress("estimating LayerNorm scales")
        scales, lln = choose_scales(model, subject.task, n, seed, fit_steps, progress)
        linear = linearised(model, scales)
        timings["scales"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        if progress:
            progress("measuring LLN-A faithfulness")
        lln["faithfulness"] = faithfulness(model, linear, subject.task, n=n, seed=seed)
        lln.update(sequences_per_bucket=n, seed=seed)
        report["lln_a"] = lln
        timings["faithfulness"] = round(time.perf_counter() - start, 3)
    else:
        linear = model
        report["lln_a"] = None      # no LayerNorm: the rewrite is exact as it stands
    start = time.perf_counter()
    program = full_program(linear, subject.tokens, subject.outputs, subject.prediction,
                           limit=limit, progress=progress)
    timings["build"] = round(time.perf_counter() - start, 3)
    report["program"] = program_size(program)
    bound = size(model, len(subject.tokens), c.n_positions, len(subject.outputs))
    # counted from the shapes alone, before exactly-zero parts are dropped
    report["program"]["shape_bound"] = {"paths": bound.paths, "score_terms": bound.score_terms,
                                        "table_entries": bound.entries}
    return Extraction(program, report)


def choose_scales(model, task, n: int, seed: int, fit_steps: int = 100,
                  progress=None) -> tuple[dict, dict]:
    """LLN-A scales: the averaged variance, or those refined by `fit_steps` steps of gradient
    descent on the KL from the original, whichever keeps the original's predictions on more
    sequences of a selection set (its own seed: the evaluation sets are not used to choose).
    fit_steps=0 keeps the averaged variance."""
    from .linearise import estimate_scales, faithfulness, fit_scales, linearised
    estimated = estimate_scales(model, task, seed=seed)
    if fit_steps <= 0:
        return estimated, {"method": "estimated", "scales": estimated,
                           "estimated_scales": estimated}
    fitted = fit_scales(model, task, estimated, steps=fit_steps, seed=seed, progress=progress)
    if progress:
        progress("choosing LayerNorm scales")
    scored = {}
    for method, scales in (("estimated", estimated), ("fitted", fitted)):
        f = faithfulness(model, linearised(model, scales), task, n=max(100, n // 4),
                         seed=seed + 1_000_003)
        scored[method] = sum(b["match"] for b in f.values()) / len(f)
    method = "fitted" if scored["fitted"] >= scored["estimated"] else "estimated"
    scales = fitted if method == "fitted" else estimated
    return scales, {"method": method, "scales": scales, "estimated_scales": estimated,
                    "fitted_scales": fitted, "selection_mean_match": scored}


def program_size(program: ir.Program) -> dict:
    """Paths (activation variables), score terms, table entries and bindings of a program."""
    paths, terms, entries = 2, 0, 0      # token and pos, then one per aggregate and MLP
    for b in program.bindings:
        if isinstance(b.value, (ir.Aggregate, ir.Mlp)):
            paths += 1
        for node in ir.walk(b.value):
            if isinstance(node, ir.Select):
                terms += 1
            if isinstance(node, ir.Matrix):
                entries += len(node.rows) * (len(node.cols) if node.cols is not None else 1)
    return {"paths": paths, "score_terms": terms, "table_entries": entries,
            "bindings": len(program.bindings)}
