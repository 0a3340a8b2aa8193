"""Tokenizer files beside a model: the token contract in the form Hugging Face reads.

A directory written by rasp-ir carries `tokenizer.json` (a `tokenizers` WordLevel tokenizer:
one word per token, words separated by whitespace), `special_tokens_map.json` and
`tokenizer_config.json`, so that `AutoTokenizer.from_pretrained(DIR)` encodes the ids the
model was trained or compiled with. The JSON is written here directly: the `tokenizers`
package is not needed to write or to read it.

Reading goes the other way: the vocabulary {token: id} of a checkpoint's `tokenizer.json`, with
the special tokens named by `special_tokens_map.json` (or `tokenizer_config.json`) renamed to
the names rasp-ir's tasks use (`<bos>`, `<sep>`, `<eos>`, `<pad>`), so that a checkpoint whose
tokenizer orders or spells its tokens differently can be mapped onto a task.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.files import atomic_write_text

TOKENIZER, SPECIAL_TOKENS, TOKENIZER_CONFIG = (
    "tokenizer.json", "special_tokens_map.json", "tokenizer_config.json")
UNKNOWN = "<unk>"     # never in a vocabulary here: an unknown word is an error, not a token
# the keys of special_tokens_map.json, and the names rasp-ir's tasks give those tokens
ROLES = {"bos_token": "<bos>", "sep_token": "<sep>", "eos_token": "<eos>", "pad_token": "<pad>"}


class TokenizerError(RaspError):
    """A tokenizer file that cannot be read (C313)."""


def write_tokenizer(directory: str | os.PathLike, tokens: list, specials: dict[str, str],
                    max_length: int | None = None) -> None:
    """Write the three tokenizer files for `tokens` (token i has id i; non-strings are written
    as their text) into `directory`. `specials` maps special_tokens_map.json's roles
    (bos_token, sep_token, eos_token, pad_token) to tokens among `tokens`; those become
    special added tokens, matched whole before the text is split at whitespace."""
    words = [str(t) for t in tokens]
    if len(set(words)) != len(words):
        raise ValueError(f"tokens repeat once written as text: {words}")
    unknown = {role: t for role, t in specials.items() if role not in ROLES or t not in words}
    if unknown:
        raise ValueError(f"special tokens not among the tokens, or unknown roles: {unknown}")
    ids = {w: i for i, w in enumerate(words)}
    added = [{"id": ids[t], "content": t, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for t in sorted(set(specials.values()), key=ids.get)]
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None, "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": ids, "unk_token": UNKNOWN},
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", **specials,
        "model_max_length": max_length or 1_000_000, "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                 for a in added},
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in ((TOKENIZER, tokenizer), (SPECIAL_TOKENS, specials),
                        (TOKENIZER_CONFIG, config)):
        atomic_write_text(directory / name, json.dumps(value, indent=2, ensure_ascii=False,
                                                       allow_nan=False)
                          + "\n")


def read_vocabulary(directory: str | os.PathLike) -> dict[str, int] | None:
    """{token: id} of DIR/tokenizer.json (model vocabulary and added tokens), special tokens
    renamed to `<bos>`, `<sep>`, `<eos>`, `<pad>` as special_tokens_map.json (else
    tokenizer_config.json) assigns them; None when there is no tokenizer.json. Raises
    TokenizerError (C313) naming the file and field of any problem."""
    directory = Path(directory)
    path = directory / TOKENIZER
    if not path.is_file():
        return None
    data = _json(path)

    def bad(field: str, what: str):
        return TokenizerError([Diagnostic("C313", f"{path}: field '{field}' {what}")])

    model = data.get("model")
    if not isinstance(model, dict) or "vocab" not in model:
        raise bad("model.vocab", "is missing")
    vocab = model["vocab"]
    if isinstance(vocab, dict):
        pairs = list(vocab.items())
    elif isinstance(vocab, list):                      # Unigram: [[piece, score], ...]
        pairs = [(entry[0] if isinstance(entry, list) and entry else None, i)
                 for i, entry in enumerate(vocab)]
    else:
        raise bad("model.vocab", f"is a JSON {type(vocab).__name__}, not an object or a list")
    added = data.get("added_tokens") or []
    if not isinstance(added, list):
        raise bad("added_tokens", "is not a list")
    tokens: dict[str, int] = {}
    for field, entries in (("model.vocab", pairs), ("added_tokens", [
            (a.get("content"), a.get("id")) if isinstance(a, dict) else (a, None)
            for a in added])):
        for token, i in entries:
            if not isinstance(token, str) or not isinstance(i, int) or isinstance(i, bool) \
                    or i < 0:
                raise bad(field, f"has an entry {token!r}: {i!r} that is not a token and a "
                          "non-negative id")
            if tokens.get(token, i) != i:
                raise bad(field, f"gives {token!r} the id {i}, and model.vocab {tokens[token]}")
            tokens[token] = i
    by_id: dict[int, str] = {}
    for token, i in tokens.items():
        if i in by_id:
            raise bad("model.vocab", f"gives the id {i} to both {by_id[i]!r} and {token!r}")
        by_id[i] = token
    return _renamed(tokens, _specials(directory), path)


def _specials(directory: Path) -> dict[str, str]:
    """{role: token} from special_tokens_map.json, else tokenizer_config.json."""
    for name in (SPECIAL_TOKENS, TOKENIZER_CONFIG):
        path = directory / name
        if not path.is_file():
            continue
        data = _json(path)
        found = {}
        for role in ROLES:
            value = data.get(role)
            if isinstance(value, dict):                # {"content": "<s>", "lstrip": false, ...}
                value = value.get("content")
            if value is None:
                continue
            if not isinstance(value, str):
                raise TokenizerError([Diagnostic("C313", f"{path}: field '{role}' is "
                                                 f"{json.dumps(value)}, not a token")])
            found[role] = value
        return found
    return {}


def _renamed(tokens: dict[str, int], specials: dict[str, str],
             path: Path) -> dict[str, int]:
    renames: dict[str, str] = {}
    for role, token in specials.items():
        # GPT-2's one <|endoftext|> is bos, eos and pad at once: it keeps its first role's name
        if token in tokens:
            renames.setdefault(token, ROLES[role])
    out = {renames.get(token, token): i for token, i in tokens.items()}
    if len(out) < len(tokens):
        clash = sorted(name for name in renames.values() if name in tokens
                       and name not in renames)
        raise TokenizerError([Diagnostic(
            "C313", f"{path}: the special tokens renamed to rasp-ir's names clash with "
            f"ordinary tokens of the same name: {clash}")])
    return out


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError([Diagnostic("C313", f"{path}: not readable as JSON ({exc})")]) \
            from None
    if not isinstance(data, dict):
        raise TokenizerError([Diagnostic("C313", f"{path}: a JSON {type(data).__name__}, "
                                         "not an object")])
    return data
