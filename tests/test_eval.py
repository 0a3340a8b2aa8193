"""`rasp eval`: the paper's checkpoints reproduce their acc.txt; the metric; clear errors.

The full reproduction (16 checkpoints × 3 buckets × 2,000 sequences, a few minutes) is marked
slow; the default run checks a few small checkpoints on fewer sequences."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from conftest import EXAMPLES, SHARED
from extractor.tasks.batches import collate, correct
from extractor.tasks.checkpoint import load_with_task, recorded_accuracy
from extractor.tasks.evaluate import evaluate, parse_buckets
from extractor.tasks.registry import get_task
from rasp_ir.cli import main
from rasp_ir.diagnostics import RaspError

CHECKPOINTS = SHARED / "checkpoints"
ALL = sorted(p.name for p in CHECKPOINTS.iterdir()) if CHECKPOINTS.is_dir() else []
needs_shared = pytest.mark.skipif(not ALL, reason=f"no shared checkpoints in {CHECKPOINTS}")
EXAMPLE = EXAMPLES / "bin_majority"


def tolerance(p: float, n: int) -> float:
    """0.02, widened to 3 standard deviations of the difference between our n-sequence
    estimate and acc.txt's 2,000-sequence one where sampling noise alone exceeds it."""
    return max(0.02, 3 * math.sqrt(p * (1 - p) * (1 / n + 1 / 2000)))


def check_reproduces(folder, n, buckets=None):
    model, task = load_with_task(CHECKPOINTS / folder)
    ours = evaluate(model, task, buckets, n=n, seed=0)
    recorded = recorded_accuracy(CHECKPOINTS / folder)
    for bucket, value in ours.items():
        ref = recorded[bucket]
        assert abs(value - ref) <= tolerance(ref, n), (folder, bucket, value, ref)


@needs_shared
@pytest.mark.parametrize("folder,n,buckets", [
    ("bin_majority-@1l1h16d3lr01drop", 500, None),
    ("bce_abcde-@1l1h16d3lr00drop", 300, None),
    ("bce_tomita5-@2l1h64d3lr00drop", 300, [(0, 50), (51, 100)]),
    ("unique_copy-^2l1h64d3lr01drop-1100", 400, [(0, 50)]),
])
def test_a_few_checkpoints_reproduce_acc_txt(folder, n, buckets):
    check_reproduces(folder, n, buckets)


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("folder", ALL)
def test_every_checkpoint_reproduces_acc_txt(folder):
    # 2,000 sequences per bucket, as the paper; bench/eval_checkpoints.py prints the table.
    check_reproduces(folder, 2000)


def test_metric_is_per_sequence():
    task = get_task("tomita2")
    examples = task.evaluation_set(2, 4, 3)
    batch = collate(examples, task.vocab.pad, task.mode)
    logits = torch.where(batch.targets > 0, 5.0, -5.0)           # every sign right
    assert correct(logits, batch).all()
    logits[0, 1, task.vocab.id("0")] *= -1                        # one sign wrong in sequence 0
    assert correct(logits, batch).tolist() == [False, True, True]
    logits[1, -1] = 5.0                  # the <eos> row and padding are not scored
    assert correct(logits, batch)[1]

    lm = get_task("unique_copy")
    examples = lm.evaluation_set(3, 3, 2)
    batch = collate(examples, lm.vocab.pad, lm.mode)
    logits = torch.nn.functional.one_hot(batch.targets.clamp(min=0), len(lm.vocab)).float()
    logits[0, 0] = 0                     # a prompt position: not scored
    assert correct(logits, batch).all()
    logits[1, -2] = 0                    # the prediction of <eos>: scored
    assert correct(logits, batch).tolist() == [True, False]


def test_parse_buckets():
    assert parse_buckets("0-50, 51-100,7") == [(0, 50), (51, 100), (7, 7)]
    assert parse_buckets(None) == [(0, 50), (51, 100), (101, 150)]
    for bad in ["0-", "a-b", "9-3", ""]:
        with pytest.raises(RaspError) as info:
            parse_buckets(bad)
        assert info.value.codes == ["T404"]


# ------------------------------------------------------------------ the command line

