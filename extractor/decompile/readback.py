"""An MLP read back as a lookup: a class per combination of its inputs' values.

Both extraction pipelines use this. A compiled model's MLP reads one-hot encodings, so it is a
table over every combination of its inputs' values (extractor/decompile/compiled.py's
`mlp_table`); a trained model's MLP whose inputs take few values on the task's data is read
the same way over the combinations the data reaches (extractor/decompile/replace.py's
`Replacer._read_back`). In both, combinations that write (nearly) the same output vector share
a class, the new variable is that class, printed `{key: class}[x]` (x the input, or the
`product` of the inputs), and each class writes its vector to the stream.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from attrs import field, frozen

from extractor.decompile.circuit_program import MlpReplacement
from rasp_ir import nodes as ir
from rasp_ir.primitives import product_label


def numbered_by_first(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """`labels` renumbered 0, 1, … in order of first appearance; (classes, how many)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)], len(order)


def cluster(vectors: np.ndarray, tolerance: float, weights: np.ndarray | None = None
            ) -> tuple[np.ndarray, int]:
    """A class per row of `vectors` (n, D): rows within `tolerance` (Euclidean) of a class's
    first member join it. Rows are visited heaviest first (`weights`, e.g. how often the
    data reaches each combination) so a class is centred on a common row, not on a rare one;
    classes are then numbered by first appearance in row order. (classes, how many)."""
    n = len(vectors)
    visit = np.argsort(-weights, kind="stable") if weights is not None else np.arange(n)
    centres, label = [], np.empty(n, dtype=int)
    for i in visit:
        for k, c in enumerate(centres):
            if np.linalg.norm(vectors[i] - c) <= tolerance:
                label[i] = k
                break
        else:
            label[i] = len(centres)
            centres.append(vectors[i])
    return numbered_by_first(label)


def _bare(operand: ir.Node) -> ir.Node:
    # the variable under a `harden`, for `erase` (which reads any value)
    if isinstance(operand, ir.Primitive) and operand.name == "harden":
        return operand.args[0]
    return operand


def lookup_replacement(name: str, operands: list, bases: list, classes: np.ndarray,
                       E: np.ndarray) -> MlpReplacement:
    """The MLP bound to `name` as the class of its inputs' combination.

    operands: the categorical readings of the inputs (a variable, `harden(x)`,
    `exists(x, v, τ)`, …), bases: their value sets; classes: the class of every combination
    in `itertools.product` order over the bases; E: (classes, d_model), what each class writes.
    One class: `erase` (a constant). One operand with a class per value: the operand itself
    (no line for a plain variable). Otherwise `{key: class}[x]` over the operand, or over the
    `product` of the operands, whose keys are the labels `"u,v"`."""
    n = int(classes.max()) + 1 if len(classes) else 0
    if n == 1:
        return MlpReplacement(name, ir.Primitive("erase", (_bare(operands[0]),), ()), (1,), E)
    values = tuple(int(k) for k in classes)
    if len(operands) == 1 and n == len(values):
        # a class per value: the reading itself, read through the classes' vectors
        E_in = np.stack([E[values[i]] for i in range(len(values))])
        operand = operands[0]
        if isinstance(operand, (ir.Ref, ir.Tokens, ir.Indices)):
            label = operand.name if isinstance(operand, ir.Ref) else \
                ("token" if isinstance(operand, ir.Tokens) else "pos")
            return MlpReplacement(label, None, tuple(bases[0]), E_in, operand)
        return MlpReplacement(name, operand, tuple(bases[0]), E_in)
    operand, keys = operands[0], list(bases[0])
    for other, basis in zip(operands[1:], bases[1:]):
        operand = ir.Primitive("product", (operand, other), ())
        keys = [product_label(u, v) for u in keys for v in basis]
    return MlpReplacement(name, ir.Lookup(tuple(keys), values, operand), tuple(range(n)), E)


# ------------------------------------------------------------------ a trained MLP's readings

# The largest lookup read back from a trained MLP (the product of the readings' bases): a table
# a person can read on the page. A larger one (a lookup over every position, say) would count
# as read back while saying nothing; the MLP then stays, and the log says why.
MAX_COMBINATIONS = 64
STEP = 0.05                  # thresholds are multiples of this: a readable constant


@frozen
class Reading:
    """A categorical reading of one MLP input on the judge's data: `node` (the input itself,
    `harden(x)`, or `exists(x, v, τ)`, a threshold on the fraction x[v]) takes the value
    `basis[codes[i]]` at position i."""
    node: ir.Node
    basis: tuple
    codes: np.ndarray = field(eq=False, repr=False)
    source: str = ""             # the input it reads, for the log


def _threshold(column: np.ndarray, out: np.ndarray, variance: float,
               energy: float) -> tuple[float, float]:
    """(τ, explained) of the best readable threshold `column > τ` on the output (`energy`:
    its Σ|x|²); τ = nan when none splits the data."""
    best = (float("nan"), 0.0)
    for tau in np.round(np.arange(STEP, 1.0, STEP), 2):
        above = column > tau
        if above.all() or not above.any():
            continue
        share, _ = explained([above.astype(int)], out, variance, energy)
        if share > best[1]:
            best = (float(tau), share)
    return best


