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
    ("@bos a mapping (the long fuzz run)", "@bos {};\n@maxlen 1;\n@output indices;\n",
     "E110"),
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


# ---------------------------------------------------------------- sizes (E306)

_BIG = '@vocab {"a","b"};\n@maxlen 65536;\n'
SIZES = [
    # (name, program, command after the file, code): each asked for gigabytes before a cap
    ("run: a selector over 20,000 positions",
     _BIG + "x = aggregate(select(indices, indices, ==), tokens);\n@output x;\n",
     ["run", "{file}", "a" * 20_000], "E306"),
    ("run: one-hot rows over 65,537 lengths at 20,000 positions",
     _BIG + "x = sharpen(length, 2);\n@output x;\n", ["run", "{file}", "a" * 20_000], "E306"),
    ("compile: a selector table of 65,536 x 65,536",
     _BIG + "x = aggregate(select(indices, indices, ==), tokens);\n@output x;\n",
     ["compile", "{file}", "-o", "{tmp}/out"], "E306"),
    ("compile: the position embedding of 65,537 positions",
     _BIG + "x = aggregate(select(tokens, tokens, ==), indices % 3);\n@output x;\n",
     ["compile", "{file}", "-o", "{tmp}/out"], "E306"),
    ("compile: a bare indices read over 65,536 positions",
     _BIG + "@output indices;\n", ["compile", "{file}", "-o", "{tmp}/out"], "E306"),
]


@pytest.mark.parametrize("name,text,argv,code", SIZES, ids=[s[0] for s in SIZES])
def test_hostile_size(tmp_path, capsys, name, text, argv, code):
    """Checked before allocating: the error names the size it would have needed."""
    path = tmp_path / "big.rasp"
    path.write_text(text)
    argv = [a.replace("{file}", str(path)).replace("{tmp}", str(tmp_path)) for a in argv]
    err = run_attack(capsys, argv, code)
    assert "GiB" in err and "MAX_TABLE_ENTRIES" in err
    assert "\n  --> " in err                      # a location, even for a bare `indices`
    assert not (tmp_path / "out").exists()


