"""`rasp extract … --verify` (extractor/checking/roundtrip.py): the extracted program compiled back to
weights agrees exactly with its interpreter and is compared with the checkpoint per bucket;
and the compiler's D-RASP constructs it relies on (mlp nodes of either activation, primitives
on categorical values) compile exactly, while those it cannot make exact are listed."""

from __future__ import annotations

import contextlib
import io
import itertools
import json

import numpy as np
import pytest
from conftest import EXAMPLES

import grammar
from compiler.compile import compile_program
from extractor.checking.roundtrip import (
    compare,
    compiled_scores,
    program_scores,
    round_trip,
)
from extractor.tasks.checkpoint import load_subject
from rasp_ir import cli
from rasp_ir.cli.extraction import round_trip_lines
from rasp_ir.diagnostics import RaspError

BIN_MAJORITY = EXAMPLES / "bin_majority"
BUCKETS = {"0-50", "51-100", "101-150"}
HEAD = '@vocab {"0", "1", "<bos>", "<sep>", "<eos>", "<pad>"};\n@maxlen 154;\n@causal;\n' \
       '@bos "<bos>";\n@attention "softmax";\n'
# what `rasp extract examples/bin_majority --quick` writes (README: "Two commands")
PRUNED = HEAD + '''
s0_0 = select(k=tokens, op=False);
mean_token = aggregate(s=s0_0, v=tokens);
logits = project(inp=mean_token, op=(inp == out));
prediction = softmax(logits);
@output prediction;
'''


@pytest.fixture(scope="module")
def subject():
    return load_subject(BIN_MAJORITY)


@pytest.fixture(scope="module")
def full_extraction(tmp_path_factory):
    """`rasp extract examples/bin_majority --stage full --verify` (few sequences, no fitting):
    the exact program of every path, with a gelu mlp node and table-valued selects."""
    path = tmp_path_factory.mktemp("full") / "bm.rasp"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(["extract", str(BIN_MAJORITY), "--stage", "full", "--fit-steps", "0",
                           "--n", "8", "-o", str(path), "--verify", "--quiet"])
    report = json.loads(path.with_suffix(".report.json").read_text())
    return status, out.getvalue(), report, path


def test_verify_compiles_the_full_program_exactly(full_extraction):
    status, printed, report, path = full_extraction
    assert status == 0
    trip = report["roundtrip"]
    assert trip["compiled"] and trip["model"]["activation"] == "gelu_new"
    assert (path.with_suffix(".compiled") / "config.json").exists()
    exact = trip["interpreter"]
    assert exact["exact"] and exact["differences"] == 0 and exact["ties"] == 0
    assert exact["task_sequences"] == 3 * 8 and exact["generated"] == 8
    assert exact["max_abs_logit_diff"] < 1e-9
    assert "compiled vs interpreter: exact" in printed


def test_verify_reports_the_checkpoint_match_per_bucket(full_extraction):
    _, printed, report, _ = full_extraction
    buckets = report["roundtrip"]["checkpoint"]["buckets"]
    assert set(buckets) == BUCKETS
    for b in buckets.values():
        # exact agreement with the program: the compiled model matches where the program does
        assert b["match"] == b["program_match"] and 0.0 <= b["task"] <= 1.0
    assert "compiled vs checkpoint" in printed and "101-150" in printed


def test_pruned_program_round_trip(tmp_path, subject):
    path = tmp_path / "majority.rasp"
    path.write_text(PRUNED)
    trip = round_trip(path, subject, n=10)
    assert trip["compiled"] and trip["model"]["layers"] == 1
    assert trip["interpreter"]["exact"] and trip["interpreter"]["max_abs_logit_diff"] < 1e-9  # float64, summed in another order
    assert {name: b["match"] for name, b in trip["checkpoint"]["buckets"].items()} == \
        dict.fromkeys(BUCKETS, 1.0)


