"""The `rasp` command line: run (plain and --json), check (exit codes, every diagnostic), and no
Python traceback for any user mistake (fmt: tests/test_fmt.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import grammar
from rasp_ir import cli

from conftest import EXAMPLES, ROOT

REVERSE = EXAMPLES / "reverse.rasp"
DRASP = EXAMPLES / "drasp_copy.rasp"


def rasp(*args, stdin=None):
    """The real command, as a user runs it: (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "rasp_ir.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, input=stdin, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def main(capsys, *args):
    """`rasp` in this process (faster): (exit status, stdout, stderr)."""
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


# ---------------------------------------------------------------- run

def test_run_reverses_hello():
    status, out, err = rasp("run", REVERSE, "hello")
    assert (status, out, err) == (0, "olleh\n", "")


def test_run_prints_one_line_per_input(capsys):
    status, out, _ = main(capsys, "run", REVERSE, "hello", "abc", "a")
    assert status == 0
    assert out.splitlines() == ["olleh", "cba", "a"]


def test_run_reads_inputs_from_stdin():
    status, out, _ = rasp("run", REVERSE, stdin="hello\nabc\n")
    assert status == 0 and out.splitlines() == ["olleh", "cba"]


def test_run_prints_numbers_as_json_lists(capsys):
    status, out, _ = main(capsys, "run", EXAMPLES / "frac_prevs.rasp", "hello")
    assert status == 0
    assert json.loads(out) == [0, 0, 0.333, 0.5, 0.4]


def test_json_has_one_object_per_input(capsys):
    status, out, _ = main(capsys, "run", REVERSE, "hello", '["a","b","c"]', "--json")
    assert status == 0
    records = [json.loads(line)["result"] for line in out.splitlines()]
    assert records == [
        {"input": list("hello"), "output": list("olleh")},
        {"input": ["a", "b", "c"], "output": ["c", "b", "a"]},
    ]


def test_json_keeps_none_and_numbers(capsys):
    status, out, _ = main(capsys, "run", EXAMPLES / "induction.rasp", "abcab", "--json")
    assert status == 0
    assert json.loads(out)["result"] == {"input": list("abcab"),
                                         "output": [None, None, None, "b", "c"]}
    status, out, _ = main(capsys, "run", EXAMPLES / "sort.rasp", "[2,4,1,2]", "--json")
    assert json.loads(out)["result"] == {"input": [2, 4, 1, 2], "output": [1, 2, 2, 4]}


def test_json_of_a_drasp_program_has_probs_over_the_vocabulary(capsys):
    program = grammar.load(DRASP)
    vocab = list(program.vocab)
    # rasp run prepends the BOS token the program declares
    status, out, _ = main(capsys, "run", DRASP, '["a","c","<sep>","a"]',
                          '["<bos>","b","<sep>"]', "--json")
    assert status == 0
    first, second = [json.loads(line)["result"] for line in out.splitlines()]
    assert first["input"] == ["<bos>", "a", "c", "<sep>", "a"]
    assert first["output"] == ["<bos>", "<bos>", "<bos>", "a", "c"]
    assert second["input"] == ["<bos>", "b", "<sep>"]
    assert second["output"] == ["<bos>", "<bos>", "b"]
    for record in (first, second):
        assert "logits" not in record             # softmax(...): probabilities
        assert len(record["probs"]) == len(record["input"])
        for row, best in zip(record["probs"], record["output"]):
            assert len(row) == len(vocab)
            assert vocab[row.index(max(row))] == best      # output is the argmax per position
            assert abs(sum(row) - 1) < 1e-6                 # softmax(...): a distribution


def test_json_of_a_hard_program_has_no_logits(capsys):
    _, out, _ = main(capsys, "run", EXAMPLES / "histogram.rasp", "abac", "--json")
    assert {"logits", "probs"}.isdisjoint(json.loads(out)["result"])


# ---------------------------------------------------------------- check

@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.rasp")), ids=lambda p: p.stem)
def test_check_accepts_every_example(capsys, path):
    status, out, err = main(capsys, "check", path)
    assert status == 0, err
    assert out.startswith("ok: ") and "@expect line(s) hold" in out
    assert "error" not in err


BAD = """\
x = selector_width(tokens);
y = nowhere + 1;
z = aggregate(tokens, tokens);
@output x;
"""


def test_check_reports_every_type_error_with_its_code(tmp_path):
    bad = tmp_path / "bad.rasp"
    bad.write_text(BAD)
    status, out, err = rasp("check", bad)
    assert status == 1
    assert out == ""
    for code, line in (("E224", 1), ("E250", 2), ("E220", 3)):
        assert f"error[{code}]" in err
        assert f"bad.rasp:{line}:" in err
    assert "3 error(s)" in err
    assert "Traceback" not in err


def test_check_reports_every_syntax_error(capsys, tmp_path):
    bad = tmp_path / "syntax.rasp"
    bad.write_text("x = = tokens;\ny = tokens + ;\nz = tokens\nw = 1;\n")
    status, _, err = main(capsys, "check", bad)
    assert status == 1
    assert [c for c in ("E103", "E101", "E102") if f"error[{c}]" in err] == ["E103", "E101",
                                                                             "E102"]


def test_check_reports_every_failing_expectation(capsys, tmp_path):
    bad = tmp_path / "expect.rasp"
    bad.write_text('@vocab {"a", "b"};\nx = tokens;\n@output x;\n'
                   '@expect x("ab") == "ab";\n@expect x("ab") == "ba";\n@expect x("a") == "b";\n')
    status, _, err = main(capsys, "check", bad)
    assert status == 1
    assert err.count("error[E271]") == 2
    assert "expect.rasp:5:" in err and "expect.rasp:6:" in err
    # --no-expect skips them
    status, out, _ = main(capsys, "check", bad, "--no-expect")
    assert status == 0 and out.startswith("ok: ")


def test_check_reports_a_runtime_error_in_an_expectation(capsys, tmp_path):
    bad = tmp_path / "mean.rasp"
    bad.write_text('@vocab {"a", "b"};\nx = aggregate(select(1, 1, ==), tokens);\n@output x;\n'
                   '@expect x("ab") == "ab";\n')
    status, _, err = main(capsys, "check", bad)
    assert status == 1 and "R230" in err


# fmt: tests/test_fmt.py


# ---------------------------------------------------------------- errors are diagnostics

@pytest.mark.parametrize("args, code", [
    (["run", "no/such/file.rasp", "abc"], "E252"),
    (["fmt", "no/such/file.rasp"], "E252"),
    (["run", REVERSE, "hellz"], "R233"),                       # token outside @vocab
    (["run", REVERSE, "a" * 17], "R233"),                      # longer than @maxlen
    (["run", REVERSE, "[1,"], "R233"),                         # not a JSON list
    (["run", REVERSE, "[]"], "R234"),                          # empty
    (["run", EXAMPLES / "sort_unique.rasp", "[1,1,2]"], None),  # fine: none in the gap
])
def test_errors_are_diagnostics_not_tracebacks(args, code):
    status, out, err = rasp(*args)
    assert "Traceback" not in err and "Traceback" not in out
    if code is None:
        assert status == 0
    else:
        assert status == 2 and code in err


def test_runtime_errors_are_diagnostics(tmp_path):
    prog = tmp_path / "mean.rasp"
    prog.write_text('@vocab {"a", "b"};\nx = aggregate(select(1, 1, ==), tokens);\n@output x;\n')
    status, _, err = rasp("run", prog, "ab")
    assert status == 2 and "runtime error[R230]" in err and "Traceback" not in err
    bad = tmp_path / "bad.rasp"
    bad.write_text(BAD)
    for command in (["run", bad, "ab"], ["fmt", bad], ["fmt", "--check", bad]):
        status, _, err = rasp(*command)
        assert status == 2 and "E224" in err and "Traceback" not in err
    status, _, err = rasp("check", tmp_path / "missing.rasp")
    assert status == 2 and "Traceback" not in err


def test_no_command_prints_help():
    status, out, err = rasp()
    assert status == 2 and "run" in err and "Traceback" not in err


def test_each_family_registers_the_commands_the_cli_lists_for_it():
    """`rasp COMMAND` imports only the family cli.FAMILIES names for COMMAND."""
    import argparse
    import importlib
    for family, commands in cli.FAMILIES.items():
        sub = argparse.ArgumentParser().add_subparsers(parser_class=argparse.ArgumentParser)
        importlib.import_module(f"rasp_ir.cli.{family}").add_commands(sub)
        assert tuple(sub.choices) == commands, family


def test_run_imports_no_other_command_family():
    code = ("import sys; from rasp_ir.cli import main; main(['run', %r, 'ab']); "
            "print(sorted(m for m in sys.modules if m.startswith('rasp_ir.cli.')))" % str(REVERSE))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120).stdout
    assert out.splitlines()[-1] == "['rasp_ir.cli.common', 'rasp_ir.cli.language']"


def test_help_before_a_command_lists_every_command():
    status, out, _ = rasp("-h", "run")
    assert status == 0 and "extract" in out and "compile" in out
