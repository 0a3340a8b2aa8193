"""Token names and ids, laid out as the D-RASP paper's tokenizer lays them out.

The task's own symbols come first (symbol i has id i), then the four special tokens in a fixed
order: `<bos>` = n, `<sep>` = n+1, `<eos>` = n+2, `<pad>` = n+3. The paper's checkpoints depend
on this order, so it is never re-sorted here.
"""

from __future__ import annotations

from functools import lru_cache

from attrs import field, frozen

BOS, SEP, EOS, PAD = "<bos>", "<sep>", "<eos>", "<pad>"
SPECIALS = (BOS, SEP, EOS, PAD)


def _symbols(values) -> tuple[str, ...]:
    symbols = tuple(str(v) for v in values)
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"repeated symbols in {list(symbols)}")
    clash = [s for s in symbols if s in SPECIALS]
    if clash:
        raise ValueError(f"{clash} are special tokens, not symbols")
    return symbols


@frozen
class Vocabulary:
    """The symbols of a task followed by <bos>, <sep>, <eos>, <pad>."""

    symbols: tuple[str, ...] = field(converter=_symbols)

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every token name, in id order."""
        return self.symbols + SPECIALS

    def __len__(self) -> int:
        return len(self.symbols) + len(SPECIALS)

    @property
    def bos(self) -> int:
        return len(self.symbols)

    @property
    def sep(self) -> int:
        return len(self.symbols) + 1

    @property
    def eos(self) -> int:
        return len(self.symbols) + 2

    @property
    def pad(self) -> int:
        return len(self.symbols) + 3

    def id(self, token: str) -> int:
        """The id of a token name; KeyError names the token if it is not in the vocabulary."""
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary "
                           f"{list(self.tokens)}") from None

    def ids(self, tokens) -> list[int]:
        return [self.id(t) for t in tokens]

    def names(self, ids) -> list[str]:
        tokens = self.tokens
        return [tokens[i] for i in ids]

    @property
    def _ids(self) -> dict[str, int]:
        return _index(self.tokens)


@lru_cache(maxsize=256)
def _index(tokens: tuple[str, ...]) -> dict[str, int]:
    # Data generators look ids up per token; build each vocabulary's table once.
    return {t: i for i, t in enumerate(tokens)}