def test_compile_extract_compile_of_a_compiled_model(tmp_path):
    # a model written by `rasp compile` has no task: (b) compares on generated inputs, and
    # its full program is an exact rewrite, so the recompiled model matches it everywhere
    from compiler.compile import save_compiled
    from extractor.decompile.extract import extract_full
    from rasp_ir.tables import write_program
    program = grammar.load(EXAMPLES / "reverse.rasp")
    save_compiled(compile_program(program, max_len=5), tmp_path / "model")
    subject = load_subject(tmp_path / "model")
    write_program(extract_full(subject).program, tmp_path / "reverse.rasp")
    trip = round_trip(tmp_path / "reverse.rasp", subject, n=40)
    assert trip["compiled"] and trip["interpreter"]["exact"]
    assert trip["interpreter"]["generated"] == 40
    buckets = trip["checkpoint"]["buckets"]
    assert buckets and all(b["match"] == 1.0 for b in buckets.values())
    assert sum(b["sequences"] for b in buckets.values()) == 40
    assert "generated inputs; no task data" in "\n".join(round_trip_lines(trip))


UNCOMPILABLE = HEAD + '''
a = aggregate(s=select(k=tokens, q=tokens, op=matrix(rows=["0", "1", "<bos>", "<sep>", "<eos>",
    "<pad>"], cols=["0", "1", "<bos>", "<sep>", "<eos>", "<pad>"], values=[[1, 0, 0, 0, 0, 0],
    [0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0],
    [0, 0, 0, 0, 0, 1]])), v=tokens);
h = harden(a);
m1 = mlp(a, W_in=matrix(rows=[0, 1, 2, 3, 4, 5], cols=[0], values=[[1], [-1], [0], [0], [0], [0]]),
    b_in=matrix(rows=[0], values=[0]), W_out=matrix(rows=[0], cols=[0], values=[[1]]),
    b_out=matrix(rows=[0], values=[0]));
m2 = mlp(a, W_in=matrix(rows=[0, 1, 2, 3, 4, 5], cols=[0], values=[[1], [-1], [0], [0], [0], [0]]),
    b_in=matrix(rows=[0], values=[0]), W_out=matrix(rows=[0], cols=[0], values=[[1]]),
    b_out=matrix(rows=[0], values=[0]), activation="relu");
logits = project(inp=h, op=(inp == out)) + project(inp=m1, op=matrix(rows=[0], cols=["0", "1",
    "<bos>", "<sep>", "<eos>", "<pad>"], values=[[1, -1, 0, 0, 0, 0]])) + project(inp=m2,
    op=matrix(rows=[0], cols=["0", "1", "<bos>", "<sep>", "<eos>", "<pad>"],
    values=[[1, -1, 0, 0, 0, 0]])) + project(inp=is_pure(a, 0.9), op=(inp == out));
prediction = softmax(logits);
@output prediction;
'''


def test_uncompilable_constructs_are_listed_with_their_places(tmp_path, subject):
    path = tmp_path / "odd.rasp"
    path.write_text(UNCOMPILABLE)
    trip = round_trip(path, subject, n=5)
    assert not trip["compiled"] and not path.with_suffix(".compiled").exists()
    problems = trip["problems"]
    assert {p["code"] for p in problems} == {"E401"}
    by_line = {p["line"]: p["message"] for p in problems}
    line = {what: next(i for i, text in enumerate(UNCOMPILABLE.splitlines(), 1) if what in text)
            for what in ("harden(", "m1 = mlp", "m2 = mlp", "is_pure(")}
    assert set(by_line) == set(line.values())
    assert "harden" in by_line[line["harden("]] and "is_pure" in by_line[line["is_pure("]]
    assert "one activation" in by_line[line["m1 = mlp"]]
    assert "one activation" in by_line[line["m2 = mlp"]]
    printed = "\n".join(round_trip_lines(trip))
    assert "not compiled: 4 construct(s) cannot be compiled exactly" in printed
    assert f"odd.rasp:{line['harden(']}:" in printed and "\n      harden(a);" in printed


# ------------------------------------------------------------ the compiler's constructs

CATS = '@vocab V = {"a", "b", "c"};\n@maxlen 5;\n@causal;\n'
PREV = 'prev = aggregate(select(indices, indices, k == q - 1), tokens);\n'


def exhaustive(program, longest=4):
    return [list(s) for n in range(1, longest + 1)
            for s in itertools.product(program.vocab, repeat=n)]


