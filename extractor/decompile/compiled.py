"""Compile, then extract: the short program of a model that `rasp compile` wrote.

A compiled model computes its program exactly, has no LayerNorm and no task, and its inputs are
finite: every sequence over its vocabulary up to its length. So its extraction differs from a
trained checkpoint's (extractor/decompile/extract.py) where that makes it exact:

- Inputs: every sequence of lengths 1..N while they number at most EXHAUSTIVE; beyond that
  length, seeded random sequences plus the constant ones (all one token), where counts are
  extreme. The references are the compiled model's own decoded outputs.
- Pruning: the threshold is a match of 1.0 (or what --threshold asks), so instead of learned
  masks the circuit (extractor/decompile/circuit.py) is pruned greedily by causal intervention: each
  component, then each edge, then each query-key product is cut (it then reads its path's mean,
  the ablation constant) and stays cut when the decoded outputs still match on every input.
  Learned masks trade KL against size; here nothing may be traded, and each check is one
  batched forward pass, so trying every cut is both cheaper and exact.
- MLPs: a compiled MLP reads one-hot encodings, so an MLP whose inputs are categorical (or
  aggregates that are one-hot on these inputs, read through `harden`) is read back exactly as a
  table over every combination of its input values, `{key: class}[x]`, each class writing its
  output vector; kept when the decoded outputs still match, else the MLP stays an `mlp` node.
- A model with more than MAX_PATHS paths (the circuit holds every path's activation, and
  their number grows as heads^layers) is not pruned: its program is the exact one
  (extractor/decompile/paths.py), which leaves out the paths that are exactly zero.
- Score and logit tables then go through the primitive library and rounding
  (extractor/decompile/replace.py) judged on a subset of the inputs, and the shared simplification
  passes run last. The report gives the match on every generated input.

`rasp equiv SOURCE EXTRACTED` then proves (or refutes) equality on every input up to a length.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch

from extractor.decompile.circuit import Circuit, Graph
from extractor.decompile.circuit_program import MlpReplacement, circuit_program
from extractor.decompile.prune import (
    Layout,
    kept_edges,
    stage_components,
    used_paths,
    with_products,
)
from extractor.decompile.readback import lookup_replacement, numbered_by_first
from extractor.decompile.replace import MAX_VIEW_ROWS
from rasp_ir import agreement as rule
from rasp_ir import nodes as ir
from rasp_ir import types as T
from rasp_ir.agreement import TOLERANCE
from rasp_ir.interpreter import Interpreter, evaluate, mlp_activation

EXHAUSTIVE = 20_000          # generated inputs enumerated while they number at most this many
PER_LENGTH = 400             # random inputs at each longer length
CHOICE = 1_500               # inputs judging each replacement (all of them for the final check)
MAX_COMBINATIONS = 4_096     # the largest MLP table read back
MAX_PATHS = 200             # more paths than this: no circuit (see _exact)
ELEMENTS = 4_000_000         # numbers per path tensor in one batch (memory, not speed)


def generated_inputs(alphabet: tuple, max_len: int, seed: int = 0) -> list[list]:
    """Every sequence of lengths 1..L over `alphabet` for the largest L with at most
    EXHAUSTIVE of them, then per longer length the constant sequences and PER_LENGTH random
    ones (distinct, seeded)."""
    out, total, length = [], 0, 1
    while length <= max_len and total + len(alphabet) ** length <= EXHAUSTIVE:
        out += [list(s) for s in itertools.product(alphabet, repeat=length)]
        total += len(alphabet) ** length
        length += 1
    rng = np.random.default_rng([seed, 8191])
    for n in range(length, max_len + 1):
        seen = {tuple([t] * n) for t in alphabet}
        out += [list(s) for s in seen]
        for _ in range(PER_LENGTH):
            s = tuple(alphabet[i] for i in rng.integers(len(alphabet), size=n))
            if s not in seen:
                seen.add(s)
                out.append(list(s))
    return out


class CompiledJudge:
    """Generated inputs (BOS in front) with the compiled model's decoded outputs; called with
    a program it gives {bucket: the share of inputs on which the program decodes the same at
    every position}. One bucket, named after the lengths."""

    def __init__(self, subject, sequences: list[list], kind: str):
        self.kind = kind                 # "argmax" (categorical outputs) or "value"
        self.bucket = f"lengths 1-{max(len(s) for s in sequences)}"
        index = {t: i for i, t in enumerate(subject.tokens)}
        self.groups = []                 # (inputs with BOS, ids, reference decisions)
        by_length: dict[int, list] = {}
        for s in sequences:
            by_length.setdefault(len(s), []).append(s)
        c = subject.model.config
        # the circuit holds every path's activation at once: batches of at most ELEMENTS
        paths = min(len(Graph(c.n_layers, c.n_heads)), MAX_PATHS)
        with torch.no_grad():
            for n in sorted(by_length):
                size = max(1, ELEMENTS // ((n + 1) * paths * max(c.d_model, c.d_mlp)))
                for start in range(0, len(by_length[n]), size):
                    rows = [[subject.bos] + s for s in by_length[n][start:start + size]]
                    ids = torch.tensor([[index[t] for t in r] for r in rows])
                    logits = subject.model(ids).double().numpy()[:, 1:]
                    self.groups.append((rows, ids, self.decide(logits)))

    @property
    def sets(self) -> dict:
        """{bucket: rows} as extractor.checking.judge.Judge has them (the input first)."""
        return {self.bucket: [(r, None) for rows, _, _ in self.groups for r in rows]}

    def decide(self, out: np.ndarray) -> np.ndarray:
        """(B, n) decisions from (B, n, d) outputs: the decoded token, or the first logit."""
        return rule.tokens(out) if self.kind == "argmax" else out[..., 0]

    def agree(self, got: np.ndarray, want: np.ndarray) -> np.ndarray:
        """(B,) whether each input agrees at every position."""
        if self.kind == "argmax":
            return rule.sequences_agree(rule.same_tokens(got, want))
        return rule.sequences_agree(rule.close(got, want))

    def subset(self, n: int, seed: int = 0) -> "CompiledJudge":
        """A judge on about n of the inputs, spread evenly over the batches."""
        rng = np.random.default_rng([seed, 524287])
        per = max(1, n // max(len(self.groups), 1))
        out = object.__new__(CompiledJudge)
        out.kind, out.bucket, out.groups = self.kind, self.bucket, []
        for rows, ids, want in self.groups:
            if len(rows) > per:
                keep = np.sort(rng.choice(len(rows), per, replace=False))
                rows, ids, want = [rows[i] for i in keep], ids[keep], want[keep]
            out.groups.append((rows, ids, want))
        return out

    def with_failures(self, other: "CompiledJudge", circuit: Circuit, masks) -> "CompiledJudge":
        """This judge plus the inputs of `other` on which the circuit fails."""
        out = object.__new__(CompiledJudge)
        out.kind, out.bucket = self.kind, self.bucket
        out.groups = list(self.groups)
        with torch.no_grad():
            for rows, ids, want in other.groups:
                positions = torch.arange(ids.shape[1]).expand_as(ids)
                got = circuit(ids, positions, masks).double().numpy()[:, 1:]
                bad = np.flatnonzero(~self.agree(self.decide(got), want))
                if len(bad):
                    out.groups.append(([rows[i] for i in bad], ids[bad], want[bad]))
        return out

    def __call__(self, program: ir.Program, task_accuracy: bool = False) -> dict:
        match = self.passes(program, {self.bucket: -1.0})[self.bucket]    # a floor never hit
        return {self.bucket: {"match": match, "task": match} if task_accuracy else match}

    def passes(self, program: ir.Program, floor: dict) -> dict | None:
        """{bucket: match} when it is at least floor[bucket], else None (stopping at the
        first batch after which the floor is out of reach)."""
        total = sum(len(rows) for rows, _, _ in self.groups)
        n, wrong = max(total, 1), 0
        for rows, _, want in self.groups:
            got = np.asarray(evaluate(program, rows, program.output))[:, 1:]
            wrong += len(rows) - int(self.agree(self.decide(got), want).sum())
            if (n - wrong) / n < floor[self.bucket]:
                return None
        return {self.bucket: (n - wrong) / n}

    def circuit_match(self, circuit: Circuit, masks) -> float:
        same = total = 0
        with torch.no_grad():
            for rows, ids, want in self.groups:
                positions = torch.arange(ids.shape[1]).expand_as(ids)
                got = circuit(ids, positions, masks).double().numpy()[:, 1:]
                same += int(self.agree(self.decide(got), want).sum())
                total += len(rows)
        return same / max(total, 1)


def output_kind(subject) -> str:
    """How a compiled model's output is decoded: by argmax, or as the first logit's value."""
    return "value" if subject.prediction is None and len(subject.outputs) == 1 else "argmax"


# ------------------------------------------------------------------ greedy pruning


def mean_ablations(circuit: Circuit, judge: CompiledJudge, layout: Layout) -> torch.Tensor:
    """Each path's mean activation over the inputs (every position), the full circuit."""
    full = layout.masks(with_products(layout, layout.valid.double()), True)
    total, count = None, 0
    with torch.no_grad():
        for _, ids, _ in judge.groups:
            positions = torch.arange(ids.shape[1]).expand_as(ids)
            X, _ = circuit.paths(ids, positions, full)
            s = torch.stack([x.sum((0, 1)) for x in X])
            total = s if total is None else total + s
            count += ids.numel()
    return total / count


