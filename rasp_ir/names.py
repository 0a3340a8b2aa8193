"""Names the .rasp language gives a meaning to: facts about the language, not about a parser,
so that every layer that makes up names (the parser's renaming, the passes' `rename`, the
extractor's generated names) avoids the same ones."""

from __future__ import annotations

# the words of the grammar (grammar/rasp.lark): never a name
KEYWORDS = frozenset({"and", "def", "else", "for", "if", "in", "lambda", "load", "not", "or",
                      "return"})

# names a program may not bind at its top level: the sources, constants and core builtins
RESERVED = frozenset({
    "tokens_asis", "tokens_str", "tokens_int", "tokens_float", "tokens_bool", "indices",
    "True", "False", "None", "select", "aggregate", "selector_width", "range", "zip", "len",
    "full_s", "length", "token", "pos",
})