def check_exact(program):
    compiled = compile_program(program)
    inputs = exhaustive(program)
    result = compare(program_scores(program, inputs), compiled_scores(compiled, inputs),
                     inputs, compiled.output_function, 0)
    assert result["exact"] and result["ties"] == 0, result["first_difference"]
    assert result["max_abs_logit_diff"] < 1e-9
    return compiled


@pytest.mark.parametrize("output", [
    "harden(tokens)", 'exists(tokens, "a", 0.5)', "is_pure(tokens, 0.9)",
    'balance(tokens, "a", "b", 0.0)', 'diff(tokens, "a", "c", 2)', "product(tokens, prev)",
    'erase(aggregate(select(tokens, tokens, ==) + select(k=tokens, op=(k == "a")), tokens))',
    'harden(tokens) == "a" and exists(prev, "b", 0.5)'])
def test_primitives_on_categorical_values_compile_exactly(output):
    check_exact(grammar.parse(CATS + PREV + f"out = {output};\n@output out;\n"))


def _mlp_program(activation: str, rng) -> str:
    w_in = rng.normal(size=(6, 4)).round(3).tolist()
    w_out = rng.normal(size=(4, 2)).round(3).tolist()
    return CATS + PREV + f'''
avg = aggregate(s=select(k=tokens, q=tokens, op=matrix(rows=V, cols=V,
    values=[[0.5, -1, 2], [1, 0, -0.5], [0.25, 1.5, 0]])), v=tokens);
net = mlp(avg, tokens, W_in=matrix(rows=[0, 1, 2, 3, 4, 5], cols=[0, 1, 2, 3], values={w_in}),
    b_in=matrix(rows=[0, 1, 2, 3], values=[0.1, -0.2, 0, 0.3]),
    W_out=matrix(rows=[0, 1, 2, 3], cols=["x", "y"], values={w_out}),
    b_out=matrix(rows=["x", "y"], values=[0.5, -0.5]), activation="{activation}");
same = tokens == prev;
count = selector_width(select(tokens, tokens, ==));
logits = project(inp=net, op=matrix(rows=["x", "y"], cols=V, values=[[1, 0, -1], [0, 2, 1]]))
    + project(inp=same, op=matrix(rows=[False, True], cols=V, values=[[0, 0.5, 0], [1, 0, 0]]))
    + project(inp=count > 1, op=matrix(rows=[False, True], cols=V, values=[[0, 0, 0.7],
      [0, 0.3, 0]]));
prediction = softmax(logits);
@output prediction;
'''


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_mlp_nodes_compile_exactly_beside_the_compilers_own_mlps(activation):
    # `same` and `count > 1` are MLPs of the compiler (a lookup and a discretising ramp):
    # in a GELU model they are scaled so that GELU is exact on them
    program = grammar.parse(_mlp_program(activation, np.random.default_rng(3)))
    compiled = check_exact(program)
    assert compiled.model.config.activation == {"gelu": "gelu_new", "relu": "relu"}[activation]


def test_sharpen_of_a_distribution_is_refused_with_its_reason():
    src = CATS + ('avg = aggregate(select(tokens, tokens, ==) + select(k=tokens, op=(k == "a")), '
                  'tokens);\nsharp = sharpen(avg, 2);\n@output sharp;\n')
    with pytest.raises(RaspError) as info:
        compile_program(grammar.parse(src, "sharp.rasp"))
    (problem,) = info.value.diagnostics
    assert problem.code == "E401" and problem.span.line == 5
    assert "sharpen" in problem.message and "vector" in problem.message


def test_a_flipped_tie_is_a_difference_and_is_named_as_a_tie():
    program = [np.array([[1.0, 1.0, 0.0], [2.0, 0.0, 0.0]])]
    compiled = [np.array([[1.0, 1.0 + 1e-12, 0.0], [2.0, 0.0, 0.0]])]
    result = compare(program, compiled, [["a", "b"]], "softmax", 0)
    assert not result["exact"] and result["differences"] == result["ties"] == 1
    assert result["first_difference"] == {"input": ["a", "b"], "position": 0, "tie": True,
                                          "source": "generated"}
    sets = compare([np.array([[0.5, -1.0]])], [np.array([[0.5, 1.0]])], [["a"]], "sigmoid", 1)
    assert sets["differences"] == 1 and sets["ties"] == 0
