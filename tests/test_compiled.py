"""Compile then extract (extractor/decompile/compiled.py): the extracted program of a compiled example
is proven equal to its source by `rasp equiv`, and it is smaller than the exact program."""

from __future__ import annotations

from pathlib import Path

import pytest

import grammar
from compiler.compile import compile_program, save_compiled
from extractor.decompile.compiled import extract_compiled, generated_inputs
from extractor.decompile.extract import extract_full, program_lines
from extractor.tasks.checkpoint import load_subject
from rasp_ir.equiv import equivalent, input_space
from rasp_ir.tables import write_program

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _round_trip(tmp_path, name: str, n: int):
    source = grammar.load(EXAMPLES / f"{name}.rasp")
    save_compiled(compile_program(source, n), tmp_path / name)
    subject = load_subject(tmp_path / name)
    result = extract_compiled(subject)
    written = tmp_path / f"{name}.extracted.rasp"
    write_program(result.program, written)
    return source, subject, result, grammar.load(written)


@pytest.mark.parametrize("name, n", [("reverse", 5), ("parity", 6), ("histogram", 4),
                                     ("frac_prevs", 4)])
def test_extracted_program_is_proven_equal_to_its_source(tmp_path, name, n):
    source, subject, result, extracted = _round_trip(tmp_path, name, n)
    assert result.report.reached_threshold
    assert extracted.bos == "<compiler_bos>"
    eq = equivalent(source, extracted, max_len=n)
    assert eq.equal and eq.proven, eq.counterexample
    assert program_lines(extracted) <= 3 * program_lines(source)


def test_pruning_cuts_what_the_exact_program_keeps(tmp_path):
    source, subject, result, extracted = _round_trip(tmp_path, "reverse", 5)
    full = extract_full(subject).program
    assert program_lines(extracted) < program_lines(full)
    stages = result.report.pruning["stages"]
    assert [s["stage"] for s in stages] == ["components", "paths", "products"]
    assert all(s["match"] == 1.0 for s in stages)
    assert stages[-1]["edges"] <= stages[0]["edges"]


def test_an_mlp_over_categorical_inputs_is_read_back_as_a_table(tmp_path):
    """sort's key MLP reads (token, index): it comes back as a lookup over their product."""
    from rasp_ir import nodes as ir
    source, subject, result, extracted = _round_trip(tmp_path, "sort", 4)
    assert result.report.mlp_tables == ["m0"]
    lookups = [b.value for b in extracted.bindings if isinstance(b.value, ir.Lookup)]
    assert len(lookups) == 1 and isinstance(lookups[0].operand, ir.Primitive)
    assert lookups[0].operand.name == "product"
    assert equivalent(source, extracted, max_len=4).proven


def test_a_broken_extraction_is_caught(tmp_path):
    """equiv is not vacuous across the aligned BOS: negated logit tables are caught."""
    import attrs
    import numpy as np

    from rasp_ir import nodes as ir
    source, subject, result, extracted = _round_trip(tmp_path, "parity", 5)

    def negated(term):
        m = term.predicate
        if not isinstance(m, ir.Matrix):
            return term
        values = (-np.array(m.values, dtype=float)).tolist()
        values = tuple(map(tuple, values)) if m.cols is not None else tuple(values)
        return attrs.evolve(term, predicate=attrs.evolve(m, values=values))

    def broken(value):
        if isinstance(value, ir.LogitsSum):
            return ir.LogitsSum(tuple(negated(t) for t in value.terms))
        return negated(value)          # a single projection, simplified
    bindings = tuple(ir.Binding(b.name, broken(b.value)) if b.name == "logits" else b
                     for b in extracted.bindings)
    eq = equivalent(source, attrs.evolve(extracted, bindings=bindings), max_len=5)
    assert not eq.equal and eq.counterexample is not None


def test_generated_inputs_are_exhaustive_then_sampled():
    short = generated_inputs(("a", "b"), 5)
    assert len(short) == 2 + 4 + 8 + 16 + 32          # all of them
    long = generated_inputs(tuple("abcdefgh"), 8)
    assert sum(len(s) <= 4 for s in long) == 8 + 64 + 512 + 4096
    assert ["a"] * 8 in long                          # the constant ones are there
    assert generated_inputs(tuple("abcdefgh"), 8) == long      # seeded


def test_equiv_aligns_a_bos_only_one_side_knows(tmp_path):
    source = grammar.parse('@vocab {"a", "b"}; @maxlen 4; x = tokens; @output x;')
    other = grammar.parse('@vocab {"<s>", "a", "b"}; @maxlen 5; @bos "<s>"; x = tokens; '
                          '@output x;')
    space = input_space(source, other, None)
    assert space.max_len == 4 and space.bos is None and set(space.alphabet) == {"a", "b"}
    assert equivalent(source, other).proven
    shifted = grammar.parse('@vocab {"<s>", "a", "b"}; @maxlen 5; @bos "<s>"; '
                            'x = aggregate(select(indices, indices - 1, ==), tokens, "a"); '
                            '@output x;')
    eq = equivalent(source, shifted)
    assert not eq.equal


def test_equiv_reads_numbers_written_as_text():
    numbers = grammar.parse("@vocab {1, 2}; @maxlen 3; x = tokens == 1; @output x;")
    text = grammar.parse('@vocab {"1", "2"}; @maxlen 3; x = tokens == "1"; @output x;')
    assert equivalent(numbers, text).proven


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.rasp")), ids=lambda p: p.stem)
def test_every_example_comes_back_equal(tmp_path, path):
    """What bench/compile_extract.py reports, as a test (N at most 6 to keep it minutes)."""
    source = grammar.load(path)
    n = min(6, source.maxlen or 6)
    _, _, result, extracted = _round_trip(tmp_path, path.stem, n)
    assert result.report.reached_threshold
    eq = equivalent(source, extracted, max_len=n)
    assert eq.equal, eq.counterexample


def test_the_extracted_program_compiles_back_exactly(tmp_path):
    """--verify on a compiled model: logits over the output values, not the input vocabulary."""
    from extractor.checking.roundtrip import round_trip
    source, subject, result, extracted = _round_trip(tmp_path, "parity", 5)
    report = round_trip(tmp_path / "parity.extracted.rasp", subject, n=50)
    assert report["compiled"] and report["interpreter"]["exact"]
    assert all(b["match"] == 1.0 for b in report["checkpoint"]["buckets"].values())
