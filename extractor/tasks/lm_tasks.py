"""The paper's language-modelling tasks (docs/extractor.md, Tasks), with its token ids.

Every task samples its length n uniformly in [max(min_length, lo), hi] and builds
`<bos> prompt <sep> answer`; only the answer is scored. The distributions follow the paper's
generators (e.g. bin_majority draws the *number* of zeros uniformly, not iid bits), because the
recorded accuracies of its checkpoints are measured on them.
"""

from __future__ import annotations

import math
import string

import numpy as np

from extractor.tasks.base import MAX_TEST_LENGTH, PromptAnswerTask

_NUMBERS = tuple(str(i) for i in range(MAX_TEST_LENGTH))


def _shuffled_counts(rng: np.random.Generator, zeros: int, total: int) -> list[int]:
    bits = np.ones(total, dtype=np.int64)
    bits[:zeros] = 0
    rng.shuffle(bits)
    return bits.tolist()


def _untied_bits(rng: np.random.Generator, n: int) -> tuple[list[int], int]:
    """n bits whose number of zeros is uniform in 0..n, redrawn on a tie; and the majority bit."""
    while True:
        zeros = int(rng.integers(n + 1))
        if 2 * zeros != n:
            break
    return _shuffled_counts(rng, zeros, n), 0 if 2 * zeros > n else 1


class BinMajority(PromptAnswerTask):
    name, symbols, min_length = "bin_majority", ("0", "1"), 1
    description = "the majority bit of a bit string (no ties)"

    def prompt_answer(self, rng, n):
        bits, majority = _untied_bits(rng, n)
        return bits, [majority]


class Majority(PromptAnswerTask):
    name, symbols, min_length = "majority", tuple(string.ascii_lowercase), 1
    description = "the most frequent letter of an iid a-z string (unique mode)"

    def prompt_answer(self, rng, n):
        while True:
            letters = rng.integers(26, size=n)
            counts = np.bincount(letters, minlength=26)
            top = counts.max()
            if (counts == top).sum() == 1:
                return letters.tolist(), [int(counts.argmax())]


class BinMajorityInterleave(PromptAnswerTask):
    name, symbols, min_length = "bin_majority_interleave", ("0", "1"), 3
    description = "three interleaved bit streams; the majority bit of each, then <eos>"
    period = 3

    @property
    def n_positions(self):
        return self.max_length + 6

    def valid_length(self, n):
        return n % self.period == 0

    def draw_length(self, rng, lo, hi):
        # The paper draws a total length and rounds it to a multiple of the period, kept in range.
        lo = max(lo, self.min_length)
        if not self.lengths(lo, hi):
            raise ValueError(f"task {self.name} has no examples with lengths {lo}-{hi}")
        m = round(int(rng.integers(lo, hi + 1)) / self.period)
        if m * self.period > hi:
            m -= 1
        if m * self.period < lo:
            m += 1
        return m * self.period

    def prompt_answer(self, rng, n):
        m = n // self.period
        streams, answers = zip(*(_untied_bits(rng, m) for _ in range(self.period)))
        interleaved = [bit for column in zip(*streams) for bit in column]
        return interleaved, [*answers, self.vocab.eos]


class _CopyLike(PromptAnswerTask):
    """`<bos> x <sep> f(x) <eos>` with an offset up to 2·(150 - n), as the paper's copy tasks."""
    min_length = 1

    @property
    def n_positions(self):
        return 2 * self.max_length + 3

    def max_offset(self, n, sequence_length):
        return 2 * (self.max_length - n)

    def transform(self, x: list[int]) -> list[int]:
        return x

    def draw(self, rng, n) -> list[int]:
        """n distinct symbols."""
        return rng.choice(len(self.symbols), size=n, replace=False).tolist()

    def prompt_answer(self, rng, n):
        x = self.draw(rng, n)
        return x, [*self.transform(x), self.vocab.eos]


class UniqueCopy(_CopyLike):
    name, symbols = "unique_copy", _NUMBERS
    description = "copy n distinct numbers from 0-149"


