"""`rasp extract … --verify`: the written program compiled back to weights, and checked twice.

(a) The compiled model against the program's interpreter, on the held-out task sequences and
    on sequences generated over the program's vocabulary: the decoded outputs (the argmax, or
    for sigmoid predictions the set of entries above 1/2) must be equal at every position,
    and the largest difference between the two sets of logits is reported.
(b) The compiled model against the original checkpoint, on the held-out sequences of
    `Judge.held_out` (extractor/checking/judge.py) with the judge's metric: match accuracy (and task
    accuracy) per length bucket, next to the program's own match on the same sequences.

Outputs agree by rasp_ir/agreement.py's rule, the one `rasp equiv` and `rasp verify` use.
The program is read back from its file (with its tables), so what is compiled is what was
written. A program the compiler cannot make exact is not compiled; the report lists each
construct that stops it (compiler/validate.py's E4xx diagnostics) with its location.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import numpy as np
import torch

from rasp_ir import agreement as rule
from rasp_ir import nodes as ir
from rasp_ir.diagnostics import RaspError
from rasp_ir.interpreter import evaluate

GENERATED = 200          # sequences over the vocabulary for (a), beside the task sequences
TIE = 1e-9               # a decision this close to its boundary is a tie: either side is right
BATCH = 256              # sequences per forward pass of the compiled model


def round_trip(program_path: str | Path, subject, n: int = 200, seed: int = 0,
               generated: int | None = None) -> dict:
    """Compile the program at `program_path` (written next to it as PROG.compiled/) and
    compare it with the interpreter and with `subject` (extractor.decompile.extract.Subject) on `n`
    held-out sequences per bucket and `generated` sequences over the vocabulary (default
    min(n, GENERATED)). Returns the report's "roundtrip" entry; a program that cannot be
    compiled exactly is an entry listing why, not an error."""
    if generated is None:
        generated = min(n, GENERATED)
    threads = torch.get_num_threads()
    # One torch thread: the forward passes are small, and idle OpenMP workers spinning
    # between them slow the interpreter's numpy work (and the passes) many times over.
    torch.set_num_threads(1)
    try:
        return _round_trip(Path(program_path), subject, n, seed, generated)
    finally:
        torch.set_num_threads(threads)


def _round_trip(program_path: Path, subject, n: int, seed: int, generated: int) -> dict:
    import grammar
    from compiler.compile import compile_program, save_compiled
    program = grammar.load(program_path)
    started = time.perf_counter()
    try:
        compiled = compile_program(program)
    except RaspError as exc:
        return {"compiled": False, "problems": [_problem(d, program) for d in exc.diagnostics],
                "seconds": {"compile": round(time.perf_counter() - started, 2)}}
    directory = program_path.with_suffix(".compiled")
    save_compiled(compiled, directory)
    seconds = {"compile": round(time.perf_counter() - started, 2)}
    out = {"compiled": True, "directory": str(directory),
           "model": dict(compiled.stats, activation=compiled.model.config.activation),
           "seconds": seconds}
    judge = None
    if subject.task is not None:
        from extractor.checking.judge import Judge
        judge = Judge.held_out(subject.model, subject.task, n, seed)
    task_inputs = [row[0] for rows in (judge.sets.values() if judge else ()) for row in rows]
    # the program of a compiled model reads the compiler's BOS as its first token
    bos = subject.tokens[0] if subject.kind == "compiled" else program.bos
    extra = generated_inputs(program, generated, seed, bos)
    start = time.perf_counter()
    program_logits = program_scores(program, task_inputs + extra)
    seconds["interpreter"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    compiled_logits = compiled_scores(compiled, task_inputs + extra)
    seconds["compiled"] = round(time.perf_counter() - start, 2)
    out["interpreter"] = compare(program_logits, compiled_logits, task_inputs + extra,
                                 compiled.output_function, len(task_inputs))
    if judge is not None:
        out["checkpoint"] = checkpoint_match(judge, subject.task, compiled.output_values,
                                             program_logits, compiled_logits)
        out["checkpoint"]["sequences_per_bucket"] = n
        out["checkpoint"]["seed"] = seed
    elif subject.kind == "compiled":
        out["checkpoint"] = compiled_checkpoint_match(subject, extra, compiled_logits)
    else:
        out["checkpoint"] = None
    return out


def program_scores(program: ir.Program, inputs: list[list]) -> list[np.ndarray]:
    """The program's output per input, before its softmax or sigmoid (the logits)."""
    node = program.output
    bindings = {b.name: b.value for b in program.bindings}
    while isinstance(node, ir.Ref):
        node = bindings[node.name]
    if isinstance(node, ir.Predict):
        node = node.logits
    return [np.asarray(v, dtype=np.float64) if np.asarray(v).dtype.kind in "biuf"
            else np.asarray(v, dtype=object) for v in evaluate(program, inputs, node)]


