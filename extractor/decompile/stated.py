"""A LayerNorm the program states: the route taken where LLN-A loses the model.

LLN-A (linearise.py) divides every LayerNorm by one constant. Where that loses the model
(layernorm.diagnose names the LayerNorms at fault), pruning has nothing faithful to start
from. On a one-layer model the measured alternative is to keep the final LayerNorm's
per-position scale, stated in the program as a function of a named quantity:

1. **Measure** the final LayerNorm's scale on task data: log scale against log(n + 1)
   (n + 1 the positions a causal mean at position n averages), one intercept per token.
   A slope near -1 (within SLOPE_TOLERANCE) says the LayerNorm divides by a scale
   proportional to 1 / (n + 1): it multiplies what reaches it by the number of positions,
   which turns the head's averages into counts. (bce_D3: slope -0.99; docs/layernorm.md.)
2. **State** it: `share = aggregate(select(k=tokens, op=False), v=tokens)` (the head re-read
   as the uniform mean, as readout.py does) and `counts = normalize(share, 1 / (indices + 1))`.
3. **Fit** the logits on the counts (and, second, on the counts and the token) to the
   model's decisions on sequences of their own stream (logistic regression for next-token
   sets, cross-entropy on the argmax for next-token tasks), and judge each candidate, simplest
   first, like any replacement; rounded to integers or one decimal where the judge keeps it.

Used only where LLN-A loses the model, so no other checkpoint's program changes.
"""

from __future__ import annotations

import numpy as np
import torch

from extractor.decompile.readout import uniform_mean
from extractor.tasks.batches import collate
from rasp_ir import nodes as ir
from rasp_ir import types as T
from rasp_ir.interpreter import Interpreter, evaluate

SLOPE_TOLERANCE = 0.25       # |slope + 1| at most this: the scale is taken as 1 / (n + 1)
FIT_SEQUENCES = 100          # per bucket, for fitting the logit tables (their own stream)
FIT_STEPS = 500