def greedy_prune(circuit: Circuit, judge: CompiledJudge, threshold: float,
                 chooser: CompiledJudge | None = None, progress=None) -> tuple[torch.Tensor, list]:
    """Cut what can be cut (see the module docstring): (hard flat masks, stage summaries).
    Cuts are decided on `chooser` (a subset of the inputs, default all of them); when a
    stage's result then fails on some input, those inputs join the chooser and the stage is
    redone (a counterexample-guided loop: few inputs decide, all of them check)."""
    layout = Layout(circuit.graph)
    say = progress or (lambda text: None)

    def matcher(j):
        return lambda flat: j.circuit_match(circuit, layout.masks(flat, True))

    full = matcher(judge)
    chooser = chooser or judge
    flat = with_products(layout, layout.valid.double())
    groups = stage_components(layout).groups
    stages = []
    for name in ("components", "paths", "products"):
        start = time.perf_counter()
        if name == "components":
            sets = [((groups == g) & (flat > 0)).nonzero().flatten()
                    for g in range(int(groups.max()) + 1)]
            sets = [x for x in sets if len(x)]
        elif name == "paths":
            sets = [torch.tensor([i]) for i in kept_edges(layout, flat, False)]
        else:
            sets = [torch.tensor([i]) for i in kept_edges(layout, flat, True)
                    if i >= layout.offsets["qk"]]
        derive = name != "products"         # q and k masks imply the products before stage 3
        while True:
            result = _cut(flat, sets, matcher(chooser), threshold, layout, derive)
            reached = full(result)
            if chooser is judge or reached >= threshold:
                break
            chooser = chooser.with_failures(judge, circuit, layout.masks(result, True))
        flat = result
        stages.append({"stage": name, "edges": len(kept_edges(layout, flat, name == "products")),
                       "match": round(reached, 6),
                       "seconds": round(time.perf_counter() - start, 2)})
        say(f"{name}: {stages[-1]['edges']} edges")
    return flat, stages