def compiled_scores(compiled, inputs: list[list]) -> list[np.ndarray]:
    """The compiled model's unembedded output per input (program positions only), before
    its softmax or sigmoid; a categorical output is decoded to its values."""
    raw = attrs.evolve(compiled, output_function=None)
    out: list = [None] * len(inputs)
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
    for start in range(0, len(order), BATCH):
        chunk = order[start:start + BATCH]
        scores = raw.logits([inputs[i] for i in chunk])
        for i, s in zip(chunk, scores):
            out[i] = np.asarray(s, dtype=np.float64)
    if compiled.output_kind == "cat":
        values = np.empty(len(compiled.output_values), dtype=object)
        values[:] = compiled.output_values
        out = [values[rule.tokens(s)] for s in out]
    elif compiled.output_kind == "num":
        out = [s[:, 0] for s in out]
    return out


def compare(program_out: list, compiled_out: list, inputs: list, function: str | None,
            task_count: int) -> dict:
    """(a): decoded outputs position by position, the largest |difference| of the scores,
    and the first input where the decoded outputs differ. Exact means no position differs;
    `ties` counts the differing positions where the program's own decision is within TIE
    of its boundary (two top entries equal, an entry at 0), which rounding can tip."""
    differences = ties = positions = 0
    largest = 0.0
    first = None
    for i, (p, c) in enumerate(zip(program_out, compiled_out)):
        positions += len(p)
        if p.dtype == object or c.dtype == object:
            same = rule.same_values(p, c)
            tie = np.zeros_like(same)
        else:
            largest = max(largest, float(np.abs(p - c).max(initial=0.0)))
            same, tie = _same_decision(p, c, function)
        differ = ~same
        ties += int((differ & tie).sum())
        differences += int(differ.sum())
        if differ.any() and first is None:
            at = int(np.flatnonzero(differ)[0])
            first = {"input": list(inputs[i]), "position": at, "tie": bool(tie[at]),
                     "source": "task data" if i < task_count else "generated"}
    return {"inputs": len(inputs), "task_sequences": task_count,
            "generated": len(inputs) - task_count, "positions": positions,
            "decision": "the set of entries above 1/2" if function == "sigmoid" else
            "the argmax" if any(p.ndim == 2 for p in program_out) else "the decoded value",
            "differences": differences, "ties": ties, "max_abs_logit_diff": largest,
            "exact": differences == 0, "first_difference": first}


def _same_decision(p: np.ndarray, c: np.ndarray, function: str | None):
    """Per position: the same decision, and whether the program's decision is a tie."""
    if p.ndim == 1:                   # numbers
        same = rule.close(p, c)
        return same, np.zeros_like(same)
    if function == "sigmoid":
        same = rule.same_sets(rule.token_sets(p, rule.LOGIT), rule.token_sets(c, rule.LOGIT))
        tie = (np.abs(p) <= TIE * np.maximum(1.0, np.abs(p).max(-1, keepdims=True))).any(-1)
        return same, tie
    same = rule.same_tokens(rule.tokens(p), rule.tokens(c))
    top = np.sort(p, axis=-1)[:, -2:] if p.shape[-1] > 1 else np.concatenate(
        [np.full_like(p, -np.inf), p], axis=-1)
    tie = top[:, 1] - top[:, 0] <= TIE * np.maximum(1.0, np.abs(top[:, 1]))
    return same, tie


