"""The sparsity sweep: pruning runs at several λ, cached on disk, traced as a frontier.

A run is `extractor.decompile.prune.prune` at one λ; it is a pure function of its inputs, so its
result is kept under a key made of everything it depends on (checkpoint, task, LLN-A scales,
settings, seed, λ, device) and never computed twice: an interrupted sweep resumes where it
stopped.

Runs go through any `concurrent.futures.Executor`: by default a local process pool, or a
cluster's (extractor/decompile/cluster.py: Ray, Dask). A job carries what it needs, the
checkpoint's files as bytes under their content address (`Payload`), so a worker needs no shared
file system; it sends back the run's summary and tensors, and the cache is written here, on the
machine that runs the sweep.

The search (docs/extractor.md, The sparsity sweep; local and deterministic): λ sets the price of an
edge, so programs shrink as λ grows. Starting from a grid, it brackets the largest λ whose
program still matches the model on at least `threshold` of the selection sequences in every
length bucket, by geometric bisection, and the smallest such program wins. Each round proposes
as many λ as the executor has workers (at least two), and a round is proposed only when the
previous one is complete, so the runs chosen never depend on the order in which they finish.
Several checkpoints' searches share one executor (`sweep_all`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from pathlib import Path

import attrs
import torch
from attrs import frozen
from safetensors import safe_open
from safetensors.torch import load_file, save

from extractor.decompile.prune import PruneSettings
from extractor.tasks.checkpoint import load_subject
from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.files import atomic_write_bytes, atomic_write_text
from rasp_ir.jsondata import decoded, dumps

GRID = (1e-3, 1e-2, 1e-1)
QUICK_GRID = GRID[1:]
# the files of a checkpoint directory a worker receives: config, weights, task and tokenizer
CHECKPOINT_SUFFIXES = (".json", ".safetensors")


@frozen
class RunSpec:
    """Everything a pruning run depends on."""
    checkpoint: str
    task: str | None
    scales: dict                 # LLN-A scales to start from ({} without LayerNorm)
    settings: dict               # PruneSettings.to_dict()
    seed: int
    lam: float
    device: str = "cpu"          # where the run computes ("cuda" when asked for)

    def key(self) -> str:
        parts = [Path(self.checkpoint).name, _fingerprint(self.checkpoint), self.task,
                 self.scales, self.settings, self.seed, repr(self.lam)]
        if self.device != "cpu":     # CPU runs keep the keys they had before devices
            parts.append(self.device)
        text = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_lam(self, lam: float) -> RunSpec:
        """The same run at another λ (a sweep's runs differ in nothing else)."""
        return attrs.evolve(self, lam=lam)


def _fingerprint(checkpoint: str) -> str:
    """A digest of the weights' bytes: a changed checkpoint is a new key, and a copied one
    (same bytes, new modification time, as when a data folder is synced again) is not."""
    weights = Path(checkpoint) / "model.safetensors"
    try:
        return _digest(str(weights.resolve()), weights.stat().st_mtime_ns)
    except OSError:
        return "?"


@functools.lru_cache(maxsize=64)
def _digest(path: str, mtime_ns: int) -> str:
    """sha256 of a file (the sweep asks once per run; the time is part of the cache key)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ what a job carries

@frozen
class Payload:
    """A checkpoint as bytes, so that a worker on another machine can run it: the directory's
    config, weights, task and tokenizer files, and the task file when the task is one
    (`my_task.jsonl`, `tasks.py:MyTask`). `digest` is their content address: a worker unpacks
    them once per address into its temporary folder."""
    name: str                    # the directory's name (the paper's names say the task)
    files: dict                  # file name -> bytes
    task: str | None             # the task spec, with a task file's path as its bare name
    task_file: tuple | None      # (file name, bytes) of a task file
    digest: str

    @classmethod
    def of(cls, checkpoint: str | Path, task: str | None) -> Payload:
        directory = Path(checkpoint)
        files = {p.name: p.read_bytes() for p in sorted(directory.iterdir())
                 if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES}
        task_file = None
        path, rest = _task_path(task)
        if path is not None and path.is_file():
            task_file = (path.name, path.read_bytes())
            task = path.name + rest
        h = hashlib.sha256(directory.resolve().name.encode())
        for name, data in [*sorted(files.items()), *([task_file] if task_file else [])]:
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return cls(directory.resolve().name, files, task, task_file, h.hexdigest()[:20])

    def unpack(self, root: Path) -> tuple[Path, str | None]:
        """The checkpoint directory and task spec on this machine, written under
        root/<digest>/ unless an earlier job wrote them there."""
        home = Path(root) / self.digest
        directory = home / self.name
        if not (home / "complete").exists():
            directory.mkdir(parents=True, exist_ok=True)
            for name, data in self.files.items():
                atomic_write_bytes(directory / name, data)
            if self.task_file is not None:
                atomic_write_bytes(home / self.task_file[0], self.task_file[1])
            atomic_write_text(home / "complete", self.digest)
        task = self.task
        if self.task_file is not None:
            task = str(home / self.task)
        return directory, task


def _task_path(task: str | None) -> tuple[Path | None, str]:
    """(the file a task spec names, what follows it: ":Class" or ""), or (None, "")."""
    if task is None:
        return None, ""
    if task.endswith((".jsonl", ".json")):
        return Path(task), ""
    if ".py:" in task:
        path, name = task.rsplit(":", 1)
        return Path(path), ":" + name
    return None, ""


@frozen
class Job:
    """One pruning run as sent to a worker."""
    spec: RunSpec
    payload: Payload
    threads: int | None = None   # torch threads for the run (None: leave the worker's)
    # a file whose existence (or its folder's absence: the sweep is over) asks the run to
    # stop (a local speculative run nobody needs any more); None: it runs to the end
    stop_file: str | None = None


class Stopped(Exception):
    """A run stopped because its stop file appeared."""


def run_job(job: Job) -> tuple[dict, bytes]:
    """One pruning run in a worker: its summary and its tensors (the hard mask and the learned
    state, as safetensors bytes). Nothing is written but the unpacked checkpoint. Raises
    Stopped when the job's stop file appears."""
    if isinstance(job, tuple):
        return _run_by_path(*job)
    spec = job.spec
    if job.threads:
        torch.set_num_threads(job.threads)
    directory, task = job.payload.unpack(Path(tempfile.gettempdir()) / "rasp-ir-jobs")
    return _prune_run(spec, directory, task, functools.partial(_stop_asked, job.stop_file)
                      if job.stop_file else None)


def _stop_asked(stop_file: str) -> bool:
    """Whether a run's stop file is there, or its folder gone (the sweep is over)."""
    return os.path.exists(stop_file) or not os.path.isdir(os.path.dirname(stop_file))


def _run_by_path(spec, directory) -> dict:
    """The job of a sweep started before jobs carried their checkpoint, (spec, cache
    directory): a local pool spawns its workers afresh, so they import this module as it is
    now. Reads the checkpoint by path and writes the cache itself, as such a sweep expects."""
    spec = RunSpec(spec.checkpoint, spec.task, spec.scales, spec.settings, spec.seed, spec.lam)
    cache = RunCache(directory)
    cached = cache.get(spec)
    if cached is not None:
        return cached
    summary, tensors = _prune_run(spec, Path(spec.checkpoint), spec.task)
    cache.put_bytes(spec, summary, tensors)
    return summary


def _prune_run(spec: RunSpec, directory: Path, task: str | None,
               stop: Callable[[], bool] | None = None) -> tuple[dict, bytes]:
    from extractor.decompile.prune import prune
    settings = PruneSettings(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in spec.settings.items()})
    model, linear, subject_task, data = _prepared(spec, directory, task, settings)

    def progress(*_):                     # prune reports every 25 steps: a look at the stop
        if stop():
            raise Stopped(f"λ={spec.lam:g}")

    circuit, result = prune(model, linear, subject_task, spec.lam, settings, spec.seed,
                            progress=progress if stop else None, data=data)
    summary = {"lam": spec.lam, "seed": spec.seed,
               "stages": [{"stage": s.name, "edges": s.edges, "match": s.match,
                           "seconds": s.seconds} for s in result.stages]}
    tensors = {"flat": result.flat, **{f"state.{k}": v for k, v in result.state.items()}}
    return summary, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