def test_sharpen_of_length_on_a_short_input_runs(tmp_path, capsys):
    """`sharpen(length, 2)` under @maxlen 65536 once asked np.eye for 32 GiB on one token; a
    one-hot row per position is 65,537 numbers, which runs."""
    path = tmp_path / "sharp.rasp"
    path.write_text(_BIG + "x = sharpen(length, 2);\n@output x;\n")
    assert main(["run", str(path), "a"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == "[1]"


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


def test_run_cache_entries_are_standard_json(tmp_path):
    """A summary holding a non-finite number (a diverged run's loss) is written as standard
    JSON, which other readers accept, and read back exactly."""
    import json
    import math

    import torch

    from extractor.decompile.sweep import RunCache
    cache = RunCache(tmp_path / "p.runs")
    summary = {"lam": 0.1, "kl": math.inf,
               "stages": [{"edges": 3, "match": {"0-5": 1.0}, "loss": -math.inf}]}

    class Spec:
        def key(self):
            return "fedcba9876543210"
    cache.put(Spec(), summary, {"flat": torch.zeros(3)})
    text = (tmp_path / "p.runs" / "fedcba9876543210.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON: {name}"))
    assert cache.get(Spec()) == summary


# ---------------------------------------------------------------- options

OPTIONS = [
    ("compile --max-len -5", ["compile", REVERSE, "--max-len", "-5", "-o", "{tmp}/out"], "E110"),
    ("compile --max-len 10**9", ["compile", REVERSE, "--max-len", "1000000000", "-o",
                                 "{tmp}/out"], "E110"),
    ("extract --early-stop -1", ["extract", ROOT / "examples" / "bin_majority",
                                 "--early-stop", "-1", "-o", "{tmp}/out/p.rasp"], "T404"),
    ("extract --answer-positions -1", ["extract", ROOT / "examples" / "bin_majority",
                                       "--answer-positions", "-1", "-o", "{tmp}/out/p.rasp"],
     "T404"),
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


def test_stdin_inputs_are_numbered_by_their_line(tmp_path, capsys, monkeypatch):
    """Blank lines are not inputs but they count: the bad input on line 3 is "input 3", also
    after `-` (inputs from standard input)."""
    import io
    import sys
    for argv in (["run", str(REVERSE)], ["run", str(REVERSE), "-"]):
        monkeypatch.setattr(sys, "stdin", io.StringIO("ab\n\n[[1]]\n\nba\n"))
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert "input 3 '[[1]]'" in err and "[R233]" in err
        assert out.split() == ["ba", "ab"]


def test_a_library_error_shows_the_library_line(tmp_path, capsys):
    (tmp_path / "lib3.rasp").write_text("# a library\n\n\nhelp3 = tokens / 0;\n")
    main_file = tmp_path / "main.rasp"
    main_file.write_text('load "lib3";\n@vocab {1, 2};\n@maxlen 3;\nx = help3;\n@output x;\n')
    err = run_attack(capsys, ["run", main_file, "[1]"], "R231")
    assert "lib3.rasp:4:9" in err and " 4 | help3 = tokens / 0;" in err
    assert "x = help3" not in err          # the main file's line 4 is not shown under it


# ---------------------------------------------------------------- JSON written


def test_config_json_is_standard_json(tmp_path, capsys):
    """An output value of 1e999 was written as `Infinity`, which JSON has not: it is
    {"float": "inf"} in config.json and reads back as the float."""
    path = tmp_path / "inf.rasp"
    path.write_text('@vocab {"a","b"};\n@maxlen 4;\nx = 1e999 if tokens == "a" else 0;\n'
                    "@output x;\n")
    assert main(["compile", str(path), "-o", str(tmp_path / "m")]) == 0

    def refuse(constant):
        raise ValueError(constant)
    for written in (tmp_path / "m").glob("*.json"):
        json.loads(written.read_text(), parse_constant=refuse)
    capsys.readouterr()
    assert main(["run", "--model", str(tmp_path / "m"), "ab"]) == 0
    assert capsys.readouterr().out.strip() == "[Infinity, 0]"


def test_non_finite_values_round_trip_through_standard_json():
    from rasp_ir.jsondata import decoded, dumps, json_safe
    value = {"v": [1.5, float("inf"), -float("inf"), "inf", None], "w": (float("nan"),)}
    text = dumps(value)
    assert "Infinity" not in text and "NaN" not in text
    back = decoded(json.loads(text))
    assert back["v"] == [1.5, float("inf"), -float("inf"), "inf", None]
    assert back["w"][0] != back["w"][0]                  # NaN
    assert json_safe(value) == {"v": [1.5, "inf", "-inf", "inf", None], "w": [None]}


# ---------------------------------------------------------------- outputs (C316)

_FIRST = '@vocab {"a","b"};\n@maxlen 4;\nx = aggregate(select(indices, 0, ==), tokens);\n' \
    "@output x;\n"


@pytest.fixture(scope="module")
def compiled_first(tmp_path_factory):
    folder = tmp_path_factory.mktemp("first")
    (folder / "first.rasp").write_text(_FIRST)
    assert main(["compile", str(folder / "first.rasp"), "-o", str(folder / "m")]) == 0
    return folder / "m"


def _hand_written(tmp: Path, model: Path) -> None:
    (tmp / "prog.rasp").write_text(_FIRST)


def _other_extraction(tmp: Path, model: Path) -> None:
    (tmp / "prog.rasp").write_text(_FIRST)
    (tmp / "prog.report.json").write_text(json.dumps({"checkpoint": str(tmp / "elsewhere")}))


def _edited_extraction(tmp: Path, model: Path) -> None:
    (tmp / "prog.report.json").write_text(json.dumps({"checkpoint": str(model)}))
    time.sleep(0.01)
    (tmp / "prog.rasp").write_text(_FIRST + "# mine\n")


def _fifo_report(tmp: Path, model: Path) -> None:
    (tmp / "prog.rasp").write_text(_FIRST)
    os.mkfifo(tmp / "prog.report.json")           # reading it would block forever


def _trained_checkpoint(tmp: Path, model: Path) -> None:
    shutil.copytree(CHECKPOINT, tmp / "out")


OUTPUTS = [
    # (name, what the place holds, command, code)
    ("extract over a hand-written program", _hand_written,
     ["extract", "{model}", "-o", "{tmp}/prog.rasp"], "C316"),
    ("extract over another checkpoint's extraction", _other_extraction,
     ["extract", "{model}", "-o", "{tmp}/prog.rasp"], "C316"),
    ("extract over a program edited since", _edited_extraction,
     ["extract", "{model}", "-o", "{tmp}/prog.rasp"], "C316"),
    ("extract beside a report that is a FIFO", _fifo_report,
     ["extract", "{model}", "-o", "{tmp}/prog.rasp"], "C316"),
    ("train over a trained checkpoint", _trained_checkpoint,
     ["train", "bin_majority", "--layers", "1", "--heads", "1", "--d-model", "8", "-o",
      "{tmp}/out"], "C316"),
    ("train over a compiled model", lambda tmp, model: shutil.copytree(model, tmp / "out"),
     ["train", "bin_majority", "--layers", "1", "--heads", "1", "--d-model", "8", "-o",
      "{tmp}/out"], "C316"),
    ("compile over a trained checkpoint", _trained_checkpoint,
     ["compile", REVERSE, "-o", "{tmp}/out"], "C316"),
]


@pytest.mark.parametrize("name,holds,argv,code", OUTPUTS, ids=[o[0] for o in OUTPUTS])
def test_hostile_output(tmp_path, capsys, compiled_first, name, holds, argv, code):
    """Refused before any work, everything there left as it was."""
    holds(tmp_path, compiled_first)
    before = snapshot(tmp_path)           # files only: a FIFO is not read
    argv = [str(a).replace("{tmp}", str(tmp_path)).replace("{model}", str(compiled_first))
            for a in argv]
    started = time.monotonic()
    run_attack(capsys, argv, code)
    assert time.monotonic() - started < 60
    assert snapshot(tmp_path) == before


def test_extract_rerun_removes_what_only_the_earlier_run_wrote(tmp_path, capsys,
                                                                compiled_first):
    """A rerun on the same checkpoint is allowed; a side-file and a page the earlier run left
    (which this one does not write) are removed, the cache kept. --force writes over another
    checkpoint's extraction."""
    target = tmp_path / "prog.rasp"
    argv = ["extract", str(compiled_first), "-o", str(target)]
    assert main(argv) == 0, capsys.readouterr().err
    (tmp_path / "prog.tables.safetensors").write_bytes(_GOOD)
    (tmp_path / "prog.html").write_text("<p>old</p>")
    (tmp_path / "keep.txt").write_text("mine")
    assert main(argv) == 0, capsys.readouterr().err
    assert not (tmp_path / "prog.tables.safetensors").exists()
    assert not (tmp_path / "prog.html").exists()
    assert (tmp_path / "keep.txt").read_text() == "mine" and target.exists()
    report = json.loads((tmp_path / "prog.report.json").read_text())
    (tmp_path / "prog.report.json").write_text(json.dumps({**report, "checkpoint": "other"}))
    assert main(argv) == 2
    assert "[C316]" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0


def test_extract_rerun_from_another_directory(tmp_path, capsys, compiled_first, monkeypatch):
    """The report names the checkpoint by its absolute path, so a rerun given another
    relative path to the same checkpoint, from another directory, is still a rerun."""
    monkeypatch.chdir(compiled_first.parent)
    assert main(["extract", compiled_first.name, "-o", str(tmp_path / "prog.rasp")]) == 0, \
        capsys.readouterr().err
    report = json.loads((tmp_path / "prog.report.json").read_text())
    assert report["checkpoint"] == str(compiled_first.resolve())
    monkeypatch.chdir(tmp_path)
    again = ["extract", os.path.relpath(compiled_first, tmp_path), "-o", "prog.rasp"]
    assert main(again) == 0, capsys.readouterr().err

def test_compile_rerun_and_forced_write_keep_one_model(tmp_path, capsys):
    """compile over a trained checkpoint with --force: its task.json and acc.txt go."""
    shutil.copytree(CHECKPOINT, tmp_path / "out")
    assert main(["compile", str(REVERSE), "-o", str(tmp_path / "out"), "--force"]) == 0
    assert not (tmp_path / "out" / "task.json").exists()
    assert not (tmp_path / "out" / "acc.txt").exists()
    assert main(["compile", str(REVERSE), "-o", str(tmp_path / "out")]) == 0    # a rerun


def test_progress_estimates_early_and_in_days():
    """`equiv --bound 10**12` runs (the bound is the user's explicit request for a proof) and
    says at once how long it would take: the first estimate after FIRST_ESTIMATE seconds,
    long ones in days."""
    import io

    from rasp_ir.cli import progress as P
    assert P._clock(10**8) == "1,157 days"
    stream = io.StringIO()
    bar = P.Progress("equiv", stream=stream)
    bar("exhaustive inputs: length 1", done=2, total=549_755_813_886)
    bar._counted = bar._counted[:1] + (bar._counted[1] - P.FIRST_ESTIMATE,) + \
        bar._counted[2:]
    bar("exhaustive inputs: length 14", done=26_622, total=549_755_813_886)
    lines = stream.getvalue().splitlines()
    assert "2/549,755,813,886" in lines[0]
    assert len(lines) == 2 and "days left" in lines[1]