@torch.inference_mode()
def final_scale_slope(model, task, sequences: int = 200, seed: int = 0) -> dict:
    """The final LayerNorm's scale against the position: the least-squares slope of log
    scale on log(n + 1) with one intercept per token, and the share of the log scale's
    variance it explains, over `sequences` task sequences (lengths 0 to the maximum, offset
    0, <pad> and <eos> left out)."""
    rng = np.random.default_rng([seed, 31337])
    examples = [task.sample(rng, 0, task.max_length, offset=False) for _ in range(sequences)]
    batch = collate(examples, task.vocab.pad, task.mode)
    _, cache = model(batch.tokens, position_ids=batch.positions, return_cache=True)
    keep = ((batch.tokens != task.vocab.pad) & (batch.tokens != task.vocab.eos)).numpy()
    y = np.log(cache["ln_final.hook_scale"][..., 0].double().numpy()[keep])
    x = np.log(batch.positions.double().numpy()[keep] + 1)
    tokens = batch.tokens.numpy()[keep]
    columns = [x] + [(tokens == t).astype(float) for t in np.unique(tokens)]
    X = np.stack(columns, 1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    residual = y - X @ coef
    explained = 1 - residual.var() / max(y.var(), 1e-300)
    return {"slope": round(float(coef[0]), 4), "explained": round(float(explained), 4),
            "positions": int(keep.sum())}


def stated_scale(slope: float) -> ir.Node | None:
    """The scale the program states for a measured slope: `1 / (indices + 1)` near -1."""
    if abs(slope + 1) > SLOPE_TOLERANCE:
        return None
    return ir.BinaryOp("/", ir.Const(1), ir.BinaryOp("+", ir.Indices(), ir.Const(1)))


def counts_program(subject, scale: ir.Node) -> ir.Program:
    """The program's head: the share of each token in the prefix and its counts (the share
    normalised by `scale`); the logits are added by `with_logits`."""
    bindings = (ir.Binding("share", ir.Aggregate(uniform_mean(), ir.Tokens())),
                ir.Binding("counts", ir.Primitive("normalize", (ir.Ref("share"), scale))))
    model = subject.model
    return ir.Program(bindings=bindings, output=ir.Ref("counts"), vocab=tuple(subject.tokens),
                      maxlen=model.config.n_positions, causal=model.config.causal,
                      bos=subject.bos, attention="softmax")


def with_logits(head: ir.Program, subject, tables: dict) -> ir.Program:
    """`head` with logits = one projection per reading in `tables` ({"counts" or "tokens":
    (row labels, matrix)}) and the subject's prediction."""
    outputs = tuple(subject.outputs)
    terms = []
    for reading, (rows, values) in tables.items():
        operand = ir.Ref("counts") if reading == "counts" else ir.Tokens()
        terms.append(ir.Project(operand, ir.Matrix(tuple(rows), outputs,
                                                   tuple(map(tuple, values.tolist())))))
    logits = terms[0] if len(terms) == 1 else ir.LogitsSum(tuple(terms))
    bindings = head.bindings + (ir.Binding("logits", logits),)
    output = ir.Ref("logits")
    if subject.prediction is not None:
        bindings += (ir.Binding("prediction", ir.Predict(subject.prediction, ir.Ref("logits"))),)
        output = ir.Ref("prediction")
    return ir.Program(bindings=bindings, output=output, vocab=head.vocab, maxlen=head.maxlen,
                      causal=head.causal, bos=head.bos, attention=head.attention)


@torch.inference_mode()
def _fitting_data(subject, head: ir.Program, seed: int):
    """(readings {"counts", "tokens"}: rows per scored position, the model's logits there)
    on FIT_SEQUENCES sequences per bucket from a stream of their own."""
    task, model = subject.task, subject.model
    rng = np.random.default_rng([seed, 271828])
    examples = [task.sample(rng, lo, hi, offset=False)
                for lo, hi in task.test_buckets for _ in range(FIT_SEQUENCES)]
    sequences = [list(task.vocab.names(e.tokens)) for e in examples]
    interp = Interpreter(head)
    counts = evaluate(head, sequences, ir.Ref("counts"), interpreter=interp)
    vocab = tuple(T.basis_of(interp.type_of(ir.Tokens())))
    index = {v: i for i, v in enumerate(vocab)}
    rows_c, rows_t, logits = [], [], []
    for e, seq, c in zip(examples, sequences, counts):
        batch = collate([e], task.vocab.pad, task.mode)
        out = model(batch.tokens, position_ids=batch.positions).double()[0].numpy()
        scored = batch.scored[0].numpy()[:len(seq)]
        onehot = np.eye(len(vocab))[[index[t] for t in seq]]
        rows_c.append(np.asarray(c)[scored])
        rows_t.append(onehot[scored])
        logits.append(out[:len(seq)][scored])
    return {"counts": np.concatenate(rows_c), "tokens": np.concatenate(rows_t)}, \
        np.concatenate(logits), vocab


def fit_tables(readings: dict, logits: np.ndarray, mode: str, steps: int = FIT_STEPS,
               seed: int = 0) -> list[np.ndarray]:
    """One matrix per reading (rows: its columns; columns: the outputs) whose summed
    projections make the model's decisions: logistic regression on the signs (`bce`), or
    cross-entropy on the argmax (`lm`)."""
    torch.manual_seed(seed)
    X = [torch.tensor(r, dtype=torch.float64) for r in readings]
    weights = [torch.zeros(x.shape[1], logits.shape[1], dtype=torch.float64,
                           requires_grad=True) for x in X]
    target = torch.tensor(logits)
    optimiser = torch.optim.Adam(weights, lr=0.1)
    with torch.enable_grad():
        for _ in range(steps):
            z = sum(x @ w for x, w in zip(X, weights))
            if mode == "bce":
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    z, (target > 0).double())
            else:
                loss = torch.nn.functional.cross_entropy(z, target.argmax(-1))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return [w.detach().numpy() for w in weights]


def stated_program(subject, accepts, seed: int = 0, progress=None) -> tuple:
    """(the program with the final LayerNorm stated, a log entry) — or (None, a log entry
    saying why not). `accepts(program)` judges a candidate: (ok, worst-bucket match)."""
    say = progress or (lambda text: None)
    model, task = subject.model, subject.task
    entry = {"what": "stated LayerNorm", "layer_norm": "ln_final"}
    if model.config.n_layers != 1 or model.ln_final is None:
        return None, {**entry, "why": "stated only on one-layer models with a final LayerNorm"}
    say("stating the final LayerNorm: measuring its scale against the position")
    measured = final_scale_slope(model, task, seed=seed)
    entry["measured"] = measured
    scale = stated_scale(measured["slope"])
    if scale is None:
        return None, {**entry, "why": f"the scale goes as (n + 1)^{measured['slope']}, not "
                      "as 1 / (n + 1)"}
    head = counts_program(subject, scale)
    say("stating the final LayerNorm: fitting the logits on the counts")
    data, logits, vocab = _fitting_data(subject, head, seed)
    for group in (("counts",), ("counts", "tokens")):
        tables = fit_tables([data[g] for g in group], logits, task.mode, seed=seed)
        candidate = None
        for decimals in (0, 1, None):
            rounded = [t if decimals is None else np.round(t, decimals) for t in tables]
            if decimals == 0:
                rounded = [t.astype(int) for t in rounded]
            trial = with_logits(head, subject, {g: (vocab, t) for g, t in zip(group, rounded)})
            ok, worst = accepts(trial)
            if ok:
                candidate = trial
                break
        if candidate is not None:
            return candidate, {**entry, "readings": list(group), "match": worst,
                               "rounded": decimals}
        entry.setdefault("rejected", []).append({"readings": list(group), "match": worst})
    return None, {**entry, "why": "no fitted table over the counts keeps the match"}