_PREPARED: dict = {}


def _prepared(spec: RunSpec, directory: Path, task: str | None, settings: PruneSettings):
    """(the model, its linearised copy, the task, the training and selection data) of a
    run: the same for every λ of a sweep, so a worker keeps the last ones it made (loading
    the checkpoint and running the model over the data cost seconds a run; neither is changed
    by a run). prune.Data draws no torch random numbers, so a run is the same either way."""
    from extractor.decompile.linearise import linearised
    from extractor.decompile.prune import Data
    key = json.dumps([str(directory), task, spec.scales, spec.settings, spec.seed, spec.device,
                      _fingerprint(str(directory))], sort_keys=True)
    if key not in _PREPARED:
        device = check_device(spec.device)
        _PREPARED.clear()                      # one sweep's at a time: they are large
        subject = load_subject(directory, task)
        model = subject.model.to(device)
        linear = linearised(model, spec.scales) if spec.scales else model
        _PREPARED[key] = (model, linear, subject.task,
                          Data(model, subject.task, settings, spec.seed))
    return _PREPARED[key]


def check_device(name: str) -> torch.device:
    """The torch device `name` ("cpu", "cuda", "cuda:1"); RaspError X505 when torch cannot use
    it here."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise RaspError([Diagnostic("X505", f"unknown device {name!r}",
                                    hint="use cpu or cuda (cuda:N for the N-th GPU)")]) from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise RaspError([Diagnostic("X505", f"device {name!r}: only cpu and cuda are supported")])
    if not torch.cuda.is_available():
        built = torch.version.cuda
        raise RaspError([Diagnostic(
            "X505", f"--device {name}: torch sees no CUDA device on this machine",
            note=(f"this torch {torch.__version__} is built for CUDA {built}, but no GPU is "
                  "visible (CUDA_VISIBLE_DEVICES, drivers)") if built else
            f"this torch {torch.__version__} is a CPU-only build",
            hint="leave out --device (the CPU is the default), or install a CUDA build of "
            "torch on a machine with a GPU")])
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise RaspError([Diagnostic("X505", f"--device {name}: torch sees "
                                    f"{torch.cuda.device_count()} CUDA device(s)")])
    return device


# ------------------------------------------------------------------ executors

class SerialExecutor(Executor):
    """Runs each job in this process, when it is submitted."""
    workers = 1

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:      # noqa: BLE001 -- handed to whoever waits on it
            future.set_exception(exc)
        return future


class LocalPool(ProcessPoolExecutor):
    """A local process pool (spawned: no forked torch state); each worker uses cores //
    workers torch threads (one each on two cores: two threads per worker there contend and
    make a run several times slower), and exits when this process is gone."""

    def __init__(self, workers: int):
        import multiprocessing
        self.workers = workers
        self.threads = max(1, (os.cpu_count() or 1) // workers)
        super().__init__(workers, mp_context=multiprocessing.get_context("spawn"),
                         initializer=_start_worker, initargs=(self.threads, os.getpid()))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ProcessPoolExecutor's; with cancel_futures, the runs in progress are stopped
        too (a sweep shuts its pool down when it waits for nothing more, so what still runs
        then is a speculative run nobody needs)."""
        if cancel_futures:
            for process in list((self._processes or {}).values()):
                process.terminate()
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


