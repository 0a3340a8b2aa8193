"""Hostile and careless input (issue 20): each attack ends in a coded diagnostic, exit status 1 or
2, no internal error and no traceback, and nothing of the user's changed.

One table per kind of input: programs, inputs, checkpoints, side-files, caches and options.
Each row is (name, how to build the attack in a temporary folder, the command, the code it
must produce). `run_attack` runs `rasp` in-process and checks the common promises; the caps
the attacks run into are in rasp_ir/limits.py (docs/limits.md).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from rasp_ir import limits
from rasp_ir.cli import main
from rasp_ir.diagnostics import CODES

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "examples" / "bin_majority"
REVERSE = ROOT / "examples" / "reverse.rasp"


def run_attack(capsys, argv: list[str], code: str, exit_status=(1, 2)):
    """Run `rasp argv`; the exit status is 1 or 2, stderr names `code`, no traceback and no
    internal error. Returns stderr."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert status in exit_status, (status, err[-2000:])
    assert "internal error" not in err and "Traceback" not in err, err[-2000:]
    assert f"[{code}]" in err, (code, err[-2000:])
    assert code in CODES
    return err


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes and mode: nothing of the user's may change."""
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- programs

def _deep_macros(n: int) -> str:
    text = "def f0(a) { return a; }\n"
    for i in range(1, n + 1):
        text += f"def f{i}(a) {{ return f{i - 1}(a); }}\n"
    return text + f"x = f{n}(tokens);\n@output x;\n"


PROGRAMS = [
    # (name, program text, code)
    ("exists with a list", "x = exists(1, []);\n", "E205"),
    ("balance with a dict", '@vocab {"a"};\nv = aggregate(select(tokens, tokens, ==), '
     'tokens);\nx = balance(v, {}, "a", 0.1);\n', "E205"),
    ("10,000 nested brackets", "x = " + "[" * 10_000 + "]" * 10_000 + ";\n", "E111"),
    ("chained + past the nesting cap", "x = tokens" + " + 1" * (limits.MAX_NESTING + 10) +
     ";\n", "E111"),
    ("200 nested macro calls", _deep_macros(200), "E243"),
    ("an integer of 5,000 digits", "x = " + "9" * 5000 + ";\n", "E111"),
    ("a range of 5,000 digits", "x = 0.." + "9" * 5000 + ";\n", "E111"),
    ("comprehension over range(10**8)", "x = [tokens + i for i in range(10**8)];\n", "E243"),
    ("loop over range(10**8)", "for i in range(10**8) { y = tokens + i; }\n", "E243"),
    ("nested loops 2000 x 2000", "for i in range(2000) { for j in range(2000) { y = i; } }\n",
     "E243"),
    ("string repeated 10**8 times", 'x = "a" * 10**8;\n', "E243"),
    ("list repeated 10**8 times", "x = [1] * 10**8;\n", "E243"),
    ("range literal of 10**9", "x = 0..1000000000;\n", "E243"),
    ("@vocab of 30,000 tokens", "@vocab {" + ",".join(f'"t{i}"' for i in range(30_000)) +
     "};\n", "E243"),
    ("@maxlen past the cap", f"@maxlen {limits.MAX_LEN + 1};\n", "E110"),
    ("escape bytes in the source", "x = tokens \x1b[31m+ 1;\n", "E104"),
]


