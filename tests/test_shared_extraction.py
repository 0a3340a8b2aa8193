"""Whole extractions of small shared checkpoints, as a user runs them (slow: about a minute each).

The default suite tests every step on compiled models and synthetic data; only a real trained
checkpoint exercises the replacement step on the values a trained model's MLPs and heads take
(a regression there once passed every default test). These run the default extraction and hold
it to the readable-program targets: the threshold in every held-out bucket, no opaque `mlp`, no
side-file table, and the written file reads back to the same program.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import grammar

CHECKPOINTS = Path(__file__).parents[1].parent / "shared" / "checkpoints"
SMALL = ["bce_tomita1-@1l1h16d3lr00drop", "bin_majority-@1l1h16d3lr01drop"]


@pytest.mark.slow
@pytest.mark.parametrize("folder", SMALL)
def test_a_small_shared_checkpoint_extracts_to_a_readable_program(folder, tmp_path):
    path = CHECKPOINTS / folder
    if not path.is_dir():
        pytest.skip(f"no checkpoint {path}")
    from extractor.checking.judge import Judge
    from extractor.decompile.extract import ExtractSettings, extract_program, write_extraction
    from extractor.tasks.checkpoint import load_subject

    subject = load_subject(path)
    settings = ExtractSettings(workers=2, n=300)
    result = extract_program(subject, path, None, tmp_path / "runs", settings)
    report = write_extraction(result, tmp_path / "prog.rasp", path, subject).to_json()
    assert report["reached_threshold"], report["verdict"]
    buckets = report["evaluation"]["buckets"]
    assert min(b["match"] for b in buckets.values()) >= settings.threshold, buckets
    size = report["program"]
    assert size["opaque_mlps"] == 0 and size["side_tables"] == 0, size
    assert size["lines"] <= 5, size
    reread = grammar.load(tmp_path / "prog.rasp")
    check = Judge.held_out(subject.model, subject.task, 30, 1)
    assert check(reread) == check(result.program)
