"""rasp_ir/program_cache.py: a program read back from the cache is the program elaborated, an
edit or a damaged entry is never answered from the cache, programs that read other files are
not kept, and a cached `rasp run` does not load the parser."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys

import pytest

import grammar
from rasp_ir import program_cache
from rasp_ir.diagnostics import RaspError

from conftest import EXAMPLES, ROOT

PROGRAM = "@vocab V = {\"a\", \"b\", \"c\"};\n@maxlen 8;\nflip = tokens == \"a\";\n@output flip;\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("RASP_IR_CACHE", str(folder))
    return folder / "programs"


def entries(cache):
    return sorted(cache.glob("*.ir")) if cache.exists() else []


def test_a_program_read_back_is_the_program_elaborated(cache):
    path = EXAMPLES / "reverse.rasp"
    first = program_cache.load(path, grammar.elaborate)
    assert len(entries(cache)) == 1
    again = program_cache.load(path, grammar.elaborate)
    fresh = grammar.load(path)
    assert again == first == fresh
    assert again.source == fresh.source and again.predefined == fresh.predefined
    assert [b.span for b in again.bindings] == [b.span for b in fresh.bindings]


def test_an_edited_program_is_elaborated_again(cache, tmp_path):
    path = tmp_path / "p.rasp"
    path.write_text(PROGRAM)
    before = program_cache.load(path, grammar.elaborate)
    path.write_text(PROGRAM.replace('"a"', '"b"'))
    after = program_cache.load(path, grammar.elaborate)
    assert after == grammar.load(path) != before
    path.write_text(PROGRAM.replace("tokens", "tokenz"))
    with pytest.raises(RaspError) as info:
        program_cache.load(path, grammar.elaborate)
    assert info.value.codes == ["E250"]


def test_a_damaged_or_foreign_entry_is_recomputed(cache, tmp_path):
    path = tmp_path / "p.rasp"
    path.write_text(PROGRAM)
    expected = program_cache.load(path, grammar.elaborate)
    (entry,) = entries(cache)
    # a class outside the IR's own is never built (entries are not pickles)
    foreign = marshal.dumps(("n", "Popen", (("args", "touch /tmp/owned"),)))
    for damage in (entry.read_bytes()[:40], b"not an entry", b"", foreign):
        entry.write_bytes(damage)
        assert program_cache.load(path, grammar.elaborate) == expected
        assert entry.read_bytes() != damage          # rewritten whole


def test_the_same_text_under_another_name_is_another_entry(cache, tmp_path):
    for name in ("p.rasp", "q.rasp"):
        (tmp_path / name).write_text(PROGRAM)
        program = program_cache.load(tmp_path / name, grammar.elaborate)
        assert {b.span.file for b in program.bindings if b.span} == {str(tmp_path / name)}
    assert len(entries(cache)) == 2


def test_programs_that_read_other_files_are_not_kept(cache, tmp_path):
    (tmp_path / "helpers.rasp").write_text("is_a = tokens == \"a\";\n")
    (tmp_path / "p.rasp").write_text('load "helpers";\n@vocab V = {"a", "b"};\n@output is_a;\n')
    program_cache.load(tmp_path / "p.rasp", grammar.elaborate)
    assert entries(cache) == []


def test_no_cache_when_the_directory_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("RASP_IR_CACHE", "")
    assert program_cache.cache_dir() is None
    assert program_cache.load(EXAMPLES / "reverse.rasp", grammar.elaborate) == \
        grammar.load(EXAMPLES / "reverse.rasp")


def test_old_entries_are_removed(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(program_cache, "MAX_ENTRIES", 4)
    for i in range(6):
        path = tmp_path / f"p{i}.rasp"
        path.write_text(PROGRAM)
        program_cache.load(path, grammar.elaborate)
    assert 3 <= len(entries(cache)) <= 4


def test_a_cached_run_does_not_load_the_parser(cache):
    code = ("import sys; from rasp_ir.cli import main; main(['run', %r, 'bad']); "
            "print(sorted(m for m in ('lark', 'grammar') if m in sys.modules))"
            % str(EXAMPLES / "reverse.rasp"))
    env = {**os.environ, "RASP_IR_CACHE": str(cache.parent)}

    def run():
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=120).stdout.splitlines()
    assert run() == ["dab", "['grammar', 'lark']"]
    assert run() == ["dab", "[]"]


def test_check_reads_back_the_warnings_with_the_program(cache, tmp_path):
    path = tmp_path / "w.rasp"
    text = 'x = not tokens in ["h"];\ny = tokens;\nz = 2 ^ 3 ^ 2;\n@output y;\n'
    path.write_text(text)
    fresh = grammar.elaborate(text, str(path))
    first = program_cache.elaborate(text, str(path), path, grammar.elaborate)
    again = program_cache.elaborate(text, str(path), path, grammar.elaborate)
    assert len(entries(cache)) == 1
    assert first == again == fresh
    assert [d.code for d in again[1]] == ["W101", "W101"]
    assert program_cache.elaborate(text, "<stdin>", None, grammar.elaborate) == \
        grammar.elaborate(text, "<stdin>")
    assert len(entries(cache)) == 1                  # standard input is never kept
