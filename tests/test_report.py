"""The extraction report as a typed record, and the driver's choices that do not need a model."""

import itertools
import json
from pathlib import Path

import grammar
from extractor.decompile.extract import (Extraction, candidate_order, program_summary,
                                         write_extraction)
from extractor.decompile.report import Evaluation, FullReport, ModelShape, PrunedReport

PROGRAM = """@vocab {"a", "b"};
@maxlen 4;
flip = aggregate(select(indices, length - indices - 1, ==), tokens);
@output flip;
"""


def run(lam, edges, worst):
    match = {"0-50": worst, "51-100": 1.0}
    return {"lam": lam, "stages": [{"edges": edges + 3, "match": match},
                                   {"edges": edges, "match": match}]}


def test_candidate_order_does_not_depend_on_the_order_runs_finished():
    runs = [run(1e-3, 4, 1.0), run(1e-2, 4, 1.0), run(1e-1, 2, 0.95), run(0.5, 0, 0.4)]
    orders = {tuple(r["lam"] for r in candidate_order(list(p), 0.9))
              for p in itertools.permutations(runs)}
    # passing runs only, fewest edges first, ties to the larger λ
    assert orders == {(1e-1, 1e-2, 1e-3)}


def test_candidate_order_when_nothing_passes_takes_the_best_worst_bucket_first():
    runs = [run(1e-3, 9, 0.5), run(1e-2, 4, 0.7), run(1e-1, 2, 0.7)]
    assert [r["lam"] for r in candidate_order(runs, 0.9)] == [1e-1, 1e-2, 1e-3]


def pruned_report(program):
    return PrunedReport(
        stage="pruned", kind="trained", task="t", mode="lm", model=ModelShape(1, 1, 16),
        seed=0, threshold=0.9, settings={}, seconds={"total": 1.0}, lln_a=None,
        frontier={"products": []}, runs=[], candidates=[],
        program=program_summary(program, lines=1, lam=0.01),
        evaluation=Evaluation({"0-50": {"match": 1.0, "task": 0.5}}, 10, 0, 0),
        reached_threshold=True, verdict="ok")


def test_json_leaves_out_unset_optional_fields_and_keeps_meaningful_nones(tmp_path):
    program = grammar.parse(PROGRAM)
    data = pruned_report(program).to_json()
    assert data["lln_a"] is None                      # no LayerNorm: said, not left out
    assert "checkpoint" not in data and "roundtrip" not in data
    assert "compared" not in data["evaluation"] and "file" not in data["program"]
    assert data["model"] == {"layers": 1, "heads": 1, "d_model": 16}
    assert data["program"]["lines"] == 1 and data["program"]["bindings"] == len(program.bindings)
    full = FullReport(stage="full", kind="compiled", model=ModelShape(1, 1, 8, 5, 3),
                      program=program_summary(program), seconds={}, lln_a=None).to_json()
    assert "task" not in full and full["model"]["n_positions"] == 5


def test_write_extraction_writes_program_and_report(tmp_path):
    program = grammar.parse(PROGRAM)
    out = tmp_path / "p.rasp"
    report = write_extraction(Extraction(program, pruned_report(program)), out, "ckpt", None)
    assert report.program.file == str(out)
    assert report.checkpoint == str(Path("ckpt").resolve())      # a rerun elsewhere knows it
    assert grammar.load(out) == program
    written = json.loads(out.with_suffix(".report.json").read_text())
    assert written == json.loads(json.dumps(report.to_json()))
    assert written["program"]["file"] == str(out)
