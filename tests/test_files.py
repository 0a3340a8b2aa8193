"""rasp_ir/files.py: every user-visible file is written atomically with ordinary permissions (a
new file 0666 minus the umask, an existing file keeps its mode), and a failed write leaves the
old file whole with no temporary file behind."""

from __future__ import annotations

import os
import stat

import pytest

from rasp_ir import cli
from rasp_ir import nodes as ir
from rasp_ir.files import atomic_write_bytes, atomic_write_text
from rasp_ir.tables import read_tables, write_tables

MESSY = ('@vocab {"a","b"};\nx=aggregate(select(indices,length-indices-1,==),tokens);'
         '\n@output   x;\n')


@pytest.fixture
def umask():
    """Set the process umask for one test (tests run in one thread) and restore it after."""
    old = os.umask(0o022)
    os.umask(old)

    def set_to(value: int) -> int:
        os.umask(value)
        return value
    yield set_to
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077, 0o002])
def test_a_new_file_gets_the_usual_permissions(tmp_path, umask, mask):
    umask(mask)
    target = tmp_path / "new.txt"
    atomic_write_text(target, "hello\n")
    assert target.read_text() == "hello\n"
    assert mode(target) == 0o666 & ~mask
    assert os.listdir(tmp_path) == ["new.txt"]


@pytest.mark.parametrize("kept", [0o644, 0o600, 0o640, 0o755])
def test_an_existing_file_keeps_its_mode(tmp_path, umask, kept):
    umask(0o077 if kept & 0o044 else 0o022)      # a umask that would give another mode
    target = tmp_path / "old.bin"
    target.write_bytes(b"old")
    os.chmod(target, kept)
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert mode(target) == kept


def test_text_is_utf8(tmp_path):
    target = tmp_path / "t.rasp"
    atomic_write_text(target, "é → ✓\n")
    assert target.read_bytes() == "é → ✓\n".encode()


@pytest.mark.parametrize("broken", ["fsync", "replace"])
def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch, broken):
    target = tmp_path / "keep.txt"
    target.write_text("the old text\n")
    os.chmod(target, 0o644)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, broken, fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "the new text, never seen\n")
    monkeypatch.undo()
    assert target.read_text() == "the old text\n"
    assert mode(target) == 0o644
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_a_failed_first_write_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O")))
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "never.bin", b"data")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_fmt_write_keeps_a_0644_file_0644(tmp_path, umask, capsys):
    umask(0o077)          # the old writer left every rewritten file 0600 whatever the umask
    target = tmp_path / "messy.rasp"
    target.write_text(MESSY)
    os.chmod(target, 0o644)
    assert cli.main(["fmt", "--write", str(target)]) == 0
    capsys.readouterr()
    assert target.read_text() != MESSY                     # it was rewritten ...
    assert mode(target) == 0o644                           # ... and kept its mode
    assert os.listdir(tmp_path) == ["messy.rasp"]


def test_a_new_side_file_gets_the_usual_permissions(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "p.tables.safetensors"
    table = ir.Matrix(("a", "b"), (0, 1), ((1.0, 0.0), (0.5, 2.0)), name="t")
    write_tables(path, {"t": table})
    assert mode(path) == 0o644
    assert read_tables(path)["t"].values == table.values
