"""Where LLN-A fails (extractor/decompile/layernorm.py): the diagnosis on bce_D3, the
checkpoint whose every LayerNorm computes with its per-position scale (issue 21)."""

import pytest

from conftest import SHARED
from extractor.decompile import extract, layernorm, linearise

D3 = SHARED / "checkpoints" / "bce_D3-@1l1h16d4lr00drop"
needs_d3 = pytest.mark.skipif(not (D3 / "config.json").is_file(), reason=f"no {D3}")


@pytest.fixture(scope="module")
def d3():
    from extractor.tasks.checkpoint import load_subject
    subject = load_subject(D3, "bce_D3")
    scales = linearise.estimate_scales(subject.model, subject.task, batches=4)
    return subject, scales


@needs_d3
def test_with_real_restores_only_the_named_layer_norms(d3):
    subject, scales = d3
    linear = layernorm.with_real(subject.model, scales, {"blocks.0.ln2"})
    fixed = {n: ln.fixed_scale for n, ln in linearise.layer_norms(linear).items()}
    assert fixed["blocks.0.ln2"] is None
    assert fixed["blocks.0.ln1"] == scales["blocks.0.ln1"]
    assert fixed["ln_final"] == scales["ln_final"]


@needs_d3
def test_bce_d3_every_layer_norm_loses_the_model(d3):
    subject, scales = d3
    model, task = subject.model, subject.task
    faithful = linearise.faithfulness(model, linearise.linearised(model, scales), task, n=40)
    assert layernorm.worst(faithful) < 0.9
    diagnosis = layernorm.diagnose(model, scales, task, faithful, 0.9, n=40)
    assert list(diagnosis["layer_norms"]) == ["blocks.0.ln1", "blocks.0.ln2", "ln_final"]
    # linearising any one of them alone, the others true, loses most sequences
    for effect in diagnosis["layer_norms"].values():
        assert min(effect["alone"].values()) < 0.5
        assert set(effect["restored"]) == set(faithful)
    assert diagnosis["culprits"] == ["blocks.0.ln1", "blocks.0.ln2", "ln_final"]
    lines = layernorm.describe(diagnosis)
    assert "LLN-A loses the model" in lines[0] and len(lines) == 7
    assert sum("loses it" in line for line in lines) == 3
    # what each scale depends on: ln1's and ln2's the token, ln_final's the position
    depends = {n: e["scale_depends_on"] for n, e in diagnosis["layer_norms"].items()}
    assert depends["blocks.0.ln1"]["token"] > 0.95
    assert depends["blocks.0.ln2"]["token"] > 0.95
    assert depends["ln_final"]["position"] > 0.8 > depends["ln_final"]["token"]


@needs_d3
def test_no_diagnosis_where_lln_a_holds(d3):
    subject, scales = d3
    lln = {"faithfulness": {"0-50": {"match": 0.95, "kl": 0.1}}}
    extract._diagnose(lln, subject.model, scales, subject.task, 0.9, 0, extract._silent)
    assert "diagnosis" not in lln


@needs_d3
def test_the_diagnosis_waits_for_the_pruning_runs(d3):
    """Below the threshold before pruning, the diagnosis runs only where the runs confirm
    that LLN-A fails (no first stage reaches the threshold); otherwise the report says why
    there is none."""
    subject, scales = d3
    low = {"0-50": {"match": 0.5, "kl": 1.0}}
    passing = [{"stages": [{"match": {"0-50": 0.95}}]}]
    lln = {"faithfulness": low}
    extract._diagnose(lln, subject.model, scales, subject.task, 0.9, 0, extract._silent,
                      passing)
    assert "diagnosis" not in lln and "0.950" in lln["not_diagnosed"]
    failing = [{"stages": [{"match": {"0-50": 0.5}}]}]
    lln = {"faithfulness": low}
    extract._diagnose(lln, subject.model, scales, subject.task, 0.9, 0, extract._silent,
                      failing)
    assert "diagnosis" in lln and "not_diagnosed" not in lln


@needs_d3
def test_bce_d3_final_layer_norm_scale_goes_as_one_over_n(d3):
    from extractor.decompile import stated
    subject, _ = d3
    measured = stated.final_scale_slope(subject.model, subject.task, sequences=60)
    assert -1.1 < measured["slope"] < -0.8
    assert stated.stated_scale(measured["slope"]) is not None
    assert stated.stated_scale(-0.3) is None


@needs_d3
def test_bce_d3_stated_program_reads_the_depth_off_the_counts(d3):
    """The stated route end to end on bce_D3, judged on a small held-out set: four
    statements, the logits a linear function of the counts."""
    from extractor.checking.judge import Judge
    from extractor.decompile import stated
    from rasp_ir.printer import pretty
    import grammar
    subject, _ = d3
    judge = Judge.held_out(subject.model, subject.task, 30, 5)

    def accepts(program):
        result = judge.passes(program, {b: 0.9 for b in judge.sets})
        return result is not None, (min(result.values()) if result else None)

    program, entry = stated.stated_program(subject, accepts)
    assert program is not None, entry
    assert entry["readings"] == ["counts"]
    assert [b.name for b in program.bindings] == ["share", "counts", "logits", "prediction"]
    assert min(judge(program).values()) >= 0.9
    text = pretty(program)
    assert "normalize(share, 1 / (indices + 1))" in text
    assert grammar.parse(text, "d3.rasp") == program


def test_lln_a_holds_is_the_papers_test_on_the_first_stage():
    def run(first, last):
        return {"stages": [{"match": {"0-50": first, "51-100": first}}, {"match": {"0-50": last}}]}
    # the first stage (components, scales learned per reader) decides, not the last
    assert extract.lln_a_holds([run(0.2, 0.1), run(0.95, 0.5)], 0.9)
    assert not extract.lln_a_holds([run(0.2, 0.95), run(0.89, 0.99)], 0.9)
    assert not extract.lln_a_holds([], 0.9)


def test_the_stated_route_is_a_last_resort():
    """No diagnosis, or a first stage that reaches the threshold: the pruned program stays
    (the stated route returns before it looks at the model)."""
    settings = extract.ExtractSettings()
    failing = [{"stages": [{"match": {"0-50": 0.1}}]}]
    passing = [{"stages": [{"match": {"0-50": 0.95}}]}]
    no_diagnosis = {"faithfulness": {"0-50": {"match": 0.1, "kl": 1.0}}}
    diagnosed = {**no_diagnosis, "diagnosis": {}}
    for lln, runs in ((None, failing), (no_diagnosis, failing), (diagnosed, passing)):
        assert extract._stated(None, settings, extract._silent, None, lln, runs, None) is None


@needs_d3
def test_faithfulness_reads_the_original_from_a_shared_reference(d3):
    """A diagnosis runs the model itself once, not once per variant: the figures with a
    shared reference are those without, and the second call does not run the original."""
    subject, scales = d3
    model, task = subject.model, subject.task
    linear = linearise.linearised(model, scales)
    reference = {}
    first = linearise.faithfulness(model, linear, task, n=30, reference=reference)
    assert first == linearise.faithfulness(model, linear, task, n=30)
    assert reference                       # one entry per bucket's chunk

    class Refuses(type(model)):            # an "original" that may not be run again
        def forward(self, *args, **kwargs):
            raise AssertionError("the original ran again")

    model.__class__ = Refuses
    try:
        second = linearise.faithfulness(model, linear, task, n=30, reference=reference)
    finally:
        model.__class__ = Refuses.__bases__[0]
    assert second == first
