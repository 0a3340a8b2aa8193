"""The compiler's driver: IR program → validated plan → weights → a runnable model."""

from __future__ import annotations

import contextlib
import gc

import attrs
import numpy as np
import torch

from rasp_ir import agreement as rule
from rasp_ir import nodes as ir
from rasp_ir import types as T
from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.interpreter import prediction_function

from .lower import TooLarge, Weights, assemble
from .plan import output_span, plan
from .transformer import Transformer, TransformerConfig
from .validate import validate

BOS_TOKEN = "<compiler_bos>"


@attrs.define
class CompiledModel:
    """A compiled program: the transformer plus what it takes to encode inputs and decode
    outputs. Inputs get a BOS position in front; outputs are read at every other position."""
    model: Transformer
    vocab: list                    # input token per id; id 0 is the compiler's BOS
    output_kind: str               # "cat", "num", "vec" or "logits"
    output_values: list | None     # the decoded value of each unembedding column (cat/logits)
    maxlen: int
    residual_labels: list
    output_function: str | None = None   # softmax/sigmoid applied to logits, as the program does

    def logits(self, inputs: list[list]) -> list[np.ndarray]:
        """The unembedded output (positions of the program only) for each input."""
        index = {t: i for i, t in enumerate(self.vocab)}
        out: list = [None] * len(inputs)
        by_length: dict = {}
        for i, seq in enumerate(inputs):
            by_length.setdefault(len(seq), []).append(i)
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            for length, members in by_length.items():
                if length > self.maxlen:
                    raise RaspError([Diagnostic("R233", f"input of length {length} is longer than "
                                                f"the compiled maximum length {self.maxlen}")])
                try:
                    ids = [[0] + [index[t] for t in inputs[i]] for i in members]
                except KeyError as exc:
                    raise RaspError([Diagnostic("R233", f"token {exc.args[0]!r} is not in the "
                                                "compiled vocabulary")]) from None
                result = self.model(torch.tensor(ids))
                if self.output_function == "softmax":
                    result = result.softmax(-1)
                elif self.output_function == "sigmoid":
                    result = result.sigmoid()
                result = result.to(dtype).numpy()
                for j, i in enumerate(members):
                    out[i] = result[j, 1:]
        return out

    def run(self, inputs: list[list]) -> list[list]:
        """Decoded outputs: a value per position (argmax for categorical and logits), or for
        a sigmoid's output the values whose probability passes 1/2, as the interpreter's."""
        decoded = []
        for scores in self.logits(inputs):
            if self.output_function == "sigmoid":
                above = rule.token_sets(scores, rule.PROBABILITY)
                decoded.append([[v for v, keep in zip(self.output_values, row) if keep]
                                for row in above])
            elif self.output_kind == "num":
                decoded.append(scores[:, 0].tolist())
            elif self.output_kind == "vec":
                decoded.append(scores.tolist())
            else:
                decoded.append([self.output_values[i] for i in scores.argmax(-1)])
        return decoded

    @property
    def stats(self) -> dict:
        c = self.model.config
        return {"layers": c.n_layers, "heads": c.n_heads, "residual_width": c.d_model,
                "mlp_width": c.d_mlp, "parameters": sum(p.numel() for p in self.model.parameters())}


def compile_program(program: ir.Program, max_len: int | None = None,
                    dtype=torch.float64) -> CompiledModel:
    """Compile `program` for inputs of up to `max_len` tokens (default: its @maxlen).
    Raises RaspError listing every construct that cannot be compiled exactly."""
    with _collector_paused():
        return _compile(program, max_len, dtype)


