"""Program text as coloured HTML, one block per statement, so that a page can link a
statement to its pictures and back."""

from __future__ import annotations

import re

from rasp_ir.viz.page import esc

KEYWORDS = {"def", "return", "for", "in", "if", "else", "and", "or", "not", "True", "False",
            "None", "load", "lambda"}

_TOKEN = re.compile(r"""(?P<com>\#[^\n]*)
    |(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<dir>@[A-Za-z_]\w*)
    |(?P<num>\b\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b)
    |(?P<word>[A-Za-z_]\w*)(?P<call>\s*\()?
    """, re.X)
_START = re.compile(r"^([A-Za-z_]\w*)\s*=(?!=)")


def colour(line: str) -> str:
    """One line of RASP as HTML with spans for comments, strings, directives, numbers,
    keywords and called functions."""
    out, last = [], 0
    for m in _TOKEN.finditer(line):
        out.append(esc(line[last:m.start()]))
        kind = m.lastgroup if m.lastgroup != "call" else "word"
        text = m.group(kind)
        if kind == "word":
            if text in KEYWORDS:
                out.append(f'<span class="kw">{esc(text)}</span>')
            elif m.group("call"):
                out.append(f'<span class="fn">{esc(text)}</span>')
            else:
                out.append(esc(text))
            if m.group("call"):
                out.append(esc(m.group("call")))
        else:
            out.append(f'<span class="{kind}">{esc(text)}</span>')
        last = m.end()
    out.append(esc(line[last:]))
    return "".join(out)


def statements(text: str) -> list[tuple[str | None, list[str]]]:
    """The text cut into blocks: (binding name, lines) for each top-level statement `name =
    …;` with the comment lines right above it, (None, lines) for everything else."""
    blocks: list[tuple[str | None, list[str]]] = []
    pending: list[str] = []          # comment lines waiting for the statement below them
    current: tuple[str, list[str]] | None = None
    depth = 0
    for line in text.splitlines():
        code = _code(line)
        if current is None:
            m = _START.match(line)
            if m and depth == 0:
                current = (m.group(1), pending + [line])
                pending = []
            elif line.lstrip().startswith("#") and depth == 0:
                pending.append(line)
                continue
            else:
                blocks.extend((None, [p]) for p in pending)
                pending = []
                depth += _depth(code)
                blocks.append((None, [line]))
                continue
        else:
            current[1].append(line)
        depth += _depth(code)
        if depth <= 0 and code.rstrip().endswith(";"):
            blocks.append(current)
            current, depth = None, 0
    if current is not None:
        blocks.append(current)
    blocks.extend((None, [p]) for p in pending)
    return blocks


def _code(line: str) -> str:
    """The line without strings and comments (brackets inside them do not count)."""
    return re.sub(r"#[^\n]*", "", re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', line))


def _depth(code: str) -> int:
    return sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")


def program_html(text: str, links: dict[str, list[tuple[str, str]]] | None = None,
                 prefix: str = "stmt-") -> str:
    """The program as a <pre>: each statement a block with id `prefix + name`, followed by
    links to its pictures (`links`: name -> [(figure id, label)])."""
    links = links or {}
    parts = []
    for name, lines in statements(text):
        body = "\n".join(colour(line) for line in lines) or " "
        if name is None:
            parts.append(f'<span class="stmt">{body}</span>')
            continue
        body = re.sub(rf"^({re.escape(esc(name))})(\s*=)", r'<span class="name">\1</span>\2',
                      body, count=1, flags=re.M) if not lines[0].lstrip().startswith("#") \
            else body
        targets = " ".join(f'<a href="#{esc(fig)}">{esc(label)}</a>'
                           for fig, label in links.get(name, []))
        # the links on a line of their own under the statement (long lines scroll)
        under = f'\n<span class="links">↳ pictures: {targets}</span>' if targets else ""
        parts.append(f'<span class="stmt" id="{esc(prefix + name)}">{body}{under}</span>')
    return '<pre class="program">' + "".join(parts) + "</pre>"