def _cut(flat, sets, match, threshold, layout, derive) -> torch.Tensor:
    """Cut every set of entries that keeps the match: all at once if that works, else each
    half in turn (so a stage where most cuts succeed takes few checks)."""
    if not sets:
        return flat
    trial = flat.clone()
    trial[torch.cat(sets)] = 0
    if derive:
        trial = with_products(layout, trial)
    if match(trial) >= threshold:
        return trial
    if len(sets) == 1:
        return flat
    half = len(sets) // 2
    flat = _cut(flat, sets[:half], match, threshold, layout, derive)
    return _cut(flat, sets[half:], match, threshold, layout, derive)


# ------------------------------------------------------------------ MLPs as tables


def mlp_table(program: ir.Program, name: str,
              view: dict | None = None) -> MlpReplacement | None:
    """The MLP bound to `name` as a table over every combination of its inputs' values, or
    None when an input is not categorical (an aggregate is read through `harden`) or the
    combinations number more than MAX_COMBINATIONS. `view`, when given, receives the MLP's
    output beside the table's write per combination (replace.mlp_view's keys)."""
    node = next(b.value for b in program.bindings if b.name == name)
    interp = Interpreter(program)
    operands, bases = [], []
    for ref in node.inputs:
        t = interp.type_of(ref)
        if isinstance(t, T.Cat):
            operands.append(ref)
        elif isinstance(t, T.Vec):
            operands.append(ir.Primitive("harden", (ref,), ()))
        else:
            return None
        bases.append(tuple(T.basis_of(t)))
    sizes = [len(b) for b in bases]
    if int(np.prod(sizes)) > MAX_COMBINATIONS:
        return None
    W_in, b_in, W_out, b_out = (np.array(m.values, dtype=np.float64).reshape(
        len(m.rows), -1 if m.cols is not None else 1) for m in
        (node.W_in, node.b_in, node.W_out, node.b_out))
    combos = list(itertools.product(*[range(s) for s in sizes]))
    offsets = np.cumsum([0] + sizes[:-1])
    X = np.zeros((len(combos), sum(sizes)))
    for row, combo in enumerate(combos):
        X[row, [o + c for o, c in zip(offsets, combo)]] = 1
    hidden = mlp_activation(X @ W_in + b_in.reshape(-1), node.activation)
    out = hidden @ W_out + b_out.reshape(-1)                                # (combos, D)
    # inputs that write the same vector are one class (rounding only joins float noise)
    keys_round = np.round(out, 9)
    _, inverse = np.unique(keys_round, axis=0, return_inverse=True)
    classes, n = numbered_by_first(inverse.reshape(-1))
    E = np.stack([out[classes == k].mean(0) for k in range(n)])
    if view is not None:
        rows = list(range(min(len(combos), MAX_VIEW_ROWS)))
        view.update(labels=[", ".join(str(b[c]) for b, c in zip(bases, combos[i])) for i in rows],
                    model=out[rows], primitive=E[classes[rows]], count=np.ones(len(rows)))
    return lookup_replacement(name, operands, bases, classes, E)