@contextlib.contextmanager
def _collector_paused():
    """A compile is a burst of short-lived objects, which reference counting frees. In a
    process that holds torch (~200k objects) one full cyclic collection costs more than a
    whole compile, so the collector waits for the compile to end (and then collects
    whatever cycles it left)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _compile(program: ir.Program, max_len: int | None, dtype) -> CompiledModel:
    from rasp_ir.limits import MAX_LEN
    if max_len is not None and not (isinstance(max_len, int) and 1 <= max_len <= MAX_LEN):
        raise RaspError([Diagnostic("E110", f"the longest input (--max-len) must be 1 to "
                                    f"{MAX_LEN:,}, not {max_len}",
                                    note="rasp_ir/limits.py MAX_LEN, as for @maxlen")])
    maxlen = max_len or program.maxlen
    if maxlen is not None and maxlen != program.maxlen:
        program = attrs.evolve(program, maxlen=maxlen)     # value sets follow the length
    types = T.infer(program) if program.vocab is not None and maxlen else None
    problems = validate(program, maxlen, types)
    if problems:
        raise RaspError(problems, program.source)
    try:
        the_plan = plan(program, maxlen, types[0] if types else None)
        weights = assemble(the_plan, program, maxlen)
    except TooLarge as exc:
        raise RaspError([Diagnostic("E306", str(exc), output_span(program),
                                    "lower @maxlen (or --max-len), or the number of values the "
                                    "program's s-ops range over")], program.source) from None
    model = _transformer(weights, the_plan.activation, program.causal, dtype)
    values = list(the_plan.output_values) if the_plan.output_values is not None else None
    return CompiledModel(model, weights.vocab, the_plan.output_kind, values, maxlen,
                         weights.layout.labels, prediction_function(program))


def _transformer(weights: Weights, activation: str, causal: bool, dtype) -> Transformer:
    """The model that runs `weights`: LayerNorm off, attention scores unscaled."""
    config = TransformerConfig(
        vocab_size=len(weights.vocab), n_positions=weights.n_positions,
        d_model=weights.layout.width, n_layers=weights.n_layers, n_heads=weights.n_heads,
        d_head=weights.d_head, d_mlp=weights.d_mlp,
        d_vocab_out=weights.arrays["unembed.W_U"].shape[1], layer_norm=False,
        activation=activation, causal=causal, attn_scale=1.0)
    with torch.device("meta"):          # no random initialisation: every weight is set below
        model = Transformer(config)
    state = {name: torch.from_numpy(np.ascontiguousarray(value)).to(dtype)
             for name, value in weights.arrays.items()}
    model.load_state_dict(state, assign=True)
    return model.eval()


def save_compiled(compiled: CompiledModel, directory) -> None:
    """Write a compiled model directory: weights, config and the encoding to run it, the
    Hugging Face modeling file and the tokenizer files."""
    from .checkpoint import save_model
    extra = {"compiled": {
        "vocab": compiled.vocab, "output_kind": compiled.output_kind,
        "output_values": compiled.output_values, "maxlen": compiled.maxlen,
        "residual_labels": compiled.residual_labels,
        "output_function": compiled.output_function}}
    save_model(compiled.model, directory, extra=extra)
    from .tokenizer import write_tokenizer
    words = [str(t) for t in compiled.vocab]
    # id 0 is the compiler's BOS, which every input starts with. A program extracted from a
    # compiled model has that token in its own @vocab too: one word for two ids, which a
    # tokenizer cannot say, so such a directory has no tokenizer files.
    if len(set(words)) == len(words):
        write_tokenizer(directory, compiled.vocab, {"bos_token": BOS_TOKEN},
                        compiled.maxlen + 1)


def load_compiled(directory) -> CompiledModel:
    """A compiled model directory written by `save_compiled` (E252 if it is not one)."""
    from .checkpoint import load_model
    return compiled_from(*load_model(directory), directory)


def compiled_from(model: Transformer, metadata: dict, directory) -> CompiledModel:
    """The compiled model of a loaded directory (`load_model`'s result); E252 if its config
    has no compiled program's encoding."""
    from rasp_ir.jsondata import decoded
    info = decoded((metadata.get("extra") or {}).get("compiled"))   # {"float": "inf"} -> inf
    if not info:
        raise RaspError([Diagnostic("E252", f"{directory} holds a model but not a compiled "
                                    "program (no input/output encoding in config.json)",
                                    hint="rasp run --model expects a directory written by "
                                    "rasp compile")])
    problems = _encoding_problems(info, model)
    if problems:
        raise RaspError([Diagnostic("C305", f"{directory}/config.json: extra.compiled{p}")
                         for p in problems])
    model.eval()
    return CompiledModel(model, info["vocab"], info["output_kind"], info["output_values"],
                         info["maxlen"], info["residual_labels"], info.get("output_function"))


def _encoding_problems(info, model) -> list[str]:
    """What is wrong with a compiled model's `extra.compiled` section (read from a file that
    anyone may have edited): each field's type and its fit with the weights."""
    if not isinstance(info, dict):
        return [f" is a {type(info).__name__}, not an object"]
    problems = _field_problems(info, model)
    return [f".{p}" for p in problems]


def _field_problems(info: dict, model) -> list[str]:
    from rasp_ir.limits import MAX_LEN
    atom = (str, int, float, bool, type(None))
    c, out = model.config, []

    def is_list(value, n=None):
        return isinstance(value, list) and all(isinstance(v, atom) for v in value) and \
            (n is None or len(value) == n)
    if not is_list(info.get("vocab"), c.vocab_size):
        out.append(f"vocab must be a list of {c.vocab_size} tokens (the embedding's rows)")
    kind = info.get("output_kind")
    if kind not in ("cat", "num", "vec", "logits"):
        out.append(f"output_kind {kind!r} is not one the compiler writes (cat, num, vec, "
                   "logits)")
    values = info.get("output_values")
    if kind in ("cat", "logits") and not is_list(values, c.d_vocab_out):
        out.append(f"output_values must be a list of {c.d_vocab_out} values (the "
                   "unembedding's columns)")
    elif values is not None and not is_list(values):
        out.append("output_values must be a list of values or null")
    maxlen = info.get("maxlen")
    if isinstance(maxlen, bool) or not isinstance(maxlen, int) or \
            not 1 <= maxlen <= min(MAX_LEN, c.n_positions):
        out.append(f"maxlen must be an integer from 1 to {min(MAX_LEN, c.n_positions)}")
    if not is_list(info.get("residual_labels")):
        out.append("residual_labels must be a list")
    if info.get("output_function") not in (None, "softmax", "sigmoid"):
        out.append("output_function must be null, \"softmax\" or \"sigmoid\"")
    return out