WATCH_SECONDS = 0.5          # how often a pool worker looks for its parent


def _start_worker(threads: int, parent: int) -> None:
    """A pool worker's start: its torch threads, and a watchdog that ends it when its parent
    is gone. A parent killed by SIGKILL cannot shut its pool down, and its workers would go on
    computing a run nobody waits for; the orphan is adopted by another process, so its parent
    id changes."""
    import threading
    import time
    torch.set_num_threads(threads)

    def watch():
        while os.getppid() == parent:
            time.sleep(WATCH_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def local_executor(workers: int) -> Executor:
    """The default executor: this process for one worker, else a local process pool."""
    return SerialExecutor() if workers <= 1 else LocalPool(workers)


def capacity(executor: Executor) -> int:
    """How many runs the executor computes at once: its `workers` (this module's executors,
    cluster.py's) or `_max_workers` (the standard library's pools); 2 when it does not say."""
    for name in ("workers", "_max_workers"):
        n = getattr(executor, name, None)
        if isinstance(n, int) and n > 0:
            return n
    return 2


def job_threads(executor: Executor) -> int | None:
    """Torch threads per run: a local pool sets its own; a cluster's worker slot is one CPU."""
    if isinstance(executor, (SerialExecutor, LocalPool)):
        return None
    return getattr(executor, "threads", 1)


def grid_for(workers: int, quick: bool = False, max_runs: int | None = None) -> tuple:
    """The first round's λ: 1e-3, 1e-2, 1e-1 (quick: 1e-2, 1e-1), or, for more workers than
    that, as many λ evenly spaced in log between the same ends (at most `max_runs`)."""
    base = QUICK_GRID if quick else GRID
    n = max(len(base), min(workers, max_runs or workers))
    if n == len(base):
        return base
    low, high = base[0], base[-1]
    return tuple(float(f"{low * (high / low) ** (i / (n - 1)):.4g}") for i in range(n))


class RunCache:
    """Run results under DIR/<key>.json (+ .safetensors for the masks and learned tensors),
    written atomically."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def get(self, spec: RunSpec) -> dict | None:
        path = self.directory / f"{spec.key()}.json"
        if not path.exists() or not self._tensors_path(spec).exists():
            return None
        try:
            summary = decoded(json.loads(path.read_text()))
            with safe_open(str(self._tensors_path(spec)), framework="pt") as f:
                for name in f.keys():   # the header's offsets are checked against the size
                    f.get_slice(name)
        except Exception:               # noqa: BLE001 -- whatever the damage: recompute
            return None                 # a damaged entry is recomputed (put replaces it)
        return summary if _whole(summary) else None

    def tensors(self, spec: RunSpec) -> dict:
        return load_file(self._tensors_path(spec))

    def _tensors_path(self, spec: RunSpec) -> Path:
        return self.directory / f"{spec.key()}.safetensors"

    def put(self, spec: RunSpec, summary: dict, tensors: dict) -> None:
        self.put_bytes(spec, summary, save({k: v.contiguous() for k, v in tensors.items()}))

    def put_bytes(self, spec: RunSpec, summary: dict, tensors: bytes) -> None:
        """Store a run whose tensors are already safetensors bytes (as run_job returns them)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        # the tensors first: a summary on disk always has its tensors beside it
        atomic_write_bytes(self._tensors_path(spec), tensors)
        atomic_write_text(self.directory / f"{spec.key()}.json", dumps(summary, indent=1))


def _whole(summary) -> bool:
    """Whether a cached summary has what the sweep reads from it (a hand-edited or foreign
    file is recomputed rather than crashing the sweep)."""
    stages = summary.get("stages") if isinstance(summary, dict) else None
    return isinstance(summary, dict) and isinstance(summary.get("lam"), (int, float)) and \
        isinstance(stages, list) and bool(stages) and \
        all(isinstance(s, dict) and isinstance(s.get("edges"), int) and
            isinstance(s.get("match"), dict) and s["match"] and
            all(isinstance(v, (int, float)) for v in s["match"].values()) for s in stages)


def worst_match(summary: dict) -> float:
    """The final stage's match in its worst bucket."""
    return min(summary["stages"][-1]["match"].values())


def final_edges(summary: dict) -> int:
    return summary["stages"][-1]["edges"]


# ------------------------------------------------------------------ the search

class Search:
    """The λ search of one checkpoint: its runs so far and the next round."""

    def __init__(self, base: RunSpec, directory: Path, threshold: float, max_runs: int = 8,
                 grid: tuple = GRID, per_round: int = 2):
        self.base, self.cache = base, RunCache(directory)
        self.threshold, self.max_runs, self.grid = threshold, max_runs, tuple(grid)
        self.per_round = per_round
        self.done: dict[float, dict] = {}
        self.started = False
        self.in_flight = 0

    def proposal(self) -> list[float]:
        """The next round's λ not yet run (the grid first, whatever `max_runs`)."""
        if not self.started:
            self.started = True
            lams = list(self.grid)
        elif len(self.done) >= self.max_runs:
            return []
        else:
            lams = _next_lams(self.done, self.threshold, self.per_round,
                              self.max_runs - len(self.done))
        return [lam for lam in lams if lam not in self.done]

    @functools.cached_property
    def payload(self) -> Payload:
        return Payload.of(self.base.checkpoint, self.base.task)


def sweep_all(searches: list[Search], executor: Executor,
              report: Callable[[int, dict], None] | None = None,
              speculate: bool | None = None) -> list[list[dict]]:
    """Run every search on one executor, each round as soon as the search's previous one is
    complete; per search, every summary (cached ones included) in the order they finished.
    `report(i, summary)` hears of each run of search i.

    `speculate` (default: on a LocalPool, whose runs in progress its shutdown stops): a worker
    that the rounds leave idle (the grid's third λ on two workers, a round's last run) runs
    the λ the next round would propose if the runs in flight fail, as they mostly do at the
    large-λ end. Such a run joins the sweep only when its round proposes that λ (its result
    is cached, and a round takes cached results as they are), so the runs and the program
    chosen are the same as without it. A guess its search's next round does not take was
    made on a wrong assumption (a run in flight passed), and no later round can take it
    (the bracket has moved above it): it is stopped (its stop file), so the round's runs
    get its worker."""
    threads = job_threads(executor)
    slots = capacity(executor)
    if speculate is None:
        speculate = isinstance(executor, LocalPool)
    pending: dict[Future, tuple[int, RunSpec]] = {}
    guesses: dict[Future, tuple[int, RunSpec]] = {}    # speculative runs not in a round
    stop_files: dict[Future, Path] = {}
    stops = Path(tempfile.mkdtemp(prefix="rasp-ir-stops-")) if speculate else None

    def record(i: int, summary: dict) -> None:
        searches[i].done[summary["lam"]] = summary
        if report:
            report(i, summary)

    def advance(i: int) -> None:
        """Submit search i's next round; a round all in the cache is taken as it is. The
        search's guesses the round does not take are stopped."""
        search = searches[i]
        while lams := search.proposal():
            fresh = []
            for lam in lams:
                spec = search.base.with_lam(lam)
                cached = search.cache.get(spec)
                if cached is not None:
                    record(i, {**cached, "lam": lam})
                else:
                    fresh.append(spec)
            for spec in fresh:
                guessed = next((f for f, job in guesses.items() if job == (i, spec)), None)
                if guessed is not None:                 # running already: it joins the round
                    pending[guessed] = guesses.pop(guessed)
                else:
                    future = executor.submit(run_job, Job(spec, search.payload, threads))
                    pending[future] = (i, spec)
            search.in_flight = len(fresh)
            if fresh:
                break
        for future, (j, _) in list(guesses.items()):
            if j == i and future in stop_files:
                stop_files[future].touch()
                guesses.pop(future)             # its worker is free once it sees the file

    def submit_guess(i: int, spec: RunSpec) -> None:
        stop = stops / f"{len(stop_files)}"
        future = executor.submit(run_job, Job(spec, searches[i].payload, threads, str(stop)))
        guesses[future] = (i, spec)
        stop_files[future] = stop

    def guess() -> None:
        """Fill idle workers with the next rounds' likely λ."""
        while speculate and len(pending) + len(guesses) < slots:
            for i, search in enumerate(searches):
                spec = _likely_next(search, [s for f, (j, s) in pending.items() if j == i],
                                    [s for f, (j, s) in guesses.items() if j == i])
                if spec is not None:
                    submit_guess(i, spec)
                    break
            else:
                return

    try:
        for i in range(len(searches)):
            advance(i)
        guess()
        while pending:
            finished, _ = wait([*pending, *guesses], return_when=FIRST_COMPLETED)
            for future in finished:
                if future in guesses:
                    i, spec = guesses.pop(future)
                    if future.exception() is None:      # a failed guess is just not used
                        searches[i].cache.put_bytes(spec, *future.result())
                    continue
                i, spec = pending.pop(future)
                summary, tensors = future.result()
                searches[i].cache.put_bytes(spec, summary, tensors)
                record(i, summary)
                searches[i].in_flight -= 1
                if searches[i].in_flight == 0:
                    advance(i)
            guess()
    finally:
        for future in [*pending, *guesses]:
            future.cancel()
        if stops is not None:               # every guess still running sees it gone
            shutil.rmtree(stops, ignore_errors=True)
    return [list(s.done.values()) for s in searches]


# a run in flight as the guess takes it: failing, with nothing kept
_FAILS = {"stages": [{"edges": 0, "match": {"": -1.0}}]}


def _likely_next(search: Search, in_flight: list[RunSpec],
                 guessed: list[RunSpec]) -> RunSpec | None:
    """The first λ of search's next round if every run in flight fails, not yet run, cached
    or guessed; None when there is none (no round running, or the sweep would end)."""
    if not in_flight or not search.started:
        return None
    assumed = {**search.done, **{s.lam: {**_FAILS, "lam": s.lam} for s in in_flight}}
    if len(assumed) >= search.max_runs:
        return None
    taken = {s.lam for s in guessed}
    for lam in _next_lams(assumed, search.threshold, search.per_round,
                          search.max_runs - len(assumed)):
        spec = search.base.with_lam(lam)
        if lam not in assumed and lam not in taken and search.cache.get(spec) is None:
            return spec
    return None


def sweep(base: RunSpec, directory: Path, threshold: float, executor: Executor | None = None,
          max_runs: int = 8, grid: tuple = GRID, report: Callable[[dict], None] | None = None,
          per_round: int | None = None) -> list[dict]:
    """The λ search of one checkpoint (`sweep_all` with one search); every summary, cached
    ones included, in the order they finished. Without an executor, runs go through a local
    pool of two workers."""
    own = executor is None
    executor = executor or local_executor(2)
    try:
        search = Search(base, directory, threshold, max_runs, grid,
                        per_round or max(2, capacity(executor)))
        return sweep_all([search], executor,
                         (lambda i, summary: report(summary)) if report else None)[0]
    finally:
        if own:
            executor.shutdown(cancel_futures=True)


def _next_lams(done: dict, threshold: float, per_round: int, left: int) -> list[float]:
    """The next λ values: bisect (geometrically) between the largest λ that passes and the
    smallest larger one that fails; go down tenfold when nothing passes, up tenfold when
    everything does. Nothing when the bracket is within a factor of 1.5, or when the failing
    end is no smaller than the passing one."""
    lams = sorted(done)
    passing = [lam for lam in lams if worst_match(done[lam]) >= threshold]
    if not passing:
        low = lams[0] / 10
        return [low] if low >= 1e-6 else []
    best = max(passing)
    if final_edges(done[best]) == 0:
        return []               # nothing left to prune
    above = [lam for lam in lams if lam > best]
    if not above:
        return [best * 10] if best * 10 <= 10 else []
    high = min(above)
    if high / best <= 1.5 or final_edges(done[high]) >= final_edges(done[best]):
        return []               # bracketed, or nothing smaller to find in between
    k = min(per_round, left)
    ratio = math.log(high / best)
    return [best * math.exp(ratio * (i + 1) / (k + 1)) for i in range(k)]


def frontier(summaries: list[dict]) -> dict[str, list]:
    """Per stage, the (edges, worst-bucket match) points no other run beats on both."""
    out = {}
    for index, name in enumerate(("components", "paths", "products")):
        points = sorted({(s["stages"][index]["edges"], min(s["stages"][index]["match"].values()),
                          s["lam"]) for s in summaries if len(s["stages"]) > index})
        front, best = [], -1.0
        for edges, match, lam in points:
            if match > best:
                front.append({"edges": edges, "match": round(match, 4), "lam": lam})
                best = match
        out[name] = front
    return out