def replace_mlps(build, judge, threshold: float, names: list, progress=None,
                 views: dict | None = None) -> dict:
    """{MLP path index: MlpReplacement} for each MLP whose table keeps the match; `build`
    makes the program from such a dict, `names` is [(path index, binding name)] in order.
    `views` receives, under the binding's name, each kept table's view (`mlp_table`)."""
    say = progress or (lambda text: None)
    chosen = {}
    for index, name in names:
        program = build(chosen)
        if not any(b.name == name for b in program.bindings):
            continue
        view: dict = {}
        rep = mlp_table(program, name, view)
        if rep is None:
            say(f"{name}: an input is not categorical; it stays an mlp")
            continue
        trial = dict(chosen)
        trial[index] = rep
        if min(judge(build(trial)).values()) >= threshold:
            chosen = trial
            if views is not None:
                views[name] = view
            say(f"{name}: read back as a table of {len(rep.basis)} classes")
        else:
            say(f"{name}: its table changes the output; it stays an mlp")
    return chosen


# ------------------------------------------------------------------ the whole extraction


def extract_compiled(subject, threshold: float = 1.0, seed: int = 0, progress=None):
    """The short program of a compiled model and its report (extractor.decompile.extract.Extraction)."""
    threads = torch.get_num_threads()
    # small forward passes between numpy work: idle torch threads would only spin
    torch.set_num_threads(1)
    try:
        return _extract(subject, threshold, seed, progress)
    finally:
        torch.set_num_threads(threads)


