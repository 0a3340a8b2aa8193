"""`rasp verify`: a program against a compiled model or a trained checkpoint.

The exact full program of a compiled model must match it everywhere (every generated input,
exhaustively at short lengths); so must the compiled source. A broken program must yield a
counterexample that really differs when the program and the model are re-run independently.
Against trained checkpoints (the shipped example, and the shared ones when ../shared exists)
the full program is the LLN-A rewrite, so the match need not be 1: it must equal the LLN-A
faithfulness the extractor measured in torch on the same sequences, and any counterexample
must be real.
"""

import json

import numpy as np
import pytest
import torch
from hypothesis import settings

import grammar
from compiler.compile import compile_program, load_compiled, save_compiled
from conftest import EXAMPLES, SHARED
from extractor.tasks.checkpoint import load_with_task
from extractor.decompile.extract import extract_full
from extractor.tasks.checkpoint import load_subject
from extractor.checking.verify import verify
from rasp_ir.cli import main
from rasp_ir.interpreter import evaluate, run

CHECKPOINTS = SHARED / "checkpoints"
BIN_MAJORITY = CHECKPOINTS / "bin_majority-@1l1h16d3lr01drop"
TOMITA1 = CHECKPOINTS / "bce_tomita1-@1l1h16d3lr00drop"
needs_shared = pytest.mark.skipif(not BIN_MAJORITY.is_dir(), reason=f"no {BIN_MAJORITY}")
HYPOTHESIS_EXAMPLES = settings.default.max_examples


@pytest.fixture(autouse=True)
def one_torch_thread():
    # extraction mixes torch and numpy: spinning OpenMP workers slow numpy down
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def compiled_dir(tmp_path, name, max_len=5):
    source = grammar.load(EXAMPLES / f"{name}.rasp")
    directory = tmp_path / f"{name}_model"
    save_compiled(compile_program(source, max_len), directory)
    return source, directory


def full_program(directory, **options):
    return extract_full(load_subject(directory), **options).program


@pytest.mark.parametrize("name", ["histogram", "reverse", "frac_prevs", "drasp_copy",
                                  "sort_unique", "dyck1"])
def test_a_compiled_model_matches_its_source_and_its_full_program(tmp_path, name):
    source, directory = compiled_dir(tmp_path, name)
    for program in (source, full_program(directory)):
        result = verify(program, directory, examples=200,
                        hypothesis_examples=HYPOTHESIS_EXAMPLES)
        assert result.matches, result.counterexample
        assert result.kind == "compiled" and result.buckets == {}
        assert result.search.exhaustive_up_to >= 3
        assert all(b["match"] == 1.0 for b in result.generated_buckets().values())


def test_a_broken_program_gets_a_real_counterexample(tmp_path):
    source, directory = compiled_dir(tmp_path, "histogram")
    broken = grammar.parse(
        '@vocab {"a", "b", "c", "d"}; @maxlen 5;\n'
        'hist = selector_width(select(k=tokens, q=tokens, op=(k == q and k != "c")));\n'
        '@output hist;')
    result = verify(broken, directory, examples=100)
    c = result.counterexample
    assert not result.matches and c.input == ["c"] and result.counterexample_source == \
        "exhaustive"
    assert c.output_a == [0] and c.output_b == [1] and c.differs_at == [0]
    # re-run independently: the interpreter and the compiled model
    assert run(broken, [c.input])[0].output != load_compiled(directory).run([c.input])[0]
    bucket = result.generated_buckets()
    assert min(b["match"] for b in bucket.values()) < 1.0


def model_predictions(model, task, tokens):
    ids = torch.tensor([task.vocab.ids(tokens)])
    with torch.no_grad():
        logits = model(ids)[0].double().numpy()
    if task.mode == "bce":
        return logits > 0
    return np.array(task.vocab.tokens, dtype=object)[logits.argmax(-1)]


def program_predictions(program, task, tokens):
    if task.mode == "bce":
        return evaluate(program, [tokens], program.output)[0] > 0.5
    return np.array(run(program, [tokens])[0].output, dtype=object)