@pytest.mark.parametrize("name,text,code", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_hostile_program(tmp_path, capsys, name, text, code):
    path = tmp_path / "p.rasp"
    path.write_text(text, encoding="utf-8")
    before = snapshot(tmp_path)
    started = time.monotonic()
    err = run_attack(capsys, ["check", path], code)
    assert time.monotonic() - started < 30, "a cap should stop it at once"
    assert "\x1b" not in err                   # control bytes are shown escaped
    assert snapshot(tmp_path) == before


def test_program_that_loads_itself(tmp_path, capsys):
    (tmp_path / "me.rasp").write_text('load "me";\nx = tokens;\n@output x;\n')
    run_attack(capsys, ["check", tmp_path / "me.rasp"], "E244")


def test_libraries_that_load_each_other(tmp_path, capsys):
    (tmp_path / "a.rasp").write_text('load "b";\n')
    (tmp_path / "b.rasp").write_text('load "a";\n')
    (tmp_path / "main.rasp").write_text('load "a";\nx = tokens;\n@output x;\n')
    run_attack(capsys, ["check", tmp_path / "main.rasp"], "E244")


def test_a_program_larger_than_the_cap_is_refused_at_once(tmp_path, capsys):
    """A 5 MB program: refused before it is parsed (MAX_PROGRAM_BYTES), in well under a
    second; /dev/zero is not read forever."""
    path = tmp_path / "big.rasp"
    line = 'x = tokens == "a" and indices < 3;\n'
    path.write_text(line * (5_000_000 // len(line)))
    started = time.monotonic()
    run_attack(capsys, ["check", path], "E111")
    assert time.monotonic() - started < 10
    if Path("/dev/zero").exists():
        run_attack(capsys, ["check", "/dev/zero"], "E111")


def test_diagnostics_are_capped(tmp_path, capsys):
    """A file with thousands of errors prints the first MAX_DIAGNOSTICS_SHOWN and a count."""
    path = tmp_path / "many.rasp"
    path.write_text("".join(f"x{i} = undefined_{i};\n" for i in range(2000)))
    err = run_attack(capsys, ["check", path], "E250")
    assert err.count("error[E250]") == limits.MAX_DIAGNOSTICS_SHOWN
    assert "more diagnostic(s) not shown" in err


def test_a_long_line_is_cut_around_the_caret(tmp_path, capsys):
    path = tmp_path / "long.rasp"
    path.write_text("x = tokens" + " + 1" * 5000 + " + nope;\n")
    err = run_attack(capsys, ["check", path], "E111")
    assert max(len(line) for line in err.splitlines()) < 400


# ---------------------------------------------------------------- inputs

INPUTS = [
    # (name, program (None: the compiled reverse model), input, code)
    ("empty JSON list", REVERSE, "[]", "R234"),
    ("empty string", REVERSE, "", "R234"),
    ("integer of 5,000 digits", REVERSE, "[" + "9" * 5000 + "]", "R233"),
    ("not a flat list", REVERSE, "[[1]]", "R233"),
    ("model: empty JSON list", None, "[]", "R234"),
    ("model: a path-like input", None, "a//./", "R233"),
    ("model: longer than maxlen", None, "a" * 100, "R233"),
]


@pytest.fixture(scope="module")
def compiled_reverse(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compiled") / "reverse"
    assert main(["compile", str(REVERSE), "-o", str(folder)]) == 0
    return folder


@pytest.mark.parametrize("name,program,text,code", INPUTS, ids=[i[0] for i in INPUTS])
def test_hostile_input(capsys, compiled_reverse, name, program, text, code):
    capsys.readouterr()
    argv = ["run", program, text] if program is not None else \
        ["run", "--model", compiled_reverse, text]
    run_attack(capsys, argv, code)


# ---------------------------------------------------------------- checkpoints

def _with_task(folder: Path, task: str) -> None:
    record = json.loads((folder / "task.json").read_text())
    record["task"] = task
    (folder / "task.json").write_text(json.dumps(record))


def _nan_weight(folder: Path) -> None:
    from safetensors.numpy import load_file, save_file
    tensors = load_file(folder / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].copy()
    tensors[name].reshape(-1)[0] = np.nan
    save_file(tensors, folder / "model.safetensors")


def _config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


CHECKPOINTS = [
    # (name, how to damage a copy of the shipped checkpoint, code)
    ("task.json names a Python file", lambda f: _with_task(f, "evil.py:Evil"), "T407"),
    ("task.json names a Python file by absolute path",
     lambda f: _with_task(f, str(f / "evil.py") + ":Evil"), "T407"),
    ("NaN weight", _nan_weight, "C315"),
    ("n_layer 100000", lambda f: _config(f, n_layer=100_000), "C306"),
    ("truncated weights", lambda f: (f / "model.safetensors").write_bytes(
        (f / "model.safetensors").read_bytes()[:1000]), "C303"),
    ("config.json not JSON", lambda f: (f / "config.json").write_text("{"), "C302"),
    ("task.json not JSON", lambda f: (f / "task.json").write_text("[1"), "T405"),
]


@pytest.mark.parametrize("name,damage,code", CHECKPOINTS, ids=[c[0] for c in CHECKPOINTS])
def test_hostile_checkpoint(tmp_path, capsys, monkeypatch, name, damage, code):
    folder = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, folder)
    marker = tmp_path / "RAN"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    damage(folder)
    monkeypatch.chdir(tmp_path)           # a relative evil.py would be found here
    before = snapshot(tmp_path)
    run_attack(capsys, ["eval", folder, "--n", "10"], code)
    assert not marker.exists(), "code named by the checkpoint ran"
    assert snapshot(tmp_path) == before


def test_folder_name_is_never_a_task_file(tmp_path, capsys, monkeypatch):
    """Without task.json the folder's name says the task: a name, never a file to run."""
    folder = tmp_path / "evil.py:Evil-1l"
    shutil.copytree(CHECKPOINT, folder)
    (folder / "task.json").unlink()
    marker = tmp_path / "RAN"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.chdir(tmp_path)
    run_attack(capsys, ["eval", folder.name], "T405")
    assert not marker.exists()


def test_task_on_the_command_line_still_runs(tmp_path, capsys):
    """--task FILE.py:Class is the user's own choice: it runs."""
    (tmp_path / "mine.py").write_text("from extractor.tasks.lm_tasks import LM_TASKS\n"
                                      "Mine = [t for t in LM_TASKS if t.name == 'bin_majority'][0]\n")
    status = main(["eval", str(CHECKPOINT), "--task", f"{tmp_path / 'mine.py'}:Mine",
                   "--n", "10"])
    assert status == 0, capsys.readouterr().err


COMPILED = [
    # (name, change to config.json's extra, code)
    ("extra not an object", 7, "C305"),
    ("compiled not an object", {"compiled": [1]}, "C305"),
    ("vocab of the wrong length", "vocab", "C305"),
    ("maxlen a string", "maxlen", "C305"),
]


@pytest.mark.parametrize("name,extra,code", COMPILED, ids=[c[0] for c in COMPILED])
def test_hostile_compiled_config(tmp_path, capsys, compiled_reverse, name, extra, code):
    folder = tmp_path / "model"
    shutil.copytree(compiled_reverse, folder)
    config = json.loads((folder / "config.json").read_text())
    if extra == "vocab":
        config["extra"]["compiled"]["vocab"] = ["a"]
    elif extra == "maxlen":
        config["extra"]["compiled"]["maxlen"] = "x"
    else:
        config["extra"] = extra
    (folder / "config.json").write_text(json.dumps(config))
    run_attack(capsys, ["run", "--model", folder, "ab"], code)


# ---------------------------------------------------------------- side-files

_SIDE_PROGRAM = '@vocab {"a","b"};\nt = project(inp=tokens, op=table("swap"));\n@output t;\n'


def _side(values, labels=None) -> bytes:
    from safetensors.numpy import save
    metadata = {"rasp_ir.labels": labels if isinstance(labels, str) else json.dumps(
        labels if labels is not None else {"swap": {"rows": ["a", "b"], "cols": ["a", "b"]}})}
    return save({"swap": np.asarray(values, dtype=np.float64)}, metadata=metadata)


_GOOD = _side([[0.0, 1.0], [1.0, 0.0]])
SIDE_FILES = [
    ("truncated", _GOOD[:len(_GOOD) // 2]),
    ("empty", b""),
    ("not safetensors", b"hello, not a side-file"),
    ("labels not JSON", _side(np.eye(2), "{nope")),
    ("labels a list", _side(np.eye(2), "[1, 2]")),
    ("three dimensions", _side(np.zeros((2, 2, 2)))),
    ("labels do not fit", _side(np.eye(2), {"swap": {"rows": ["a"], "cols": ["a", "b"]}})),
    ("labels not atoms", _side(np.eye(2), {"swap": {"rows": [{}, []], "cols": ["a", "b"]}})),
    ("NaN entries", _side([[np.nan, 1.0], [1.0, 0.0]])),
]


@pytest.mark.parametrize("name,data", SIDE_FILES, ids=[s[0] for s in SIDE_FILES])
def test_hostile_side_file(tmp_path, capsys, name, data):
    (tmp_path / "p.rasp").write_text(_SIDE_PROGRAM)
    (tmp_path / "p.tables.safetensors").write_bytes(data)
    before = snapshot(tmp_path)
    run_attack(capsys, ["run", tmp_path / "p.rasp", "ab"], "E254")
    assert snapshot(tmp_path) == before


def test_good_side_file_runs(tmp_path, capsys):
    (tmp_path / "p.rasp").write_text(_SIDE_PROGRAM)
    (tmp_path / "p.tables.safetensors").write_bytes(_GOOD)
    assert main(["run", str(tmp_path / "p.rasp"), "ab"]) == 0
    assert capsys.readouterr().out.strip() == "ba"


# ---------------------------------------------------------------- caches

def test_damaged_run_cache_entries_are_recomputed(tmp_path):
    """A truncated, foreign or hand-edited PROG.runs/ entry is recomputed, not trusted."""
    import torch

    from extractor.decompile.sweep import RunCache
    cache = RunCache(tmp_path / "p.runs")
    key = "0123456789abcdef"
    summary = {"lam": 0.1, "seed": 0, "stages": [{"stage": "s", "edges": 3, "match": {"0-5": 1.0},
                                                 "seconds": 1.0}]}

    class Spec:                       # what RunCache reads of a RunSpec
        def key(self):
            return key
    cache.put(Spec(), summary, {"flat": torch.zeros(3)})
    assert cache.get(Spec()) == summary
    tensors = tmp_path / "p.runs" / f"{key}.safetensors"
    good = tensors.read_bytes()
    tensors.write_bytes(good[:len(good) - 4])                 # truncated tensors
    assert cache.get(Spec()) is None
    tensors.write_bytes(good)
    (tmp_path / "p.runs" / f"{key}.json").write_text('{"lam": 0.1}')     # a summary cut short
    assert cache.get(Spec()) is None
    (tmp_path / "p.runs" / f"{key}.json").write_text("[1, 2")            # not JSON
    assert cache.get(Spec()) is None


# ---------------------------------------------------------------- options

OPTIONS = [
    ("compile --max-len -5", ["compile", REVERSE, "--max-len", "-5", "-o", "{tmp}/out"], "E110"),
    ("compile --max-len 10**9", ["compile", REVERSE, "--max-len", "1000000000", "-o",
                                 "{tmp}/out"], "E110"),
]


@pytest.mark.parametrize("name,argv,code", OPTIONS, ids=[o[0] for o in OPTIONS])
def test_hostile_option(tmp_path, capsys, name, argv, code):
    argv = [str(a).replace("{tmp}", str(tmp_path)) for a in argv]
    run_attack(capsys, argv, code)
    assert not (tmp_path / "out").exists()


def test_compile_onto_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    run_attack(capsys, ["compile", REVERSE, "-o", target], "C316")
    assert target.read_text() == "mine"


def test_written_files_keep_the_umask(tmp_path, capsys):
    """An output file is created as an ordinary write would create it (not 0600)."""
    old = os.umask(0o022)
    try:
        assert main(["compile", str(REVERSE), "-o", str(tmp_path / "m")]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    assert (tmp_path / "m" / "config.json").stat().st_mode & 0o777 == 0o644


def test_fmt_write_refuses_to_drop_a_binding(tmp_path, capsys):
    """`rasp fmt --simplify --write` once turned `keep = tokens; @output keep;` into
    `@output tokens;`: a rewrite that drops a binding is refused (exit 2), the file kept."""
    path = tmp_path / "alias.rasp"
    path.write_text("keep = tokens;\n@output keep;\n")
    assert main(["fmt", "--simplify", "--write", str(path)]) == 2
    assert "keep" in capsys.readouterr().err
    assert path.read_text() == "keep = tokens;\n@output keep;\n"
    assert main(["fmt", "--write", str(path)]) == 0      # layout only: nothing to drop
    assert path.read_text() == "keep = tokens;\n@output keep;\n"
