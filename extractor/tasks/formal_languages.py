"""The paper's formal languages in next-token-set (BCE) mode (docs/extractor.md, Tasks).

Each language is a small automaton: `step(state, symbol)` is the next state, or None once no
continuation can be accepted any more, and `accepts(state)`. The set of tokens allowed after a
prefix is then read off the automaton: every symbol whose step is not None, plus <eos> when the
prefix is a word. This is the set the paper's hand-written rules give for every language.
Positive words come from per-language samplers that follow the paper's distributions (which
decide what the checkpoints' recorded accuracies mean).
"""

from __future__ import annotations

import numpy as np

from extractor.tasks.base import Example, Task
from extractor.tasks.vocabulary import Vocabulary


class Language:
    """A regular language with a sampler of positive words of a given length."""

    name = "language"
    sigma: tuple[str, ...] = ()
    start = 0
    min_length = 0
    description = ""

    def step(self, state, symbol: str):
        raise NotImplementedError

    def accepts(self, state) -> bool:
        raise NotImplementedError

    def valid_length(self, n: int) -> bool:
        return n >= self.min_length

    def generate(self, rng: np.random.Generator, n: int) -> str:
        """A word of the language of length n (n is a valid length)."""
        raise NotImplementedError


def _flip(rng) -> bool:
    return bool(rng.integers(2))


def _shuffled(rng, counts: dict[str, int]) -> str:
    letters = np.array([c for c, k in counts.items() for _ in range(k)])
    rng.shuffle(letters)
    return "".join(letters.tolist())


def _split(rng, total: int, parts: int) -> list[int]:
    """`parts` block lengths summing to total: each of the first parts-1 is uniform in what is
    left, the last takes the rest, then the blocks are shuffled (the paper's block sampler)."""
    lengths = []
    for _ in range(parts - 1):
        lengths.append(int(rng.integers(total - sum(lengths) + 1)))
    lengths.append(total - sum(lengths))
    rng.shuffle(lengths)
    return lengths


def _decreasing(rng, values: np.ndarray, rest: int) -> int:
    """A run length from `values`, with weight rest + 1 - k (short runs are likelier)."""
    weights = (rest + 1 - values).astype(float)
    return int(rng.choice(values, p=weights / weights.sum()))


class Tomita1(Language):
    name, sigma, description = "tomita1", ("0", "1"), "1*"

    def step(self, state, symbol):
        return 0 if symbol == "1" else None

    def accepts(self, state):
        return True

    def generate(self, rng, n):
        return "1" * n


