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


# ---------------------------------------------------------------- sequential confirmation

def test_close_means_within_z_standard_errors():
    from extractor.checking.judge import _close
    assert _close(59, 64, 0.9, 2.0)             # the 0.92 on 64: a coin toss from 0.9
    assert not _close(100, 100, 0.92, 2.0)      # all 100 right: clear of 0.92
    assert not _close(80, 100, 0.9, 2.0)        # below the line is a failure, not close
    assert _close(80, 100, 0.83, 2.0, both=True) and not _close(80, 100, 0.9, 2.0, both=True)


@functools.cache
def sequential():
    from extractor.checking.judge import SequentialJudge
    subject = load_subject(EXAMPLES / "bin_majority")
    return SequentialJudge(subject.model, subject.task, N, 3, totals=(90, 180))


def pooled(judge, program, buckets, stages):
    """The match over the choice set and the first `stages` confirmation sets, in full."""
    out = {}
    for b in buckets:
        same, n = round(judge.first(program)[b] * N), N
        for i in range(stages):
            k = len(judge._stage(i, b).sets[b])
            same, n = same + round(judge._stage(i, b)(program)[b] * k), n + k
        out[b] = same / n
    return out


def plainly(judge, program, floor):
    """SequentialJudge.passes written with full judgements and no early stop."""
    from extractor.checking.judge import _close
    counts = {b: (round(m * N), N) for b, m in judge.first(program).items()}
    if any(same / n < floor[b] for b, (same, n) in counts.items()):
        return None
    for i in range(len(judge.totals)):
        close = [b for b in floor if _close(*counts[b], floor[b], judge.Z)]
        if not close:
            break
        for b in close:
            k = len(judge._stage(i, b).sets[b])
            counts[b] = (counts[b][0] + round(judge._stage(i, b)(program)[b] * k),
                         counts[b][1] + k)
        if any(counts[b][0] / counts[b][1] < floor[b] for b in close):
            return None
    return {b: same / n for b, (same, n) in counts.items()}


def test_a_clear_decision_needs_no_fresh_sequences():
    judge = sequential()
    _, programs, full = setting()
    for program, figures in zip(programs, full):
        before = judge.confirmations
        far_below = {b: m - 0.5 for b, m in figures.items()}
        assert judge.passes(program, far_below) == figures
        above = {b: min(1.0, m + 0.05) for b, m in figures.items()}
        if any(m + 0.05 <= 1.0 for m in figures.values()):
            assert judge.passes(program, above) is None
        assert judge.confirmations == before


def test_a_close_pass_is_confirmed_on_fresh_sequences():
    judge = sequential()
    _, programs, full = setting()
    tried = 0
    for program, figures in zip(programs, full):
        for shift in (0.0, -0.03, -0.08):           # at the floor, a little and well above it
            floor = {b: m + shift for b, m in figures.items()}
            before = judge.confirmations
            got = judge.passes(program, floor)
            assert got == plainly(judge, program, floor)
            if shift == 0.0 and 0 < min(figures.values()) < 1:
                assert judge.confirmations == before + 1
                tried += 1
    assert tried


def test_measure_extends_only_the_buckets_near_the_line():
    judge = sequential()
    _, programs, full = setting()
    program, figures = programs[0], full[0]
    far = judge.measure(program, -1.0)
    assert {b: r["sequences"] for b, r in far.items()} == dict.fromkeys(figures, N)
    assert {b: r["match"] for b, r in far.items()} == figures
    b, m = next(iter(figures.items()))
    near = judge.measure(program, m)
    assert near[b]["sequences"] == 180
    assert near[b]["match"] == pooled(judge, program, [b], 2)[b]


def test_the_model_runs_on_every_thread_while_judging_runs_on_one():
    """Judging happens under one torch thread (the interpreter's numpy work), but a judge's
    sets are the model's own torch work: it gets back the threads one_thread took."""
    from extractor.checking.threads import all_threads, one_thread
    subject = load_subject(EXAMPLES / "bin_majority")
    seen = []
    forward = subject.model.forward

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return forward(*args, **kwargs)

    outside = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        subject.model.forward = recording
        with one_thread():
            assert torch.get_num_threads() == 1
            with one_thread(), all_threads():
                assert torch.get_num_threads() == 2       # the outermost count, not 1
            Judge.selection(subject.model, subject.task, 5, 0)
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        assert seen and set(seen) == {2}
        with all_threads():                                # outside one_thread: unchanged
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(outside)
