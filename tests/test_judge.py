"""The judge's early rejection makes the decision a full judgement would make."""

import functools

import torch
from hypothesis import given, settings, strategies as st

from conftest import EXAMPLES
from extractor.decompile.circuit import Circuit
from extractor.decompile.circuit_program import circuit_program
from extractor.tasks.checkpoint import load_subject
from extractor.checking.judge import Judge
from extractor.decompile.linearise import estimate_scales, linearised
from extractor.decompile.prune import Layout

N = 45          # per bucket: chunks of 20, 20 and 5


@functools.cache
def setting():
    """The shipped checkpoint's judge, and programs from its circuit under random masks
    (from hardly any edge to every edge: matches from 0 to 1)."""
    subject = load_subject(EXAMPLES / "bin_majority")
    judge = Judge.selection(subject.model, subject.task, N, 3)
    circuit = Circuit(linearised(subject.model, estimate_scales(subject.model, subject.task)))
    layout = Layout(circuit.graph)
    programs = []
    for seed, keep in enumerate((1.0, 0.9, 0.7, 0.4)):
        gen = torch.Generator().manual_seed(seed)
        flat = layout.valid.float() * (torch.rand(layout.size, generator=gen) < keep).float()
        programs.append(circuit_program(circuit, flat, subject.tokens, subject.outputs,
                                        subject.prediction, bos=subject.bos))
    full = [judge(p) for p in programs]
    return judge, programs, full


def test_the_programs_span_good_and_bad_matches():
    _, _, full = setting()
    worst = [min(f.values()) for f in full]
    assert max(worst) >= 0.9 and min(worst) < 0.9


@settings(max_examples=15, deadline=None)
@given(which=st.integers(0, 3), data=st.data())
def test_passes_is_the_full_judgement_compared_with_the_floors(which, data):
    judge, programs, full = setting()
    result = full[which]
    # floors on, just above and just below each bucket's match, and anywhere in between
    floor = {b: data.draw(st.one_of(st.sampled_from([m, m + 1 / N, m - 1 / N, m + 1e-12]),
                                    st.floats(-0.1, 1.0)), label=b)
             for b, m in result.items()}
    got = judge.passes(programs[which], floor)
    if all(result[b] >= f for b, f in floor.items()):
        assert got == result
    else:
        assert got is None


def test_a_rejection_stops_before_judging_every_sequence(monkeypatch):
    judge, programs, full = setting()
    worst = min(range(4), key=lambda i: min(full[i].values()))
    seen = []
    original = judge._chunk

    def counting(program, interpreter, name, chunk, task_accuracy):
        seen.append(len(chunk[0]))
        return original(program, interpreter, name, chunk, task_accuracy)
    monkeypatch.setattr(judge, "_chunk", counting)
    assert judge.passes(programs[worst], dict.fromkeys(full[worst], 1.0)) is None
    assert sum(seen) < 3 * N


def test_task_accuracy_is_unchanged_by_the_chunks():
    judge, programs, full = setting()
    detailed = judge(programs[0], task_accuracy=True)
    assert {b: r["match"] for b, r in detailed.items()} == full[0]
    assert all(0 <= r["task"] <= 1 for r in detailed.values())


def test_the_compiled_judge_passes_as_its_call_decides(tmp_path):
    # a compiled model's circuit under random masks: matches between 0 and 1 on one bucket
    import grammar
    from compiler.compile import compile_program, save_compiled
    from extractor.decompile.compiled import CompiledJudge, generated_inputs, output_kind
    save_compiled(compile_program(grammar.load(EXAMPLES / "reverse.rasp"), 4), tmp_path / "m")
    subject = load_subject(tmp_path / "m")
    alphabet = tuple(t for t in subject.tokens if t != subject.bos)
    judge = CompiledJudge(subject, generated_inputs(alphabet, 4), output_kind(subject))
    circuit = Circuit(subject.model).double()
    layout = Layout(circuit.graph)
    seen = set()
    for seed, keep in enumerate((1.0, 0.95, 0.8, 0.5)):
        gen = torch.Generator().manual_seed(seed)
        flat = layout.valid.float() * (torch.rand(layout.size, generator=gen) < keep).float()
        program = circuit_program(circuit, flat, subject.tokens, subject.outputs,
                                  subject.prediction, bos=subject.bos)
        (bucket, match), = judge(program).items()
        seen.add(match == 1.0)
        for floor in (0.0, match - 1e-9, match, match + 1e-9, 1.0):
            got = judge.passes(program, {bucket: floor})
            assert got == ({bucket: match} if match >= floor else None)
    assert seen == {True, False}
