"""`rasp verify`: does a program behave like a model?

Two sources of inputs, each giving a match accuracy per length bucket:

* task data (trained checkpoints): the fixed evaluation sets of the checkpoint's task
  (`evaluation_sets`, position offset 0), compared at the scored positions with the paper's
  metric: the same argmax ("lm") or the same sign of every entry ("bce");
* generated sequences (every checkpoint), checked exhaustively at short lengths and on random
  and Hypothesis-generated inputs beyond (rasp_ir/search.py), compared where the task scores,
  as the extraction judges: for a next-token task ("lm", `<bos> prompt <sep> answer`) the
  inputs are `<bos> PROMPT <sep>` with PROMPT over the task's symbols, compared at the `<sep>`
  (the first answer position, the one every such task scores whatever its answer); for a
  next-token-set task ("bce"), `<bos>` then any tokens, compared at every position whose token
  is not `<eos>` or `<pad>`.

With `all_positions`, task data are compared at every position but padding, and generated
inputs are `<bos>` then any tokens but `<pad>`, compared at every position: the BOS and prompt
positions included, which a task never scores and an extraction never judges.

A model directory written by `rasp compile` has no task; its decoded outputs are compared with
the program's at every position. The program may be the compiled source (same vocabulary) or a
program extracted from the model (its inputs start with the compiler's BOS token).
Where the two differ, the least differing input found is shrunk and shown with both outputs.
Outputs agree by rasp_ir/agreement.py's rule, the one `rasp equiv` and the extraction use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from attrs import define

from extractor.tasks.batches import collate
from extractor.tasks.evaluate import evaluation_sets
from extractor.tasks.vocabulary import BOS, EOS, PAD, SEP
from rasp_ir import agreement as rule
from rasp_ir import nodes as ir
from rasp_ir.agreement import TOLERANCE
from rasp_ir.compare import (
    Outcome,
    ProgramRunner,
    View,
    agreement,
    comparable,
    outcome_agreement,
    shown,
)
from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.equiv import MAX_LEN_CAP, Counterexample
from rasp_ir.search import InputSpace, SearchResult, batched, search, shrink

DEFAULT_BOUND = 20_000        # inputs run exhaustively at most (model and program both run)
DEFAULT_EXAMPLES = 1000       # random inputs beyond the exhaustive lengths
DEFAULT_N = 500               # task sequences per bucket
MAX_TOKENS = 1 << 15          # tokens per forward pass


@define
class Verification:
    kind: str                             # "trained" or "compiled"
    task: str | None
    mode: str | None
    comparison: str
    buckets: dict                         # task bucket -> {"match", "sequences"} or {"skipped"}
    search: SearchResult
    counterexample: Counterexample | None = None
    counterexample_source: str | None = None    # "task data" or the search's finder

    @property
    def matches(self) -> bool:
        """No difference was found anywhere."""
        return self.counterexample is None

    def generated_buckets(self, count: int = 4) -> dict:
        """Match accuracy of the generated inputs, in up to `count` length ranges."""
        tally = self.search.tally
        if not tally:
            return {}
        lo, hi = min(tally), max(tally)
        width = max(1, -(-(hi - lo + 1) // count))
        out = {}
        for start in range(lo, hi + 1, width):
            end = min(hi, start + width - 1)
            good = sum(tally[n][0] for n in tally if start <= n <= end)
            total = sum(tally[n][1] for n in tally if start <= n <= end)
            if total:
                name = f"{start}-{end}" if end > start else f"{start}"
                out[name] = {"match": good / total, "sequences": total}
        return out

    def summary(self) -> dict:
        s = self.search
        out = {"kind": self.kind, "task": self.task, "mode": self.mode,
               "matches": self.matches, "comparison": self.comparison,
               "task_data": self.buckets, "generated": self.generated_buckets(),
               "search": {"mode": s.mode, "max_len": s.space.max_len, "bound": s.bound,
                          "exhaustive_up_to": max(s.exhaustive_up_to, 0),
                          "inputs_checked": s.checked, "random_inputs": s.random_inputs,
                          "hypothesis_inputs": s.hypothesis_inputs},
               "counterexample": None}
        if self.counterexample is not None:
            c = self.counterexample
            out["counterexample"] = {"input": c.input, "program": c.output_a,
                                     "model": c.output_b, "differs_at": c.differs_at,
                                     "found_in": self.counterexample_source}
        return out


def verify(program: ir.Program, directory: str | Path, task_spec: str | None = None,
           n: int = DEFAULT_N, seed: int = 0, max_len: int | None = None,
           bound: int = DEFAULT_BOUND, examples: int = DEFAULT_EXAMPLES,
           hypothesis_examples: int | None = None,
           all_positions: bool = False, progress=None) -> Verification:
    """Compare `program` with the checkpoint or compiled model in `directory` (see the module
    docstring; `all_positions` compares every position, not only those the task scores).
    `progress(text, done=None, total=None)` hears about each stage (rasp_ir.search.search's).
    Raises RaspError (C3xx, T4xx, V6xx) naming what does not fit."""
    if n < 0 or seed < 0 or bound < 0 or examples < 0 or (max_len is not None and max_len < 1):
        raise RaspError([Diagnostic("V604", "--n, --seed, --bound and --examples must not be "
                                    "negative, --max-len must be at least 1")])
    if hypothesis_examples is None:
        hypothesis_examples = min(examples // 10, 200)
    threads = torch.get_num_threads()
    # One torch thread: the models are tiny, and idle OpenMP workers spinning after each
    # forward pass slow the interpreter's numpy work between them several times over.
    torch.set_num_threads(1)
    try:
        return _verify(program, Path(directory), task_spec, n, seed, max_len, bound, examples,
                       hypothesis_examples, all_positions, progress)
    finally:
        torch.set_num_threads(threads)


def _verify(program, directory, task_spec, n, seed, max_len, bound, examples,
            hypothesis_examples, all_positions, progress) -> Verification:
    from compiler.checkpoint import load_model
    model, metadata = load_model(directory)
    model.eval()
    if (metadata.get("extra") or {}).get("compiled"):
        if task_spec is not None:
            raise RaspError([Diagnostic("V604", f"{directory} is a compiled program; --task "
                                        "applies to trained checkpoints only")])
        from compiler.compile import compiled_from
        side = _CompiledSide(program, compiled_from(model, metadata, directory), max_len)
        buckets = {}
    else:
        from extractor.tasks.checkpoint import task_for
        side = _TrainedSide(program, model, task_for(model, metadata, directory, task_spec),
                            max_len, all_positions)
        if n and progress:
            progress(f"task data: {n} sequences per bucket")
        buckets = side.task_data(n, seed) if n else {}
    with torch.inference_mode():
        result = search(side.space, batched(side.agree_group, 512), bound, examples,
                        hypothesis_examples, seed, stop_at_first=False, progress=progress)
        candidates = []
        if result.counterexample is not None:
            candidates.append((result.counterexample, result.found_by))
        task_failure = getattr(side, "first_failure", None)
        if task_failure is not None:
            start = side.searchable(task_failure)
            if start is not None:
                task_failure, _ = shrink(side.space, start, batched(side.agree_group, 512))
            candidates.append((task_failure, "task data"))
        found = min(candidates, key=lambda c: side.key(c[0])) if candidates else None
        counterexample = side.counterexample(found[0]) if found else None
    return Verification(side.kind, side.task_name, side.mode, side.comparison, buckets, result,
                        counterexample, found[1] if found else None)


def _default_length(limits: list) -> int:
    return min([m for m in limits if m is not None] + [MAX_LEN_CAP])


def _check_length(max_len: int | None, limits: dict) -> int:
    """The longest generated input: `max_len` or the default, within every limit."""
    if max_len is None:
        return _default_length(list(limits.values()))
    for what, limit in limits.items():
        if limit is not None and max_len > limit:
            raise RaspError([Diagnostic("V604", f"--max-len {max_len} is longer than {what} "
                                        f"({limit})", hint=f"use --max-len {limit} or less")])
    return max_len


class _TrainedSide:
    """A trained checkpoint with its task, against a program over the task's tokens."""

    kind = "trained"

    def __init__(self, program: ir.Program, model, task, max_len: int | None,
                 all_positions: bool = False):
        self.program, self.model, self.task = program, model, task
        self.all_positions = all_positions
        # next-token tasks: generated inputs are prompts, run as `<bos> PROMPT <sep>`
        self.prompts = task.mode == "lm" and not all_positions
        self.task_name, self.mode = task.name, task.mode
        tokens = tuple(task.vocab.tokens)
        self.tokens = tokens
        if program.vocab is None:
            raise RaspError([Diagnostic("V601", "the program has no @vocab",
                                        hint=f"declare the task's tokens: {list(tokens)}")])
        missing = [t for t in tokens if t != PAD and t not in set(program.vocab)]
        if missing:
            raise RaspError([Diagnostic(
                "V605", f"the program's @vocab lacks {len(missing)} token(s) of task "
                f"{task.name}: {', '.join(map(repr, missing[:10]))}",
                hint=f"the task's tokens are {list(tokens)}")])
        if program.bos not in (None, BOS):
            raise RaspError([Diagnostic("V605", f"the program's @bos is {program.bos!r}; task "
                                        f"{task.name}'s sequences start with {BOS!r}")])
        self.runner = ProgramRunner(program, sets=task.mode == "bce")
        want = ("set",) if task.mode == "bce" else ("argmax", "value")
        if self.runner.view.kind not in want:
            what = ("next-token sets (a sigmoid prediction or logits)" if task.mode == "bce"
                    else "a next token (logits, a distribution or a categorical s-op)")
            raise RaspError([Diagnostic(
                "V603", f"task {task.name} is compared by {what}; the program's output is "
                f"{self.runner.output_type}")])
        if task.mode == "bce":
            unknown = [t for t in self.runner.view.basis if t not in set(tokens)]
            if unknown:
                raise RaspError([Diagnostic("V605", f"the program predicts entries the task "
                                            f"does not have: {unknown[:10]}")])
        self.model_view = View("set", tokens, rule.LOGIT) if task.mode == "bce" else View("value")
        what = ("the sign of every entry" if task.mode == "bce"
                else "the predicted token (argmax)")
        if all_positions:
            where = "at every position (--all-positions)"
        elif self.prompts:
            where = ("at the scored positions (task data: the answer; generated "
                     "<bos> PROMPT <sep>: the <sep>)")
        else:
            where = "at the scored positions (those not at <eos> or <pad>)"
        self.comparison = f"{what} {where}"
        length = _check_length(max_len, {"the program's @maxlen": program.maxlen,
                                         "the model's positions": model.config.n_positions})
        if self.prompts:
            shortest = 1 + max(task.min_length, 1)
            self.space = InputSpace(tuple(task.vocab.symbols), max(length - 1, shortest), BOS,
                                    min_len=shortest)
        else:
            alphabet = tuple(t for t in tokens if t not in (BOS, PAD))
            self.space = InputSpace(alphabet, length, BOS)
        self.first_failure = None
        self._labels = np.array(tokens, dtype=object)

    def model_outcome(self, ids: torch.Tensor, positions: torch.Tensor) -> Outcome:
        with torch.inference_mode():
            logits = self.model(ids, position_ids=positions).double().numpy()
        if self.mode == "bce":
            return Outcome(rule.token_sets(logits, rule.LOGIT), [None] * len(logits))
        return Outcome(self._labels[rule.tokens(logits)], [None] * len(logits))

    def full(self, seq: list) -> list:
        """The sequence run for an input of the search space: a prompt gets its `<sep>`."""
        return list(seq) + [SEP] if self.prompts and SEP not in seq else list(seq)

    def searchable(self, failure: list) -> list | None:
        """A failing task sequence as an input of the search space, to shrink from; None when
        it is not one (its difference lies beyond the first answer position)."""
        if not self.prompts:
            return failure
        prompt = failure[:failure.index(SEP)] if SEP in failure else failure
        if len(prompt) < self.space.min_len or self.agree_group([prompt])[0]:
            return None
        return prompt

    def key(self, seq: list) -> tuple:
        """Shortlex order, for choosing the least counterexample (task data included)."""
        try:
            return self.space.key(seq)
        except KeyError:                 # a task sequence beyond the search space
            return (len(seq), (len(self.space.alphabet),))

    def agree_group(self, batch: list[list], scored: np.ndarray | None = None) -> np.ndarray:
        batch = [self.full(seq) for seq in batch]
        ids = torch.tensor([self.task.vocab.ids(seq) for seq in batch])
        positions = torch.arange(ids.shape[1]).expand_as(ids)
        if scored is None:
            scored = self._scored(batch)
        return outcome_agreement(self.runner.view, self.runner.run(batch), self.model_view,
                                 self.model_outcome(ids, positions), TOLERANCE, scored)

    def _scored(self, batch):
        tokens = np.array(batch, dtype=object)
        if self.all_positions:
            return tokens != PAD
        if self.mode == "bce":     # the paper does not score what follows <eos> or <pad>
            return ~np.isin(tokens, [EOS, PAD])
        at_sep = tokens == SEP     # the first answer position: the first <sep>
        return at_sep & (np.cumsum(at_sep, axis=1) == 1)

    def task_data(self, n: int, seed: int) -> dict:
        """{bucket: {"match", "sequences"}} on the task's evaluation sets (scored positions)."""
        sets = evaluation_sets(self.task, self.task.test_buckets, n, seed,
                               self.model.config.n_positions)
        out, failures = {}, []
        with torch.inference_mode():
            for name, examples in sets.items():
                longest = max((len(e.tokens) for e in examples), default=0)
                if self.program.maxlen is not None and longest > self.program.maxlen:
                    out[name] = {"skipped": f"sequences of up to {longest} tokens, longer than "
                                 f"the program's @maxlen {self.program.maxlen}"}
                    continue
                right = 0
                for chunk in _equal_length_chunks(examples):
                    batch = collate(chunk, self.task.vocab.pad, self.task.mode)
                    names = [self.task.vocab.names(e.tokens) for e in chunk]
                    outcome = self.runner.run(names)
                    model = self.model_outcome(batch.tokens, batch.positions)
                    scored = (batch.tokens != self.task.vocab.pad).numpy() \
                        if self.all_positions else batch.scored.numpy()
                    ok = outcome_agreement(self.runner.view, outcome, self.model_view, model,
                                           TOLERANCE, scored)
                    right += int(ok.sum())
                    failures += [names[i] for i in np.flatnonzero(~ok)[:1]]
                out[name] = {"match": right / max(len(examples), 1),
                             "sequences": len(examples)}
        if failures:
            self.first_failure = min(failures, key=len)
        return out

    def counterexample(self, seq: list) -> Counterexample:
        seq = self.full(seq)
        ids = torch.tensor([self.task.vocab.ids(seq)])
        model = self.model_outcome(ids, torch.arange(len(seq))[None])
        mine = self.runner.run([seq])
        return _counterexample(seq, self.runner.view, mine, self.model_view, model,
                               self._scored([seq])[0])


def _equal_length_chunks(examples) -> list:
    by_length: dict = {}
    for e in examples:
        by_length.setdefault(len(e.tokens), []).append(e)
    chunks = []
    for length, members in sorted(by_length.items()):
        step = max(1, MAX_TOKENS // max(length, 1))
        chunks += [members[i:i + step] for i in range(0, len(members), step)]
    return chunks


def _counterexample(seq, view_a, a: Outcome, view_b, b: Outcome, scored) -> Counterexample:
    differs = []
    if a.errors[0] is None and b.errors[0] is None:
        same = agreement(view_a, a.decoded, view_b, b.decoded)[0] | ~scored
        differs = [int(i) for i in np.flatnonzero(~same)]
    return Counterexample(list(seq), _shown(view_a, a), _shown(view_b, b), differs)


def _shown(view, outcome) -> list | str:
    if outcome.errors[0] is not None:
        return f"error[{outcome.errors[0].code}]: {outcome.errors[0].message}"
    return shown(view, outcome.decoded[0])


class _CompiledSide:
    """A model written by `rasp compile`, against its source program or a program extracted
    from it (recognised by the compiler's BOS token in its @vocab)."""

    kind = "compiled"
    task_name = mode = None

    def __init__(self, program: ir.Program, compiled, max_len: int | None):
        from compiler.compile import BOS_TOKEN
        self.compiled = compiled
        if program.vocab is None:
            raise RaspError([Diagnostic("V601", "the program has no @vocab")])
        inputs = list(compiled.vocab[1:])
        vocab = set(program.vocab)
        self.extracted = BOS_TOKEN in vocab
        if self.extracted:
            # an extracted program names tokens as strings when the compiler's were not
            self.to_program = {t: (t if t in vocab else str(t)) for t in inputs}
            missing = [t for t in inputs if self.to_program[t] not in vocab]
        else:
            self.to_program = {t: t for t in inputs}
            missing = [t for t in inputs if t not in vocab]
            extra = [t for t in program.vocab if t not in set(inputs)]
            if extra:
                raise RaspError([Diagnostic("V602", "the program's @vocab has tokens the "
                                            f"compiled model does not: {extra[:10]}")])
        if missing:
            raise RaspError([Diagnostic("V602", "the compiled model's vocabulary has tokens "
                                        f"the program's @vocab lacks: {missing[:10]}")])
        kind = compiled.output_kind
        self.model_view = {"num": View("number"), "vec": View("vector")}.get(kind, View("value"))
        if self.extracted:
            # the program's logits are the model's unembedding: read them as the model is read
            view = {"num": View("column"), "vec": View("vector")}.get(kind)
            self.runner = ProgramRunner(program, view=view)
            if view is None:
                self.runner.view = _argmax_view(self.runner)
        else:
            self.runner = ProgramRunner(program)
        why = comparable(self.runner.view, self.model_view)
        if why is not None:
            raise RaspError([Diagnostic("V603", f"the program's output "
                                        f"({self.runner.output_type}) cannot be compared with "
                                        f"the compiled model's ({kind}): {why}")])
        self.comparison = f"decoded outputs at every position ({self.runner.view.describe()})"
        limit = program.maxlen - 1 if self.extracted and program.maxlen else program.maxlen
        length = _check_length(max_len, {"the program's @maxlen": limit,
                                         "the compiled maximum length": compiled.maxlen})
        bos = None if self.extracted else program.bos
        alphabet = tuple(t for t in inputs if bos is None or t != bos)
        self.space = InputSpace(alphabet, length, bos)
        self.bos_token = BOS_TOKEN

    def _program_inputs(self, batch):
        if self.extracted:
            return [[self.bos_token] + [self.to_program[t] for t in seq] for seq in batch]
        return batch

    def _program_outcome(self, batch) -> Outcome:
        outcome = self.runner.run(self._program_inputs(batch))
        if self.extracted and outcome.decoded is not None:
            outcome.decoded = outcome.decoded[:, 1:]      # the compiler's BOS position
        return outcome

    def model_outcome(self, batch) -> Outcome:
        scores = np.stack(self.compiled.logits(batch))
        kind = self.compiled.output_kind
        if kind == "num":
            decoded = scores[..., 0].astype(np.float64)
        elif kind == "vec":
            decoded = scores.astype(np.float64)
        else:
            labels = np.empty(len(self.compiled.output_values), dtype=object)
            labels[:] = self.compiled.output_values
            decoded = labels[rule.tokens(scores)]
        return Outcome(decoded, [None] * len(batch))

    def key(self, seq: list) -> tuple:
        return self.space.key(seq)

    def agree_group(self, batch: list[list]) -> np.ndarray:
        return outcome_agreement(self.runner.view, self._program_outcome(batch),
                                 self.model_view, self.model_outcome(batch))

    def counterexample(self, seq: list) -> Counterexample:
        return _counterexample(seq, self.runner.view, self._program_outcome([seq]),
                               self.model_view, self.model_outcome([seq]),
                               np.ones(len(seq), dtype=bool))


def _argmax_view(runner: ProgramRunner) -> View:
    t = runner.output_type
    basis = getattr(t, "out", None) or getattr(t, "basis", None)
    if basis is None:
        return runner.view
    return View("argmax", tuple(basis))