def checkpoint_match(judge, task, output_values, program_out: list,
                     compiled_out: list) -> dict:
    """(b): per bucket, how often the compiled model (and the program) predicts what the
    checkpoint predicts at every scored position, and how often it is right (the judge's
    metric); the first outputs belong to the judge's sequences, in its order."""
    from extractor.checking.judge import same_decisions
    tokens = list(task.vocab.tokens)
    values = list(output_values or ())
    columns = [values.index(t) if t in values else -1 for t in tokens]
    buckets, i = {}, 0
    for name, rows in judge.sets.items():
        tally = {"match": 0, "task": 0, "program_match": 0}
        for names, model_pred, gold, scored in rows:
            for key, out in (("match", compiled_out[i]), ("program_match", program_out[i])):
                decision = _decide(out, columns, task.mode, tokens)
                agree = same_decisions(decision, model_pred, task.mode)
                tally[key] += bool(rule.sequences_agree(agree, scored))
                if key == "match":
                    right = same_decisions(decision, gold, task.mode)
                    tally["task"] += bool(rule.sequences_agree(right, scored))
            i += 1
        count = max(len(rows), 1)
        buckets[name] = {k: v / count for k, v in tally.items()}
    return {"buckets": buckets}


def _decide(scores: np.ndarray, columns: list, mode: str, tokens: list) -> np.ndarray:
    """Scores over the output values as the judge's decisions over the task's tokens: the
    argmax token id (lm) or the entries above 0, i.e. probability above 1/2 (bce)."""
    if scores.dtype == object:        # a categorical output: the value is the prediction
        ids = {t: i for i, t in enumerate(tokens)}
        chosen = np.array([ids.get(v, -1) for v in scores.tolist()])
        return chosen if mode == "lm" else np.arange(len(tokens)) == chosen[:, None]
    picked = np.where(np.array(columns) >= 0, scores[:, np.maximum(columns, 0)], -np.inf)
    return rule.tokens(picked) if mode == "lm" else rule.token_sets(picked, rule.LOGIT)


def compiled_checkpoint_match(subject, inputs: list[list], compiled_out: list) -> dict:
    """(b) for a model written by `rasp compile`, which has no task data: on the generated
    inputs (the compiler's BOS first: the program reads it as a token, the model adds it
    itself), the fraction of inputs whose decoded outputs agree at every later position, per
    range of lengths."""
    index = {t: i for i, t in enumerate(subject.tokens)}
    outputs = np.empty(len(subject.outputs), dtype=object)
    outputs[:] = [str(v) for v in subject.outputs]
    longest = max((len(seq) - 1 for seq in inputs), default=1)
    width = -(-longest // 3)
    tally: dict = {}
    with torch.no_grad():
        for seq, mine in zip(inputs, compiled_out):
            ids = torch.tensor([[index[t] for t in seq]])
            theirs = subject.model(ids)[0, 1:].double().numpy()
            mine = mine[1:]
            if mine.dtype == object:            # categorical values
                same = rule.same_values(mine.astype(str), outputs[rule.tokens(theirs)].astype(str))
            elif mine.ndim == 1:                # numbers
                same = rule.close(mine, theirs[:, 0])
            else:
                same = rule.same_tokens(rule.tokens(mine), rule.tokens(theirs))
            lo = (len(seq) - 2) // width * width + 1
            name = f"{lo}-{min(lo + width - 1, longest)}"
            good, total = tally.get(name, (0, 0))
            tally[name] = (good + bool(np.all(same)), total + 1)
    return {"buckets": {name: {"match": good / total, "sequences": total}
                        for name, (good, total) in sorted(tally.items(),
                                                         key=lambda kv: int(kv[0].split("-")[0]))},
            "inputs": "generated (no task data)"}


def generated_inputs(program: ir.Program, count: int, seed: int, bos=None) -> list[list]:
    """`count` sequences over the program's vocabulary (`bos` first, if given), of lengths
    spread evenly up to its @maxlen."""
    rng = np.random.default_rng([seed, 7077])
    alphabet = [t for t in program.vocab if t != bos]
    bos = [bos] if bos is not None else []
    longest = (program.maxlen or 16) - len(bos)
    out = []
    for _ in range(count):
        length = int(rng.integers(1, longest + 1))
        out.append(bos + [alphabet[j] for j in rng.integers(0, len(alphabet), length)])
    return out


def _problem(diagnostic, program: ir.Program) -> dict:
    span = diagnostic.span
    entry = {"code": diagnostic.code, "message": diagnostic.message}
    if span is not None:
        entry.update(file=span.file, line=span.line, column=span.column)
        lines = (program.source or "").splitlines()
        if 0 < span.line <= len(lines):        # the construct, from where it starts
            entry["construct"] = lines[span.line - 1][span.column - 1:].strip()
    return entry