def check_trained(directory, n=40, max_len=8):
    model, task = load_with_task(directory)
    extraction = extract_full(load_subject(directory), n=n, fit_steps=0)
    program = extraction.program
    result = verify(program, directory, n=n, max_len=max_len, examples=200,
                    hypothesis_examples=HYPOTHESIS_EXAMPLES)
    assert result.kind == "trained" and result.task == task.name
    assert set(result.buckets) == {"0-50", "51-100", "101-150"}
    # the program is the LLN-A model: on the same sequences, the interpreter running it
    # agrees with the checkpoint exactly as often as the extractor measured the linearised
    # model in torch (float32 may tip a near-tie either way)
    faithfulness = extraction.report.lln_a["faithfulness"]
    for bucket, value in result.buckets.items():
        assert abs(value["match"] - faithfulness[bucket]["match"]) <= 0.02, (bucket, value)
    assert sum(b["sequences"] for b in result.generated_buckets().values()) == \
        result.search.checked
    c = result.counterexample
    if c is not None:
        ours = program_predictions(program, task, c.input)
        theirs = model_predictions(model, task, c.input)
        assert c.differs_at
        for position in c.differs_at:
            assert np.any(ours[position] != theirs[position]), (c, position)
    return result


def test_the_full_program_of_the_shipped_checkpoint():
    result = check_trained(EXAMPLES / "bin_majority")
    assert result.mode == "lm" and "argmax" in result.comparison


@needs_shared
def test_the_full_program_of_a_shared_checkpoint():
    check_trained(BIN_MAJORITY)


@needs_shared
@pytest.mark.skipif(not TOMITA1.is_dir(), reason=f"no {TOMITA1}")
def test_next_token_sets_compare_every_sign():
    result = check_trained(TOMITA1)
    assert result.mode == "bce" and "sign" in result.comparison


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("folder", sorted(p.name for p in CHECKPOINTS.glob("*-@1l*"))
                         if CHECKPOINTS.is_dir() else [])
def test_every_one_layer_shared_checkpoint(folder):
    check_trained(CHECKPOINTS / folder, n=100, max_len=10)


# ---------------------------------------------------------------- the command

def test_command_on_a_compiled_model(tmp_path, capsys):
    _, directory = compiled_dir(tmp_path, "reverse", max_len=4)
    source = str(EXAMPLES / "reverse.rasp")
    assert main(["verify", source, str(directory), "--examples", "50"]) == 0
    out = capsys.readouterr().out
    assert "compiled model" in out and "no difference found" in out and "match 1.0000" in out
    assert main(["verify", source, str(directory), "--json", "--examples", "50"]) == 0
    report = json.loads(capsys.readouterr().out)["result"]
    assert report["matches"] and report["search"]["mode"] == "exhaustive"
    assert report["search"]["max_len"] == 4


def test_command_on_a_trained_checkpoint(tmp_path, capsys):
    out = tmp_path / "bm.rasp"
    assert main(["extract", str(EXAMPLES / "bin_majority"), "--stage", "full", "-o", str(out),
                 "--n", "50", "--fit-steps", "0", "--quiet"]) == 0
    capsys.readouterr()
    status = main(["verify", str(out), str(EXAMPLES / "bin_majority"), "--n", "30",
                   "--max-len", "6", "--examples", "50", "--json"])
    report = json.loads(capsys.readouterr().out)["result"]
    assert status == (0 if report["matches"] else 1)
    assert set(report["task_data"]) == {"0-50", "51-100", "101-150"}
    assert report["task"] == "bin_majority" and report["mode"] == "lm"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("case, code", [
    ("no checkpoint", "C301"), ("missing program", "E252"), ("syntax", "E1"),
    ("vocab", "V602"), ("task on compiled", "V604"), ("max-len", "V604"),
    ("task tokens", "V605"), ("output kind", "V603")])
def test_command_errors_are_diagnostics(tmp_path, capsys, case, code):
    _, directory = compiled_dir(tmp_path, "histogram")
    source = str(EXAMPLES / "histogram.rasp")
    shipped = str(EXAMPLES / "bin_majority")
    args = {
        "no checkpoint": [source, str(tmp_path / "nowhere")],
        "missing program": [str(tmp_path / "nowhere.rasp"), str(directory)],
        "syntax": [write(tmp_path, "syntax.rasp", "x = = 1;"), str(directory)],
        "vocab": [str(EXAMPLES / "sort.rasp"), str(directory)],
        "task on compiled": [source, str(directory), "--task", "bin_majority"],
        "max-len": [source, str(directory), "--max-len", "9"],
        "task tokens": [write(tmp_path, "tokens.rasp", '@vocab {"0", "1"}; @maxlen 10; x = tokens; '
                              '@output x;'), shipped],
        "output kind": [write(tmp_path, "kind.rasp", '@vocab {"0", "1", "<bos>", "<sep>", '
                              '"<eos>", "<pad>"}; @maxlen 10; '
                              'y = sigmoid(project(inp=tokens, op=(inp == out))); @output y;'),
                        shipped],
    }[case]
    assert main(["verify"] + args) == 2
    err = capsys.readouterr().err
    assert f"error[{code}" in err and "Traceback" not in err
