"""The sweep on any executor (issue 22): standard concurrent.futures executors, as many λ at once
as workers, several checkpoints in one sweep, jobs that carry their checkpoint, devices.

The runs here are stand-ins (a fake `run_job`) except in the job tests, which prune for a few
steps; real extractions on Ray and Dask are in tests/test_cluster.py (-m cluster).
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save

import extractor.decompile.sweep as sweep_module
from extractor.decompile.prune import PruneSettings
from extractor.decompile.sweep import (GRID, QUICK_GRID, Job, Payload, RunCache, RunSpec, Search,
                                       SerialExecutor, capacity, check_device, grid_for,
                                       run_job, sweep, sweep_all)
from rasp_ir.cli import main
from rasp_ir.diagnostics import RaspError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MAJORITY = EXAMPLES / "bin_majority"


def timeless(summary: dict) -> dict:
    """A run's summary without its stages' times (the one thing that differs between runs)."""
    return {**summary, "stages": [{k: v for k, v in st.items() if k != "seconds"}
                                  for st in summary["stages"]]}


def fake_runs(monkeypatch, calls: list):
    """run_job replaced by a stand-in: λ below 0.05 passes, edges shrink as λ grows."""
    def fake_run(job):
        lam = job.spec.lam
        calls.append((job.spec.checkpoint, lam))
        summary = {"lam": lam, "stages": [{"stage": "products", "edges": int(10 / lam),
                                           "match": {"0-50": 1.0 if lam < 0.05 else 0.0}}]}
        return summary, save({"flat": torch.full((1,), lam, dtype=torch.float64)})
    monkeypatch.setattr(sweep_module, "run_job", fake_run)


def test_a_standard_executor_runs_the_sweep(tmp_path, monkeypatch):
    # the case: a concurrent.futures executor used to fail inside the custom map
    calls = []
    fake_runs(monkeypatch, calls)
    base = RunSpec(str(MAJORITY), None, {}, {}, 0, 0.0)
    with ThreadPoolExecutor(2) as pool:
        runs = sweep(base, tmp_path, 0.9, pool, max_runs=5)
    assert len(runs) == len(calls) == 5
    serial = sweep(base, tmp_path / "serial", 0.9, SerialExecutor(), max_runs=5)
    assert sorted(s["lam"] for s in serial) == sorted(s["lam"] for s in runs)
    # the results landed in the local cache, tensors beside summaries
    cache = RunCache(tmp_path)
    for s in runs:
        spec = base.with_lam(s["lam"])
        assert cache.get(spec) == s
        assert float(cache.tensors(spec)["flat"]) == s["lam"]


def test_more_workers_run_more_lambdas_at_once(tmp_path, monkeypatch):
    assert grid_for(1) == grid_for(2) == grid_for(3) == GRID
    assert grid_for(2, quick=True) == QUICK_GRID
    wide = grid_for(5)
    assert len(wide) == 5 and wide[0] == 1e-3 and wide[-1] == 1e-1 and list(wide) == sorted(wide)
    assert len(grid_for(16, max_runs=8)) == 8
    calls = []
    fake_runs(monkeypatch, calls)
    base = RunSpec(str(MAJORITY), None, {}, {}, 0, 0.0)
    with ThreadPoolExecutor(5) as pool:
        assert capacity(pool) == 5
        search = Search(base, tmp_path, 0.9, max_runs=10, grid=grid_for(5), per_round=5)
        sweep_all([search], pool)
    lams = [lam for _, lam in calls]
    assert lams[:5] == list(wide)            # the first round: five λ at once
    assert len(lams) == 10                   # then a round of five between 0.0316 and 0.1
    assert all(wide[3] < lam < wide[4] for lam in lams[5:])


def test_an_idle_worker_runs_the_likely_next_lambda(tmp_path, monkeypatch):
    # two workers, a grid of three: while λ = 0.1 runs alone, the other worker starts the
    # bisection's first λ (the next round if 0.1 fails, as it does); the sweep's runs are the
    # same as without the guess
    import threading
    import time
    events, lock = [], threading.Lock()

    def fake_run(job):
        lam = job.spec.lam
        with lock:
            events.append(("start", lam))
        time.sleep(0.6 if lam == 0.1 else 0.1)
        with lock:
            events.append(("end", lam))
        summary = {"lam": lam, "stages": [{"stage": "products", "edges": int(10 / lam),
                                           "match": {"0-50": 1.0 if lam < 0.05 else 0.0}}]}
        return summary, save({"flat": torch.full((1,), lam, dtype=torch.float64)})
    monkeypatch.setattr(sweep_module, "run_job", fake_run)
    base = RunSpec(str(MAJORITY), None, {}, {}, 0, 0.0)
    with ThreadPoolExecutor(2) as pool:
        guessed = sweep_all([Search(base, tmp_path / "guessed", 0.9)], pool, speculate=True)[0]
    order = list(events)
    with ThreadPoolExecutor(2) as pool:
        plain = sweep_all([Search(base, tmp_path / "plain", 0.9)], pool, speculate=False)[0]
    assert sorted(s["lam"] for s in guessed) == sorted(s["lam"] for s in plain)
    assert len(plain) == 7
    bisection = min(s["lam"] for s in plain if 0.01 < s["lam"] < 0.1)
    assert order.index(("start", bisection)) < order.index(("end", 0.1))
    assert events.index(("start", bisection), len(order)) > events.index(("end", 0.1), len(order))


def test_a_wrong_guess_is_stopped_for_the_round_that_needs_its_worker(tmp_path, monkeypatch):
    # every λ up to 0.1 passes: the guess made while 0.1 ran (that it fails: a λ between
    # 0.01 and 0.1) is not in the next round (1.0), and no later round can want it; it sees
    # its stop file and ends at once, and the sweep's runs are those of a sweep without it
    import threading
    import time
    events, lock = [], threading.Lock()

    def fake_run(job):
        lam = job.spec.lam
        with lock:
            events.append(("start", lam))
        seconds = {0.1: 0.6}.get(lam, 0.1 if lam in (1e-3, 1e-2) or lam >= 0.1 else 5.0)
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if job.stop_file and sweep_module._stop_asked(job.stop_file):
                with lock:
                    events.append(("stopped", lam))
                raise sweep_module.Stopped(str(lam))
            time.sleep(0.02)
        with lock:
            events.append(("end", lam))
        summary = {"lam": lam, "stages": [{"stage": "products", "edges": int(10 / lam),
                                           "match": {"0-50": 1.0 if lam <= 0.1 else 0.0}}]}
        return summary, save({"flat": torch.full((1,), lam, dtype=torch.float64)})
    monkeypatch.setattr(sweep_module, "run_job", fake_run)
    base = RunSpec(str(MAJORITY), None, {}, {}, 0, 0.0)
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        guessed = sweep_all([Search(base, tmp_path / "guessed", 0.9)], pool, speculate=True)[0]
        seconds = time.monotonic() - started
    stopped = [lam for kind, lam in events if kind == "stopped"]
    assert len(stopped) == 1 and 0.01 < stopped[0] < 0.1
    assert seconds < 4.0                     # not the guess's five seconds
    assert RunCache(tmp_path / "guessed").get(base.with_lam(stopped[0])) is None
    with ThreadPoolExecutor(2) as pool:
        plain = sweep_all([Search(base, tmp_path / "plain", 0.9)], pool, speculate=False)[0]
    assert sorted(s["lam"] for s in guessed) == sorted(s["lam"] for s in plain)


def test_several_checkpoints_share_one_sweep(tmp_path, monkeypatch):
    calls = []
    fake_runs(monkeypatch, calls)
    copy = tmp_path / "other_majority"
    shutil.copytree(MAJORITY, copy)
    searches = [Search(RunSpec(str(c), None, {}, {}, 0, 0.0), tmp_path / f"{i}.runs", 0.9,
                       max_runs=5) for i, c in enumerate((MAJORITY, copy))]
    heard = []
    results = sweep_all(searches, SerialExecutor(), lambda i, s: heard.append(i))
    assert [len(r) for r in results] == [5, 5]
    assert heard.count(0) == heard.count(1) == 5
    # the two searches' rounds interleave: the second's grid runs before the first's bisection
    assert {c for c, _ in calls[3:6]} == {str(copy)}
    again = sweep_all([Search(s.base, s.cache.directory, 0.9, max_runs=5) for s in searches],
                      SerialExecutor())
    assert len(calls) == 10 and [len(r) for r in again] == [5, 5]       # all from the cache


def test_a_payload_carries_the_checkpoint_and_its_task_file(tmp_path):
    payload = Payload.of(MAJORITY, None)
    assert set(payload.files) == {"config.json", "model.safetensors", "task.json"}
    directory, task = payload.unpack(tmp_path)
    assert directory.name == "bin_majority" and task is None
    assert (directory / "model.safetensors").read_bytes() == \
        (MAJORITY / "model.safetensors").read_bytes()
    assert Payload.of(MAJORITY, None).digest == payload.digest
    task_file = tmp_path / "tasks" / "mine.jsonl"
    task_file.parent.mkdir()
    task_file.write_text('{"x": 1}\n')
    with_task = Payload.of(MAJORITY, str(task_file))
    assert with_task.digest != payload.digest and with_task.task == "mine.jsonl"
    _, task = with_task.unpack(tmp_path / "elsewhere")
    assert Path(task).read_text() == '{"x": 1}\n' and Path(task).name == "mine.jsonl"
    spec_py = Payload.of(MAJORITY, str(task_file.with_suffix(".py")) + ":Mine")
    assert spec_py.task_file is None            # no such file: the spec goes as it is


def test_a_job_needs_no_shared_file_system(tmp_path):
    # the spec's path does not exist where the job runs: everything comes with the payload
    settings = PruneSettings(steps=(8, 4, 4), pool=2, batch=4, selection=4)
    from extractor.decompile.extract import _plain
    spec = RunSpec(str(tmp_path / "not-here" / "bin_majority"), None, {},
                   _plain(settings.to_dict()), 0, 1e-2)
    job = Job(spec, Payload.of(MAJORITY, None))
    summary, tensors = run_job(job)
    again, same = run_job(job)
    assert timeless(summary) == timeless(again) and load(tensors).keys() == load(same).keys()
    for name, value in load(tensors).items():
        assert torch.equal(value, load(same)[name]), name
    assert [s["stage"] for s in summary["stages"]] == ["components", "paths", "products"]


def test_cpu_is_the_default_device_and_cuda_needs_a_gpu(tmp_path, capsys):
    assert check_device("cpu").type == "cpu"
    for bad in ("tpu", "nonsense"):
        with pytest.raises(RaspError) as caught:
            check_device(bad)
        assert caught.value.diagnostics[0].code == "X505"
    # a CPU run keeps the key it had before devices existed; a CUDA run has its own
    spec = RunSpec(str(MAJORITY), None, {}, {}, 0, 1e-2)
    assert spec.key() == RunSpec(str(MAJORITY), None, {}, {}, 0, 1e-2, "cpu").key()
    assert spec.key() != RunSpec(str(MAJORITY), None, {}, {}, 0, 1e-2, "cuda").key()
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the error below is for machines without one")
    code = main(["extract", str(MAJORITY), "--device", "cuda", "-o",
                 str(tmp_path / "m.rasp"), "--json"])
    assert code == 2
    envelope = json.loads(capsys.readouterr().out)
    assert envelope["status"] == "error"
    (diagnostic,) = envelope["diagnostics"]
    assert diagnostic["code"] == "X505" and "no CUDA device" in diagnostic["message"]
    assert not (tmp_path / "m.rasp").exists()


@pytest.mark.parametrize("executor", ["bogus", "local:somewhere", "spark:x"])
def test_a_bad_executor_is_a_usage_error(tmp_path, capsys, executor):
    assert main(["extract", str(MAJORITY), "--executor", executor, "-o",
                 str(tmp_path / "m.rasp")]) == 2
    assert "X506" in capsys.readouterr().err


def test_several_checkpoints_need_an_output_directory(tmp_path, capsys):
    copy = tmp_path / "copy" / "bin_majority"
    shutil.copytree(MAJORITY, copy)
    assert main(["extract", str(MAJORITY), str(tmp_path), "-o", str(tmp_path / "m.rasp")]) == 2
    assert "into a directory" in capsys.readouterr().err
    # two folders of the same name would write the same program
    assert main(["extract", str(MAJORITY), str(copy), "-o", str(tmp_path / "out") + "/"]) == 2
    assert "two checkpoints are named bin_majority" in capsys.readouterr().err


def test_several_checkpoints_write_one_program_each(tmp_path, capsys):
    # the full stage is cheap; the pruned stage's joint sweep is tested above and in
    # tests/test_cluster.py
    other = tmp_path / "majority_copy"
    shutil.copytree(MAJORITY, other)
    out = tmp_path / "programs"
    assert main(["extract", str(MAJORITY), str(other), "--stage", "full", "--n", "20",
                 "--fit-steps", "0", "-o", f"{out}/", "--quiet", "--json"]) == 0
    envelope = json.loads(capsys.readouterr().out)
    import jsonschema
    schema = json.loads((EXAMPLES.parent / "docs" / "cli.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(envelope)
    result = envelope["result"]
    assert [r["stage"] for r in result["extractions"]] == ["full", "full"]
    assert (out / "bin_majority.rasp").is_file() and (out / "majority_copy.rasp").is_file()
    assert (out / "bin_majority.report.json").is_file()


PARENT = """
import sys, time
sys.path.insert(0, {root!r})
from extractor.decompile.sweep import LocalPool

if __name__ == "__main__":
    pool = LocalPool(2)
    for _ in range(2):
        pool.submit(time.sleep, 600)      # each worker busy, as in a pruning run
    print(" ".join(str(pid) for pid in pool._processes), flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_pool_workers_die_with_their_parent(tmp_path):
    # the parent SIGKILLed while its workers compute (issue 22): they must not go on
    import signal
    import subprocess
    import sys
    import time
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(root=str(Path(__file__).resolve().parent.parent)))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        time.sleep(1.0)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 60       # a loaded machine starts Python slowly
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:                        # not to leave them behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left
