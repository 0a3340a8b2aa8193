"""The sparsity sweep: pruning runs at several λ, cached on disk, traced as a frontier.

A run is `extractor.decompile.prune.prune` at one λ; it is a pure function of its inputs, so its result is
kept under a key made of everything it depends on (checkpoint, task, LLN-A scales, settings,
seed, λ) and never computed twice: an interrupted sweep resumes where it stopped. Runs go
through an `Executor`: the default is a local process pool; anything with the same `map`
(a Ray or Dask wrapper) can take its place.

The search (docs/extractor.md, The sparsity sweep; local and deterministic): λ sets the price of an
edge, so programs shrink as λ grows. Starting from a fixed grid, it brackets the largest λ whose
program still matches the model on at least `threshold` of the selection sequences in every
length bucket, by geometric bisection, and the smallest such program wins.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import attrs
import torch
from attrs import frozen
from safetensors.torch import load_file, save

from extractor.decompile.prune import PruneSettings
from extractor.tasks.checkpoint import load_subject
from rasp_ir.files import atomic_write_bytes, atomic_write_text

GRID = (1e-3, 1e-2, 1e-1)


@frozen
class RunSpec:
    """Everything a pruning run depends on."""
    checkpoint: str
    task: str | None
    scales: dict                 # LLN-A scales to start from ({} without LayerNorm)
    settings: dict               # PruneSettings.to_dict()
    seed: int
    lam: float

    def key(self) -> str:
        text = json.dumps([Path(self.checkpoint).name, _fingerprint(self.checkpoint),
                           self.task, self.scales, self.settings, self.seed, repr(self.lam)],
                          sort_keys=True)
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


class Executor:
    """Runs jobs; yields (item, result) as each finishes."""

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        raise NotImplementedError


class SerialExecutor(Executor):
    def map(self, fn, items):
        for item in items:
            yield item, fn(item)


class ProcessExecutor(Executor):
    """A local process pool; each worker uses cores // workers torch threads."""

    def __init__(self, workers: int):
        self.workers = workers

    def map(self, fn, items):
        items = list(items)
        if self.workers <= 1 or len(items) <= 1:
            yield from SerialExecutor().map(fn, items)
            return
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        import multiprocessing
        context = multiprocessing.get_context("spawn")      # no forked torch state
        with ProcessPoolExecutor(min(self.workers, len(items)), mp_context=context,
                                 initializer=torch.set_num_threads,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(fn, item): item for item in items}
            for future in as_completed(futures):
                yield futures[future], future.result()


class RunCache:
    """Run results under DIR/<key>.json (+ .safetensors for the masks and learned tensors),
    written atomically."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def get(self, spec: RunSpec) -> dict | None:
        path = self.directory / f"{spec.key()}.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None                 # a damaged entry is recomputed

    def tensors(self, spec: RunSpec) -> dict:
        return load_file(self.directory / f"{spec.key()}.safetensors")

    def put(self, spec: RunSpec, summary: dict, tensors: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        key = spec.key()
        # the tensors first: a summary on disk always has its tensors beside it
        atomic_write_bytes(self.directory / f"{key}.safetensors",
                           save({k: v.contiguous() for k, v in tensors.items()}))
        atomic_write_text(self.directory / f"{key}.json", json.dumps(summary, indent=1))


def run_job(job: tuple) -> dict:
    """One pruning run in a worker: (spec, cache directory) → its summary (also cached)."""
    spec, directory = job
    cache = RunCache(directory)
    cached = cache.get(spec)
    if cached is not None:
        return cached
    from extractor.decompile.linearise import linearised
    from extractor.decompile.prune import prune
    subject = load_subject(spec.checkpoint, spec.task)
    model = subject.model
    linear = linearised(model, spec.scales) if spec.scales else model
    settings = PruneSettings(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in spec.settings.items()})
    circuit, result = prune(model, linear, subject.task, spec.lam, settings, spec.seed)
    summary = {"lam": spec.lam, "seed": spec.seed,
               "stages": [{"stage": s.name, "edges": s.edges, "match": s.match,
                           "seconds": s.seconds} for s in result.stages]}
    tensors = {"flat": result.flat, **{f"state.{k}": v for k, v in result.state.items()}}
    cache.put(spec, summary, tensors)
    return summary


def worst_match(summary: dict) -> float:
    """The final stage's match in its worst bucket."""
    return min(summary["stages"][-1]["match"].values())


def final_edges(summary: dict) -> int:
    return summary["stages"][-1]["edges"]


def sweep(base: RunSpec, directory: Path, threshold: float, executor: Executor,
          max_runs: int = 8, grid: tuple = GRID, report: Callable[[dict], None] | None = None,
          per_round: int = 2) -> list[dict]:
    """Run the λ search; every summary (cached ones included), in the order they finished."""
    cache_dir = Path(directory)
    done: dict[float, dict] = {}

    def launch(lams: list[float]) -> None:
        specs = [base.with_lam(lam) for lam in lams if lam not in done]
        for (spec, _), summary in executor.map(run_job, [(s, cache_dir) for s in specs]):
            done[spec.lam] = summary
            if report:
                report(summary)

    launch(list(grid))
    while len(done) < max_runs:
        proposal = _next_lams(done, threshold, per_round, max_runs - len(done))
        if not proposal:
            break
        launch(proposal)
    return list(done.values())


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