class Tomita2(Language):
    name, sigma, description = "tomita2", ("0", "1"), "(10)*"

    def step(self, state, symbol):      # state 0: between pairs, 1: after a 1
        return {(0, "1"): 1, (1, "0"): 0}.get((state, symbol))

    def accepts(self, state):
        return state == 0

    def valid_length(self, n):
        return n % 2 == 0

    def generate(self, rng, n):
        return "10" * (n // 2)


class Tomita3(Language):
    name, sigma = "tomita3", ("0", "1")
    description = "no odd run of 1s followed by an odd run of 0s"
    # States: "even" (the last run of 1s was even, or none yet), "odd" (inside an odd run of
    # 1s), "odd0" / "even0" (an odd run of 1s, then an odd / even run of 0s). A 1 after "odd0"
    # would seal an odd run of 1s followed by an odd run of 0s.
    start = "even"
    _STEP = {("even", "0"): "even", ("even", "1"): "odd", ("odd", "0"): "odd0",
             ("odd", "1"): "even", ("odd0", "0"): "even0", ("even0", "0"): "odd0",
             ("even0", "1"): "odd"}

    def step(self, state, symbol):
        return self._STEP.get((state, symbol))

    def accepts(self, state):
        return state != "odd0"

    def generate(self, rng, n):
        word, last, ones_run = "", None, 0
        while len(word) < n:
            symbol, rest = ("1" if _flip(rng) else "0"), n - len(word)
            k = _decreasing(rng, np.arange(1, rest + 1), rest)
            if symbol == "1":
                ones_run = k if last == "0" else ones_run + k
            elif last is not None and ones_run % 2:
                # After an odd run of ones a run of zeros must be even; one slot left: a 1.
                if rest == 1:
                    symbol, k = "1", 1
                else:
                    k = _decreasing(rng, np.arange(2, rest + 1, 2), rest)
            word += symbol * k
            last = symbol
        return word


class Tomita4(Language):
    name, sigma, description = "tomita4", ("0", "1"), "no 000"

    def step(self, state, symbol):      # state: trailing zeros
        if symbol == "1":
            return 0
        return state + 1 if state < 2 else None

    def accepts(self, state):
        return True

    def generate(self, rng, n):
        word = ""
        while len(word) < n:
            word += "1" if word.endswith("00") or _flip(rng) else "0"
        return word


class Tomita5(Language):
    name, sigma, description = "tomita5", ("0", "1"), "even number of 0s and of 1s"
    start = (0, 0)

    def step(self, state, symbol):
        zeros, ones = state
        return (1 - zeros, ones) if symbol == "0" else (zeros, 1 - ones)

    def accepts(self, state):
        return state == (0, 0)

    def valid_length(self, n):
        return n % 2 == 0

    def generate(self, rng, n):
        zeros = 2 * int(rng.integers(n // 2 + 1))
        return _shuffled(rng, {"0": zeros, "1": n - zeros})


class Tomita6(Language):
    name, sigma, description = "tomita6", ("0", "1"), "(#0 - #1) divisible by 3"

    def step(self, state, symbol):
        return (state + (1 if symbol == "0" else -1)) % 3

    def accepts(self, state):
        return state == 0

    def valid_length(self, n):
        return n >= 3 and n % 2 == 1    # the paper's sampler only makes odd lengths >= 3

    def generate(self, rng, n):
        while True:
            zeros = int(rng.integers(n + 1))
            if (2 * zeros - n) % 3 == 0:
                return _shuffled(rng, {"0": zeros, "1": n - zeros})


class Tomita7(Language):
    name, sigma, description = "tomita7", ("0", "1"), "0*1*0*1*"

    def step(self, state, symbol):      # state: index of the current block (0 1 0 1)
        if symbol == "01"[state % 2]:
            return state
        return state + 1 if state < 3 else None

    def accepts(self, state):
        return True

    def generate(self, rng, n):
        blocks = _split(rng, n, 4)
        return "".join(c * k for c, k in zip("0101", blocks))


class Dyck(Language):
    """D_n: Dyck-1 over a (open) / b (close) with depth never above n."""
    sigma = ("a", "b")

    def __init__(self, depth: int):
        self.depth = depth
        self.name = f"D{depth}"
        self.description = f"balanced a/b of depth at most {depth}"

    def step(self, state, symbol):
        state += 1 if symbol == "a" else -1
        return state if 0 <= state <= self.depth else None

    def accepts(self, state):
        return state == 0

    def valid_length(self, n):
        return n % 2 == 0

    def generate(self, rng, n):
        # Alternate runs of a's and b's: each run is uniform in what the depth bound and the
        # remaining length allow, then close every open bracket.
        word, depth, opening = [], 0, True
        while len(word) + depth < n:
            if opening:
                room = min(self.depth - depth, (n - len(word) - depth) // 2)
                k = int(rng.integers(1, room + 1))
                word += ["a"] * k
                depth += k
            else:
                k = int(rng.integers(1, depth + 1))
                word += ["b"] * k
                depth -= k
            opening = not opening
        return "".join(word) + "b" * depth


class _Cycle(Language):
    """(w)*: state = position in w."""
    word = "a"

    def step(self, state, symbol):
        return (state + 1) % len(self.word) if symbol == self.word[state] else None

    def accepts(self, state):
        return state == 0

    def valid_length(self, n):
        return n % len(self.word) == 0

    def generate(self, rng, n):
        return self.word * (n // len(self.word))


class AAStar(_Cycle):
    name, sigma, word, description = "aastar", ("a",), "aa", "(aa)*"


class AAAAStar(_Cycle):
    name, sigma, word, description = "aaaastar", ("a",), "aaaa", "(aaaa)*"


class ABABStar(_Cycle):
    name, sigma, word, description = "ababstar", ("a", "b"), "abab", "(abab)*"


class ABCDE(Language):
    name, sigma, description = "abcde", ("a", "b", "c", "d", "e"), "a+b+c+d+e+"
    start, min_length = -1, 5

    def step(self, state, symbol):      # state: index of the last letter
        letter = "abcde".index(symbol)
        return letter if letter == state or (letter == state + 1) else None

    def accepts(self, state):
        return state == 4

    def generate(self, rng, n):
        extra = _split(rng, n - 5, 5)
        return "".join(c * (k + 1) for c, k in zip("abcde", extra))


class ABDBC(Language):
    name, sigma, description = "ab_d_bc", ("a", "b", "c", "d"), "[ab]*d[bc]*"
    min_length = 1

    def step(self, state, symbol):      # state 0: before d, 1: after it
        if state == 0:
            return {"a": 0, "b": 0, "d": 1}.get(symbol)
        return 1 if symbol in "bc" else None

    def accepts(self, state):
        return state == 1

    def generate(self, rng, n):
        before = int(rng.integers(n))
        after = n - 1 - before
        a = int(rng.integers(before + 1))
        b = int(rng.integers(after + 1))
        return (_shuffled(rng, {"a": a, "b": before - a}) + "d"
                + _shuffled(rng, {"b": b, "c": after - b}))


class ZeroOneTwo(Language):
    name, sigma, description = "012_0_2", ("0", "1", "2"), "[012]*02*"
    start, min_length = False, 1

    def step(self, state, symbol):      # state: may the word end here?
        return {"0": True, "1": False}.get(symbol, state)

    def accepts(self, state):
        return state

    def generate(self, rng, n):
        before = int(rng.integers(n))
        prefix = "".join(rng.choice(list(self.sigma), size=before).tolist())
        return prefix + "0" + "2" * (n - 1 - before)


class FormalLanguageTask(Task):
    """`<bos> word <eos>`, scored at every position on the set of allowed next tokens."""

    mode = "bce"

    def __init__(self, language: Language):
        self.language = language
        self.name = language.name
        self.description = language.description
        self.min_length = max(1, language.min_length)    # the paper never samples the empty word
        self._vocab = Vocabulary(sorted(language.sigma))
        self._rows: dict = {}

    @property
    def vocab(self) -> Vocabulary:
        return self._vocab

    @property
    def n_positions(self) -> int:
        return self.max_length + 2

    def valid_length(self, n):
        return self.language.valid_length(n)

    def next_row(self, state) -> np.ndarray:
        """0/1 over the vocabulary: the tokens allowed after a prefix ending in `state`."""
        row = self._rows.get(state)
        if row is None:
            row = np.zeros(len(self.vocab), dtype=np.uint8)
            for symbol in self.language.sigma:
                row[self.vocab.id(symbol)] = self.language.step(state, symbol) is not None
            row[self.vocab.eos] = self.language.accepts(state)
            self._rows[state] = row
        return row

    def labels(self, word: str) -> np.ndarray:
        """The target rows for `<bos> word <eos>` ([len(word) + 2, vocabulary size])."""
        rows = np.zeros((len(word) + 2, len(self.vocab)), dtype=np.uint8)
        state = self.language.start
        rows[0] = self.next_row(state)
        for i, symbol in enumerate(word, start=1):
            state = self.language.step(state, symbol)
            if state is None:
                raise ValueError(f"{word!r} is not a prefix of a word of {self.name}")
            rows[i] = self.next_row(state)
        return rows                     # the row at <eos> stays empty: it is not scored

    def example(self, rng, n, offset):
        word = self.language.generate(rng, n)
        v = self.vocab
        tokens = np.array([v.bos, *v.ids(word), v.eos], dtype=np.int64)
        shift = int(rng.integers(self.max_length - n + 1)) if offset else 0
        return Example(tokens, self.labels(word), shift, n)

    def metadata(self):
        return {**super().metadata(), "language": self.language.description}


LANGUAGES = (Tomita1, Tomita2, Tomita3, Tomita4, Tomita5, Tomita6, Tomita7, AAStar, AAAAStar,
             ABABStar, ABCDE, ABDBC, ZeroOneTwo)
DYCK_DEPTHS = (2, 3, 4, 12)     # the depths of the paper's checkpoints; any D<n> works
