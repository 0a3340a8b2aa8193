"""Looking for an input on which two things disagree, and shrinking it to a minimal one.

The search works on any batched oracle `agree(sequences) -> bool array` (two programs, or a
program and a model) over an `InputSpace`: every sequence of tokens from an alphabet, lengths
`min_len`..`max_len`, optionally behind a fixed BOS token. Inputs are ordered shortlex: shorter
first, then by the alphabet's order, position by position; "minimal" means least in that order.

1. Exhaustive: every input of each length, shortest first, while the total stays within a
   bound. The first disagreement met is the least one overall: nothing shorter disagrees.
2. Property-based, for the longer lengths: a seeded batch of uniformly random inputs, then
   Hypothesis (`find`), which favours edge cases (repeated tokens, extremes) and shrinks.
3. Shrinking (delta debugging, batched): from a disagreeing input, try big cuts (prefixes of
   half, a quarter… of it, deletions of runs of 2, 4, 8… tokens), then every deletion of one
   token, then every replacement of one token by an earlier one, each stage in a few batches;
   move to the least candidate of the first stage that still disagrees; repeat. The result is
   1-minimal: no single deletion and no single smaller token still disagrees.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

import numpy as np
from attrs import define, frozen

Agree = Callable[[list[list]], np.ndarray]
CHUNK = 2048                   # inputs per batch given to an oracle
MAX_SHRINK_ROUNDS = 500


@frozen
class InputSpace:
    """Sequences `[bos] + free` (or just `free`) with tokens of `alphabet` at free positions;
    total lengths min_len..max_len."""
    alphabet: tuple
    max_len: int
    bos: object = None
    min_len: int = 1

    @property
    def fixed(self) -> int:
        return 0 if self.bos is None else 1

    def count(self, n: int) -> int:
        """How many inputs have length n."""
        return len(self.alphabet) ** (n - self.fixed) if n >= max(self.fixed, 1) else 0

    def total(self, lo: int | None = None, hi: int | None = None) -> int:
        lo = self.min_len if lo is None else lo
        hi = self.max_len if hi is None else hi
        return sum(self.count(n) for n in range(lo, hi + 1))

    def exhaustive_limit(self, bound: int) -> int:
        """The longest length L such that all inputs of lengths min_len..L number at most
        `bound` (min_len - 1 when not even the shortest fit)."""
        total, limit = 0, self.min_len - 1
        for n in range(self.min_len, self.max_len + 1):
            total += self.count(n)
            if total > bound:
                break
            limit = n
        return limit

    def _sequence(self, free: list) -> list:
        return free if self.bos is None else [self.bos] + free

    def all_of_length(self, n: int, chunk: int = CHUNK) -> Iterator[list[list]]:
        """Every input of length n, in shortlex order, `chunk` at a time."""
        tokens = np.empty(len(self.alphabet), dtype=object)
        tokens[:] = list(self.alphabet)
        indices = itertools.product(range(len(self.alphabet)), repeat=n - self.fixed)
        while True:
            block = list(itertools.islice(indices, chunk))
            if not block:
                return
            rows = tokens[np.array(block, dtype=np.int64).reshape(len(block), -1)].tolist()
            yield [self._sequence(r) for r in rows]

    def sample(self, rng: np.random.Generator, count: int, lo: int, hi: int) -> list[list]:
        """`count` inputs with lengths uniform in lo..hi and tokens uniform."""
        lengths = rng.integers(lo, hi + 1, size=count)
        out = []
        for n in lengths.tolist():
            picks = rng.integers(0, len(self.alphabet), size=n - self.fixed).tolist()
            out.append(self._sequence([self.alphabet[i] for i in picks]))
        return out

    def strategy(self, lo: int, hi: int):
        """A Hypothesis strategy for inputs of lengths lo..hi (it shrinks towards shorter
        inputs and earlier tokens: the same order as ours)."""
        from hypothesis import strategies as st
        return st.lists(st.sampled_from(self.alphabet), min_size=max(lo - self.fixed, 0),
                        max_size=hi - self.fixed).map(self._sequence)

    def key(self, seq: list) -> tuple:
        """The shortlex sort key of an input."""
        index = self._index()
        return (len(seq), tuple(index[t] for t in seq[self.fixed:]))

    def _index(self) -> dict:
        return {t: i for i, t in enumerate(self.alphabet)}

    def smaller(self, seq: list) -> list[list[list]]:
        """Inputs just below `seq` in shortlex order, in stages of decreasing ambition:
        (1) prefixes of half, a quarter… of its length and deletions of runs of 2, 4, 8…
        tokens, (2) deletions of one token, (3) one token replaced by an earlier one. The
        candidates of one stage have few distinct lengths, so each stage is a few batches."""
        free, index = seq[self.fixed:], self._index()
        least_free = max(self.min_len - self.fixed, 0, 1 - self.fixed)
        seen: set = set()

        def stage(candidates):
            out = []
            for candidate in candidates:
                t = tuple(candidate)
                if len(candidate) >= least_free and t not in seen:
                    seen.add(t)
                    out.append(self._sequence(list(candidate)))
            return out
        cuts, m = [], len(free) // 2
        while m >= least_free and m > 0:
            cuts.append(free[:m])
            m //= 2
        if least_free == 0:
            cuts.append([])
        run = 2
        while run < len(free):
            cuts += [free[:i] + free[i + run:] for i in range(len(free) - run + 1)]
            run *= 2
        singles = [free[:i] + free[i + 1:] for i in range(len(free))]
        replaced = [free[:i] + [self.alphabet[j]] + free[i + 1:]
                    for i, token in enumerate(free) for j in range(index[token])]
        return [c for c in (stage(cuts), stage(singles), stage(replaced)) if c]


def batched(agree_group: Callable[[list[list]], np.ndarray], chunk: int = CHUNK) -> Agree:
    """An oracle for inputs of any lengths from one that takes inputs of one length."""
    def agree(sequences: list[list]) -> np.ndarray:
        out = np.ones(len(sequences), dtype=bool)
        by_length: dict[int, list[int]] = {}
        for i, seq in enumerate(sequences):
            by_length.setdefault(len(seq), []).append(i)
        for members in by_length.values():
            for start in range(0, len(members), chunk):
                part = members[start:start + chunk]
                out[part] = agree_group([sequences[i] for i in part])
        return out
    return agree


@define
class SearchResult:
    """What a search checked and found."""
    space: InputSpace
    bound: int
    exhaustive_up_to: int                 # longest length checked exhaustively
    tally: dict                           # length -> [agreeing inputs, inputs checked]
    random_inputs: int = 0
    hypothesis_inputs: int = 0
    counterexample: list | None = None    # the minimal disagreeing input found
    found: list | None = None             # as first found, before shrinking
    found_by: str | None = None           # "exhaustive", "random" or "hypothesis"
    shrink_rounds: int = 0
    stopped: bool = False                 # the search ended at the first difference

    @property
    def exhaustive(self) -> bool:
        """Every input of every length was checked."""
        return self.exhaustive_up_to >= self.space.max_len

    @property
    def mode(self) -> str:
        if self.exhaustive:
            return "exhaustive"
        if self.exhaustive_up_to >= self.space.min_len:
            return "exhaustive+property"
        return "property"

    @property
    def checked(self) -> int:
        return sum(total for _, total in self.tally.values())


def search(space: InputSpace, agree: Agree, bound: int, examples: int,
           hypothesis_examples: int, seed: int = 0, stop_at_first: bool = True,
           shrink_found: bool = True, progress=None) -> SearchResult:
    """Check `agree` exhaustively up to the longest length `bound` allows, then on `examples`
    random and up to `hypothesis_examples` Hypothesis-generated longer inputs; shrink the
    least disagreement found. With stop_at_first, stop at the first disagreeing length (the
    tally then covers what was checked); otherwise check everything (for accuracy figures).
    `progress(text, done=None, total=None)` hears about each stage and exhaustive block."""
    say = progress or (lambda text, done=None, total=None: None)
    limit = space.exhaustive_limit(bound)
    result = SearchResult(space, bound, limit, {})
    failures: list[list] = []
    exhaustive_total = space.total(hi=limit) if limit >= space.min_len else 0

    def note(sequences, ok):
        for seq, good in zip(sequences, ok.tolist()):
            counts = result.tally.setdefault(len(seq), [0, 0])
            counts[0] += good
            counts[1] += 1
    for n in range(space.min_len, limit + 1):
        for block in space.all_of_length(n):
            ok = agree(block)
            note(block, ok)
            say(f"exhaustive inputs: length {n}", done=result.checked, total=exhaustive_total)
            if not ok.all() and not failures:
                failures.append(block[int(np.flatnonzero(~ok)[0])])
                result.found_by = "exhaustive"
            if failures and stop_at_first:
                break
        if failures and stop_at_first:
            break
    if failures:
        result.found = result.counterexample = failures[0]   # least in shortlex order
        if stop_at_first:
            result.stopped = True
            return result
    lo, hi = max(limit + 1, space.min_len), space.max_len
    if lo <= hi and examples > 0:
        say(f"{examples:,} random inputs of lengths {lo}-{hi}")
        rng = np.random.default_rng(seed)
        sample = space.sample(rng, examples, lo, hi)
        ok = agree(sample)
        note(sample, ok)
        result.random_inputs = len(sample)
        if not failures and not ok.all():
            failures.append(min((s for s, g in zip(sample, ok) if not g), key=space.key))
            result.found_by = "random"
    if lo <= hi and hypothesis_examples > 0 and not failures:
        say(f"up to {hypothesis_examples:,} Hypothesis inputs of lengths {lo}-{hi}")
        found, tried = _hypothesis_find(space, agree, lo, hi, hypothesis_examples, seed)
        result.hypothesis_inputs = tried
        if found is not None:
            failures.append(found)
            result.found_by = "hypothesis"
    if failures and result.found_by != "exhaustive":
        say("shrinking the difference found")
        result.found = failures[0]
        result.counterexample, result.shrink_rounds = (
            shrink(space, failures[0], agree) if shrink_found else (failures[0], 0))
    return result


def _hypothesis_find(space: InputSpace, agree: Agree, lo: int, hi: int, examples: int,
                     seed: int) -> tuple[list | None, int]:
    """(a disagreeing input shrunk by Hypothesis or None, inputs tried)."""
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample
    tried = [0]

    def differs(seq):
        tried[0] += 1
        return not bool(agree([seq])[0])
    config = settings(max_examples=examples, database=None, deadline=None, derandomize=False,
                      suppress_health_check=list(HealthCheck),
                      phases=[Phase.generate, Phase.shrink])
    try:
        found = find(space.strategy(lo, hi), differs, settings=config,
                     random=random.Random(seed))
    except NoSuchExample:
        return None, tried[0]
    return list(found), tried[0]


def shrink(space: InputSpace, seq: list, agree: Agree,
           rounds: int = MAX_SHRINK_ROUNDS) -> tuple[list, int]:
    """(a 1-minimal disagreeing input no greater than `seq`, rounds taken); see the module
    docstring. Every candidate of a round is checked in one batch."""
    current, taken = list(seq), 0
    for _ in range(rounds):
        failing = []
        for candidates in space.smaller(current):
            ok = agree(candidates)
            failing = [c for c, good in zip(candidates, ok.tolist()) if not good]
            if failing:
                break
        if not failing:
            break
        current = min(failing, key=space.key)
        taken += 1
    return current, taken