class UniqueReverse(_CopyLike):
    name, symbols = "unique_reverse", _NUMBERS
    description = "reverse n distinct numbers from 0-149"

    def transform(self, x):
        return x[::-1]


class Sort(_CopyLike):
    name, symbols = "sort", _NUMBERS
    description = "sort n distinct numbers from 0-149 ascending"

    def transform(self, x):
        return sorted(x)


class RepeatCopy(_CopyLike):
    name, symbols = "repeat_copy", ("a", "b")
    description = "copy an iid a/b string"

    def draw(self, rng, n):
        return rng.integers(2, size=n).tolist()


class UniqueBigramCopy(_CopyLike):
    name = "unique_bigram_copy"
    symbols = tuple(str(i) for i in range(math.ceil(math.sqrt(MAX_TEST_LENGTH) * 1.25)))
    description = "copy a string over 16 symbols in which no bigram repeats"

    def draw(self, rng, n):
        k = len(self.symbols)
        while True:
            seq = self._extend(rng, self._distinct_bigram_start(rng, min(k, n)), n)
            if seq is not None:
                return seq

    def _distinct_bigram_start(self, rng, size):
        while True:
            seq = rng.integers(len(self.symbols), size=size).tolist()
            if len(set(zip(seq, seq[1:]))) == size - 1:
                return seq

    def _extend(self, rng, seq, n):
        # Greedy continuation: go to an unused successor that itself has the most unused
        # successors left, so that long strings rarely paint themselves into a corner.
        k = len(self.symbols)
        used = np.zeros((k, k), dtype=bool)
        for a, b in zip(seq, seq[1:]):
            used[a, b] = True
        while len(seq) < n:
            last = seq[-1]
            candidates = np.flatnonzero(~used[last])
            if not len(candidates):
                return None            # a dead end: start again
            room = k - used[candidates].sum(axis=1)
            best = candidates[room == room.max()]
            nxt = int(best[rng.integers(len(best))])
            used[last, nxt] = True
            seq.append(nxt)
        return seq


class Count(PromptAnswerTask):
    name, symbols, min_length = "count", _NUMBERS, 2
    description = "given start and end, count from start to end"

    @property
    def n_positions(self):
        return self.max_length + 5

    def prompt_answer(self, rng, n):
        start = int(rng.integers(len(self.symbols) - n + 1))
        return [start, start + n - 1], [*range(start, start + n), self.vocab.eos]


class Parity(PromptAnswerTask):
    name, symbols, min_length = "parity", ("0", "1"), 0
    description = "the parity of the number of ones (uniform in 0..n)"

    def prompt_answer(self, rng, n):
        ones = int(rng.integers(n + 1))
        return _shuffled_counts(rng, n - ones, n), [ones % 2]


class Addition(PromptAnswerTask):
    name, symbols, min_length = "addition", ("0", "1", "+"), 4
    description = "binary a + b (MSB first); n = len(a) + 1 + len(b)"

    @property
    def n_positions(self):
        return 2 * self.max_length + 2

    def max_offset(self, n, sequence_length):
        return 2 * (self.max_length + 1) - sequence_length

    @staticmethod
    def _operand(rng, digits: int) -> list[int]:
        # A leading 1 unless the operand is a single digit.
        if digits == 1:
            return [int(rng.integers(2))]
        return [1, *rng.integers(2, size=digits - 1).tolist()]

    def prompt_answer(self, rng, n):
        len_a = int(rng.integers(1, n - 1))
        a, b = self._operand(rng, len_a), self._operand(rng, n - 1 - len_a)
        total = int("".join(map(str, a)), 2) + int("".join(map(str, b)), 2)
        plus = self.vocab.id("+")
        return [*a, plus, *b], [*map(int, bin(total)[2:]), self.vocab.eos]


LM_TASKS = (BinMajority, Majority, BinMajorityInterleave, UniqueCopy, UniqueReverse, Sort,
            UniqueBigramCopy, RepeatCopy, Count, Parity, Addition)