def readings(ref: ir.Node, source: str, X: np.ndarray, basis: tuple, categorical: bool,
             out: np.ndarray, variance: float, value_limit: int = 16) -> list[Reading]:
    """The categorical readings of an MLP input with rows X (N, |basis|) (one-hot when
    `categorical`) that take more than one value on the data: a categorical input as it is;
    a vector as `harden(x)` and, over at most `value_limit` basis values, as the best
    threshold `exists(x, v, τ)` of each entry that varies (τ a multiple of STEP)."""
    codes = X.argmax(1)          # np.argmax takes the first on ties, as `harden` does
    found = []
    if len(np.unique(codes)) > 1:
        node = ref if categorical else ir.Primitive("harden", (ref,), ())
        found.append(Reading(node, tuple(basis), codes, source))
    if categorical or len(basis) > value_limit:
        return found
    energy = sum_of_squares(out)
    for j, v in enumerate(basis):
        tau, _ = _threshold(X[:, j], out, variance, energy)
        if not np.isnan(tau):
            node = ir.Primitive("exists", (ref,), (v, tau))
            found.append(Reading(node, (False, True), (X[:, j] > tau).astype(int), source))
    return found


def combination_means(codes: list, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the mean row of `out` over each combination of the code columns the data reaches,
    the combination of each position as an index into those means)."""
    sums, counts, inverse = _combination_sums(codes, out)
    return sums / counts[:, None], inverse


def _combination_sums(codes: list, out: np.ndarray):
    """(the summed rows of `out` per combination reached, how many positions each, each
    position's combination). Counted with bincount over the joint code, not np.unique and
    np.add.at: the readings of a two-layer model's MLP are grouped thousands of times over
    hundreds of thousands of positions, and a sort per grouping took most of an extraction."""
    joint = np.zeros(len(out), dtype=np.int64)
    for c in codes:
        joint = joint * (int(c.max()) + 1) + c
    counts = np.bincount(joint)
    reached = np.flatnonzero(counts)
    index = np.full(len(counts), -1, dtype=np.int64)
    index[reached] = np.arange(len(reached))
    inverse = index[joint]
    sums = np.stack([np.bincount(inverse, weights=out[:, j], minlength=len(reached))
                     for j in range(out.shape[1])], 1)
    return sums, counts[reached].astype(float), inverse


def sum_of_squares(out: np.ndarray) -> float:
    """Σ|x|² over the rows of `out`: `explained`'s constant, computed once per MLP."""
    return float(np.einsum("ij,ij->", out, out))


def explained(codes: list, out: np.ndarray, variance: float,
              energy: float | None = None) -> tuple[float, np.ndarray]:
    """(share of the output's variance explained by the mean output of each combination of
    the code columns, the combination of each position as one integer); `energy`: Σ|x|² of
    `out` (sum_of_squares), when the caller groups the same output many times."""
    sums, counts, inverse = _combination_sums(codes, out)
    if energy is None:
        energy = sum_of_squares(out)
    # the squared distance to the group means, by the within-group identity
    # Σ|x - mean|² = Σ|x|² - Σ_groups |sum|² / count (no (N, D) array per grouping)
    residual = (energy - float(((sums ** 2).sum(1) / counts).sum())) / len(out)
    return 1 - max(residual, 0.0) / variance, inverse


# More groups of one size than this, and the larger size extends only the best BEAM groups of
# the size below by one reading (a two-layer model's MLP can have dozens of readings: all
# their triples, each grouped over every judged position, took most of an extraction).
MAX_GROUPS = 500
BEAM = 16


def combinations(found: list, out: np.ndarray, variance: float, max_size: int = 3,
                 per_size: int = 3, gain: float = 0.02) -> list[tuple[float, tuple]]:
    """Sets of readings to read an MLP back over, simplest first: for 1, 2, … `max_size`
    readings (their bases' product at most MAX_COMBINATIONS), the `per_size` that explain
    most of the output, each as (explained, readings). A larger set is tried only where it
    explains `gain` more than the best smaller one. Every set of a size is scored while
    there are at most MAX_GROUPS of them; beyond, the sets that extend the BEAM best of the
    size below."""
    chosen, best, below = [], 0.0, []
    energy = sum_of_squares(out)
    for size in range(1, max_size + 1):
        if math.comb(len(found), size) <= MAX_GROUPS or not below:
            groups = itertools.combinations(range(len(found)), size)
        else:
            groups = sorted({tuple(sorted(g + (i,))) for _, g in below[:BEAM]
                             for i in range(len(found)) if i not in g})
        scored = []
        for group in groups:
            readings = tuple(found[i] for i in group)
            if int(np.prod([len(r.basis) for r in readings])) > MAX_COMBINATIONS:
                continue
            share, _ = explained([r.codes for r in readings], out, variance, energy)
            scored.append((share, group))
        scored.sort(key=lambda s: -s[0])
        below = scored
        kept = [(share, tuple(found[i] for i in g)) for share, g in scored[:per_size]
                if share > best + gain]
        if kept:
            best = kept[0][0]
        chosen += kept
    return chosen


def read_back(name: str, group: tuple, out: np.ndarray, tolerance: float) -> MlpReplacement:
    """The MLP bound to `name` as the class of its readings' combination (`group`): the mean
    output of each combination the data reaches, combinations whose means lie within
    `tolerance` of each other one class; a combination never reached takes the class reached
    most often (it has no data to be read from)."""
    sizes = [len(r.basis) for r in group]
    index = np.zeros(len(out), dtype=np.int64)
    for r, size in zip(group, sizes):
        index = index * size + r.codes              # row-major, as itertools.product
    reached, inverse, counts = np.unique(index, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(reached), out.shape[1]))
    np.add.at(sums, inverse, out)
    means = sums / counts[:, None]
    labels, n = cluster(means, tolerance, counts)
    common = np.bincount(labels, weights=counts).argmax()
    classes = np.full(int(np.prod(sizes)), common)
    classes[reached] = labels
    classes, n = numbered_by_first(classes)
    at = classes[index]                              # each position's class
    E = np.stack([out[at == k].mean(0) for k in range(n)])
    return lookup_replacement(name, [r.node for r in group], [r.basis for r in group],
                              classes, E)