def _extract(subject, threshold, seed, progress):
    from extractor.decompile.replace import Replacer
    from rasp_ir import passes
    say = progress or (lambda text: None)
    started = time.perf_counter()
    c = subject.model.config
    N = c.n_positions - 1
    alphabet = tuple(t for t in subject.tokens if t != subject.bos)
    inputs = generated_inputs(alphabet, N, seed)
    kind = output_kind(subject)
    judge = CompiledJudge(subject, inputs, kind)
    chooser = judge.subset(CHOICE, seed)
    timings = {"inputs": round(time.perf_counter() - started, 2)}
    say(f"{len(inputs)} generated inputs; pruning")

    start = time.perf_counter()
    paths = len(Graph(c.n_layers, c.n_heads))
    if paths > MAX_PATHS:
        return _exact(subject, judge, len(inputs), N, alphabet, seed, threshold, paths,
                      timings, started, say)
    circuit = Circuit(subject.model).double()
    layout = Layout(circuit.graph)
    with torch.no_grad():
        circuit.ablation.copy_(mean_ablations(circuit, judge, layout))
    flat, stages = greedy_prune(circuit, judge, threshold, chooser, say)
    timings["pruning"] = round(time.perf_counter() - start, 2)

    start = time.perf_counter()
    g = circuit.graph

    def build(mlp_outputs, tables=None):
        return circuit_program(circuit, flat, subject.tokens, subject.outputs,
                               subject.prediction, mlp_outputs=mlp_outputs, tables=tables,
                               bos=subject.bos)

    used = used_paths(layout, flat, True)
    mlps = [(g.mlp_path(L), g.paths[g.mlp_path(L)].name) for L in range(c.n_layers)
            if used[g.mlp_path(L)]]
    views: dict = {}
    tables = replace_mlps(build, chooser, threshold, mlps, say, views)
    replacer = Replacer(circuit, flat, subject.tokens, subject.outputs, subject.prediction,
                        chooser, {chooser.bucket: threshold}, subject.bos, say,
                        mlp_outputs=tables)
    left = replacer.replace_tables()
    replacer.round_tables(left)
    program = passes.simplify(replacer.build())
    program = passes.inline_tables(passes.descriptive_names(passes.inline_selectors(program)))
    timings["primitives"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    final = judge(program)
    timings["check"] = round(time.perf_counter() - start, 2)
    timings["total"] = round(time.perf_counter() - started, 2)
    pruning = {"method": "greedy causal cuts", "ablation": "path means", "stages": stages}
    extra = {"mlp_tables": sorted(r.name for r in tables.values()),
             "replacements": replacer.log, "programs_judged": replacer.judged}
    # the views under "mlp L" (the path's name is mL), as a trained extraction keys them
    views = {f"mlp {name[1:]}": v for name, v in views.items()}
    return _result(subject, program, final, judge, len(inputs), N, alphabet, seed, threshold,
                   pruning, extra, timings, views)


def _exact(subject, judge, count, N, alphabet, seed, threshold, paths, timings, started, say):
    """Too many paths for the circuit (it holds each one's activation): the exact program,
    which leaves out the paths that are exactly zero, simplified."""
    from extractor.decompile.paths import full_program
    from rasp_ir import passes
    say(f"{paths} paths: the exact program, zero paths left out")
    program = full_program(subject.model, subject.tokens, subject.outputs, subject.prediction,
                           bos=subject.bos)
    program = passes.inline_tables(passes.descriptive_names(
        passes.inline_selectors(passes.simplify(program))))
    timings["pruning"] = round(time.perf_counter() - started - timings["inputs"], 2)
    start = time.perf_counter()
    final = judge(program)
    timings["check"] = round(time.perf_counter() - start, 2)
    timings["total"] = round(time.perf_counter() - started, 2)
    pruning = {"method": f"none: {paths} paths are more than the circuit takes ({MAX_PATHS}); "
               "the exact program leaves out the paths that are exactly zero"}
    return _result(subject, program, final, judge, count, N, alphabet, seed, threshold,
                   pruning, {}, timings)


def _result(subject, program, final, judge, count, N, alphabet, seed, threshold, pruning,
            extra, timings, views=None):
    from extractor.decompile.extract import Extraction, program_lines, program_summary
    from extractor.decompile.report import CompiledReport, Evaluation, ModelShape
    c = subject.model.config
    lines = program_lines(program)
    worst = min(final.values())
    report = CompiledReport(
        stage="pruned", kind="compiled", threshold=threshold, seed=seed,
        model=ModelShape(c.n_layers, c.n_heads, c.d_model),
        inputs={"count": count, "max_len": N,
                "exhaustive_up_to": _exhaustive_length(len(alphabet), N),
                "beyond": f"constant sequences and {PER_LENGTH} random ones per length"},
        pruning=pruning, **extra, program=program_summary(program, lines=lines),
        evaluation=Evaluation({k: {"match": v} for k, v in final.items()},
                              compared="decoded output (argmax)" if judge.kind == "argmax"
                              else f"first logit within {TOLERANCE:g}"),
        reached_threshold=worst >= threshold, seconds=timings,
        verdict=f"the {lines}-statement program decodes as the model does on {worst:.4f} of the "
                f"{count} generated inputs")
    return Extraction(program, report, views)


def _exhaustive_length(k: int, max_len: int) -> int:
    total, length = 0, 0
    while length < max_len and total + k ** (length + 1) <= EXHAUSTIVE:
        length += 1
        total += k ** length
    return length