def run_cli(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_eval_json_on_the_shipped_example(capsys):
    code, out, _ = run_cli(capsys, "eval", EXAMPLE, "--n", 200, "--json")
    assert code == 0
    assert json.loads(out)["result"]["buckets"] == {"0-50": 1.0, "51-100": 1.0, "101-150": 1.0}


def test_eval_text_and_lengths(capsys):
    code, out, _ = run_cli(capsys, "eval", EXAMPLE, "--n", 50, "--lengths", "1-5,140-150")
    assert code == 0
    assert "task bin_majority (lm)" in out and "1-5" in out and "140-150" in out


@needs_shared
def test_eval_reads_the_task_from_the_folder_name(capsys):
    code, out, _ = run_cli(capsys, "eval", CHECKPOINTS / "bce_tomita4-@2l2h16d3lr01drop",
                           "--n", 40, "--lengths", "0-50")
    assert code == 0 and "task tomita4 (bce)" in out and "acc.txt 1.0000" in out


@needs_shared
def test_a_checkpoint_that_does_not_fit_the_task(capsys):
    code, _, err = run_cli(capsys, "eval", CHECKPOINTS / "sort-@1l1h256d3lr01drop",
                           "--task", "bin_majority", "--n", 5)
    assert code == 2 and "error[T403]" in err and "154 tokens" in err and "has 6" in err
    # same vocabulary size, but task.json records other token names
    code, _, err = run_cli(capsys, "eval", EXAMPLE, "--task", "tomita4", "--n", 5)
    assert code == 2 and "error[T403]" in err and "trained in mode 'lm'" in err
    code, _, err = run_cli(capsys, "eval", EXAMPLE, "--task", "repeat_copy", "--n", 5)
    assert code == 2 and "differs from task repeat_copy's (a, b, <bos>" in err
    assert "at id 0" in err


def test_unknown_task_and_bad_buckets(capsys):
    code, _, err = run_cli(capsys, "eval", EXAMPLE, "--task", "tomita9x")
    assert code == 2 and "error[T401]: unknown task 'tomita9x'" in err
    code, _, err = run_cli(capsys, "eval", EXAMPLE, "--lengths", "0-200")
    assert code == 2 and "error[T404]" in err and "beyond length 150" in err
    code, _, err = run_cli(capsys, "eval", EXAMPLE, "--lengths", "x")
    assert code == 2 and "error[T404]: bad length bucket 'x'" in err


def test_a_checkpoint_without_a_task(tmp_path, capsys):
    folder = tmp_path / "mymodel"
    shutil.copytree(EXAMPLE, folder)
    (folder / "task.json").unlink()
    code, _, err = run_cli(capsys, "eval", folder)
    assert code == 2 and "error[T405]" in err and "pass --task" in err
    code, out, _ = run_cli(capsys, "eval", folder, "--task", "bin_majority", "--n", 20)
    assert code == 0 and "1.0000" in out
    # same vocabulary size, but the task's sequences are longer than the model's positions
    code, _, err = run_cli(capsys, "eval", folder, "--task", "repeat_copy", "--n", 20)
    assert code == 2 and "error[T403]" in err and "the model has only 154 positions" in err
    # the paper's plain formal-language names mean recognition mode, which is not built
    renamed = tmp_path / "tomita4-@1l1h16d3lr00drop"
    folder.rename(renamed)
    code, _, err = run_cli(capsys, "eval", renamed)
    assert code == 2 and "error[T405]" in err and "recognition mode" in err
    code, _, err = run_cli(capsys, "eval", tmp_path / "absent")
    assert code == 2 and "error[C301]" in err


def test_eval_of_a_jsonl_task(tmp_path, capsys):
    # The shipped model on its own task written as a JSON Lines file.
    task = get_task("bin_majority")
    lines = []
    for e in task.evaluation_set(1, 9, 30):
        names = task.vocab.names(e.tokens)
        lines.append(json.dumps({"input": names[1:-2], "target": names[-1:]}))
    path = tmp_path / "maj.jsonl"
    path.write_text(json.dumps({"vocab": ["0", "1"]}) + "\n" + "\n".join(lines) + "\n")
    code, out, _ = run_cli(capsys, "eval", EXAMPLE, "--task", path, "--json")
    assert code == 0 and json.loads(out)["result"]["buckets"] == {"1-9": 1.0}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": ["0"], "target": ["1"]}\n{"input": ["0"]\n')
    code, _, err = run_cli(capsys, "eval", EXAMPLE, "--task", bad)
    assert code == 2 and f"error[T402]: {bad}:2: not JSON" in err


def test_evaluation_sets_are_fixed():
    model, task = load_with_task(EXAMPLE)
    a = evaluate(model, task, [(0, 10)], n=30, seed=3)
    assert a == evaluate(model, task, [(0, 10)], n=30, seed=3)
    assert np.isclose(a["0-10"], 1.0)
