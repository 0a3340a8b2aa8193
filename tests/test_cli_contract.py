"""The command line's conventions (docs/cli.md): options anywhere, usage errors, exit codes,
standard input, --version, `python -m rasp_ir`; one JSON envelope for every command, validated
against docs/cli.schema.json; progress display; the messages of `rasp extract`; the Python
API."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conftest import EXAMPLES, ROOT
from rasp_ir import cli
from rasp_ir.cli.common import emit_json, json_safe
from rasp_ir.cli.progress import Progress

REVERSE = EXAMPLES / "reverse.rasp"
SCHEMA = json.loads((ROOT / "docs" / "cli.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def rasp(*args, stdin=None, module="rasp_ir"):
    """The real command: (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, input=stdin, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def main(capsys, *args):
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def envelopes(out: str) -> list[dict]:
    """Every line of --json output, each checked against the schema."""
    records = [json.loads(line) for line in out.splitlines()]
    assert records, "no JSON printed"
    for record in records:
        VALIDATOR.validate(record)
    return records


# ---------------------------------------------------------------- conventions

def test_options_go_anywhere_among_positionals(capsys):
    status, out, _ = main(capsys, "run", REVERSE, "--json", "hello", "abc")
    assert status == 0
    assert [r["result"]["output"] for r in envelopes(out)] == [list("olleh"), list("cba")]
    assert main(capsys, "check", "--no-expect", REVERSE, EXAMPLES / "sort.rasp")[0] == 0


def test_run_model_takes_options_after_inputs(capsys, tmp_path):
    model = tmp_path / "m"
    assert main(capsys, "compile", REVERSE, "-o", model)[0] == 0
    status, out, _ = main(capsys, "run", "--model", model, "hello", "--json", "abc")
    assert status == 0
    assert [r["result"]["output"] for r in envelopes(out)] == [list("olleh"), list("cba")]


def test_a_usage_error_shows_the_subcommands_usage():
    status, out, err = rasp("run", REVERSE, "hello", "--bogus")
    assert status == 2 and out == ""
    assert err.startswith("usage: rasp run ") and "unrecognized arguments: --bogus" in err
    status, _, err = rasp("verify", REVERSE)                 # a missing positional
    assert status == 2 and err.startswith("usage: rasp verify ")


def test_version_and_python_dash_m():
    from importlib import metadata
    status, out, _ = rasp("--version")
    assert status == 0 and out == f"rasp {metadata.version('rasp-ir')}\n"
    assert rasp("run", REVERSE, "hello")[:2] == (0, "olleh\n")
    assert rasp("run", REVERSE, "hello", module="rasp_ir.cli")[:2] == (0, "olleh\n")


def test_no_command_is_a_usage_error():
    status, _, err = rasp()
    assert status == 2 and "COMMAND" in err


def test_exit_codes(capsys, tmp_path):
    bad = tmp_path / "bad.rasp"
    bad.write_text("x = nowhere;\n@output x;\n")
    assert main(capsys, "check", REVERSE)[0] == 0
    assert main(capsys, "check", bad)[0] == 1                   # a finding: a failed check
    assert main(capsys, "run", bad, "ab")[0] == 2                # an input error
    assert main(capsys, "run", tmp_path / "missing.rasp", "ab")[0] == 2
    assert main(capsys, "run", REVERSE, "hellz")[0] == 2


def test_check_takes_many_files_and_reports_each(capsys, tmp_path):
    bad = tmp_path / "bad.rasp"
    bad.write_text("x = nowhere;\n@output x;\n")
    status, out, err = main(capsys, "check", REVERSE, bad, EXAMPLES / "sort.rasp")
    assert status == 1
    assert out.count("ok: ") == 2 and "bad.rasp: 1 error(s)" in err


def test_standard_input_as_the_program():
    source = REVERSE.read_text()
    assert rasp("run", "-", "hello", "abc", stdin=source)[:2] == (0, "olleh\ncba\n")
    status, out, _ = rasp("check", "-", stdin=source)
    assert status == 0 and out.startswith("ok: <stdin>:")
    status, out, _ = rasp("fmt", "-", stdin=source)
    assert status == 0 and "reverse" in out
    status, _, err = rasp("check", "-", stdin="x = = 1;\n")
    assert status == 1 and "<stdin>:1:" in err
    status, _, err = rasp("run", "-", stdin=source)            # inputs cannot also be piped
    assert status == 2 and "INPUT" in err


# ---------------------------------------------------------------- the JSON contract

def test_run_json_reports_a_failing_input_and_goes_on(capsys):
    status, out, _ = main(capsys, "run", REVERSE, "hello", "hellz", "[1,", "abc", "--json")
    assert status == 2
    records = envelopes(out)
    assert [r["status"] for r in records] == ["ok", "error", "error", "ok"]
    assert records[1]["result"] == {"input": "hellz"}
    assert records[1]["diagnostics"][0]["code"] == "R233"
    assert records[3]["result"]["output"] == list("cba")


def test_softmax_outputs_are_probs_and_logits_outputs_logits(capsys, tmp_path):
    _, out, _ = main(capsys, "run", EXAMPLES / "drasp_copy.rasp", '["a","c","<sep>","a"]',
                     "--json")
    [record] = envelopes(out)
    assert "probs" in record["result"] and "logits" not in record["result"]
    assert all(abs(sum(row) - 1) < 1e-6 for row in record["result"]["probs"])
    raw = tmp_path / "raw.rasp"
    raw.write_text('@vocab {"a", "b"};\n@maxlen 4;\nx = project(inp=tokens, op=(inp == out));\n'
                   '@output x;\n')
    status, out, err = main(capsys, "run", raw, "ab", "--json")
    assert status == 0, err
    [record] = envelopes(out)
    assert "logits" in record["result"] and "probs" not in record["result"]


def test_check_json_lists_diagnostics(capsys, tmp_path):
    bad = tmp_path / "bad.rasp"
    bad.write_text("x = selector_width(tokens);\ny = nowhere + 1;\n@output x;\n")
    status, out, _ = main(capsys, "check", REVERSE, bad, "--json")
    assert status == 1
    [record] = envelopes(out)
    assert record["status"] == "finding"
    assert [f["ok"] for f in record["result"]["files"]] == [True, False]
    codes = {(d["code"], d["file"], d["line"]) for d in record["diagnostics"]}
    assert ("E224", str(bad), 1) in codes and ("E250", str(bad), 2) in codes
    for d in record["diagnostics"]:
        assert d["column"] >= 1 and d["message"]


def test_an_input_error_gives_an_error_envelope(capsys, tmp_path):
    status, out, _ = main(capsys, "compile", tmp_path / "missing.rasp", "-o", tmp_path / "m",
                          "--json")
    assert status == 2
    [record] = envelopes(out)
    assert record["status"] == "error" and record["result"] is None
    assert record["diagnostics"][0]["code"] == "E252"


def test_every_command_has_json_that_fits_the_schema(capsys, tmp_path):
    model = tmp_path / "model"
    cases = [
        ("run", [REVERSE, "hello"]),
        ("check", [REVERSE]),
        ("fmt", [REVERSE]),
        ("fmt", ["--check", REVERSE]),
        ("compile", [REVERSE, "-o", model]),
        ("run", ["--model", model, "hello"]),
        ("tasks", []),
        ("eval", [EXAMPLES / "bin_majority", "--n", "20", "--quiet"]),
        ("equiv", [REVERSE, REVERSE, "--bound", "200", "--examples", "20", "--quiet"]),
        ("verify", [REVERSE, model, "--bound", "200", "--examples", "20", "--max-len", "4",
                    "--quiet"]),
        ("extract", [model, "--stage", "full", "-o", tmp_path / "x.rasp", "--quiet"]),
        ("train", ["bin_majority", "--layers", "1", "--heads", "1", "--d-model", "8",
                   "--steps", "10", "--eval-every", "10", "--n", "10", "-o", tmp_path / "t",
                   "--quiet"]),
        ("draw", [REVERSE, "abc", "-o", tmp_path / "flow.dot"]),
        ("report", [tmp_path / "x.rasp", "-o", tmp_path / "x.html"]),
        ("attention", [EXAMPLES / "bin_majority", "1 0 1 <sep>", "-o", tmp_path / "a.html"]),
    ]
    pictures = importlib.util.find_spec("matplotlib") is not None    # the viz extra
    seen = set() if pictures else {"report", "attention"}
    for command, args in cases:
        if command in ("report", "attention") and not pictures:
            continue
        status, out, err = main(capsys, command, *args, "--json")
        assert status == 0, (command, err)
        records = envelopes(out)
        assert {r["command"] for r in records} == {command}
        seen.add(command)
    parser = cli.build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    # every command but the interactive REPL (export and predict: tests/test_export.py and
    # tests/test_predict.py validate theirs)
    assert seen | {"export", "predict"} == commands - {"repl"}


def test_every_command_has_a_typed_result_in_the_schema():
    """Each command's result has its own definition in docs/cli.schema.json, which closes
    every object it names (no field goes unlisted)."""
    typed = set()
    for rule in SCHEMA["allOf"]:
        command = rule["if"]["properties"]["command"]
        ref = rule["then"]["properties"].get("result", {}).get("$ref")
        if ref:
            typed |= set(command.get("enum", [command.get("const")]))
    commands = set(cli.build_parser()._subparsers._group_actions[0].choices)
    assert typed == commands - {"repl"}


def test_differences_fit_the_schema(capsys, tmp_path):
    """equiv's and verify's counterexamples, and their status "finding"."""
    same = tmp_path / "same.rasp"
    same.write_text(REVERSE.read_text().replace("@output reverse;", "@output tokens;")
                    .replace('@expect reverse("hello") == "olleh";\n', "")
                    .replace('@expect reverse("abc") == "cba";\n', ""))
    status, out, err = main(capsys, "equiv", REVERSE, same, "--bound", "50", "--examples", "5",
                            "--max-len", "3", "--quiet", "--json")
    assert status == 1, err
    [record] = envelopes(out)
    assert record["status"] == "finding" and record["result"]["counterexample"]["input"]
    model = tmp_path / "model"
    assert main(capsys, "compile", REVERSE, "-o", model)[0] == 0
    status, out, err = main(capsys, "verify", same, model, "--bound", "50", "--examples", "5",
                            "--max-len", "3", "--quiet", "--json")
    assert status == 1, err
    [record] = envelopes(out)
    assert record["status"] == "finding" and record["result"]["counterexample"]["found_in"]


def test_every_registered_command_has_json_and_long_ones_quiet():
    """Commands other modules add go through the same registration (common.add_command)."""
    for name, parser in cli.build_parser()._subparsers._group_actions[0].choices.items():
        options = {o for action in parser._actions for o in action.option_strings}
        assert name == "repl" or "--json" in options, name
        if name in ("extract", "train", "eval", "verify", "equiv"):
            assert {"-q", "--quiet"} <= options, name


def test_json_is_standard(capsys):
    assert json_safe([float("nan"), float("inf"), -float("inf"), 1.5, (1, 2)]) == \
        [None, "inf", "-inf", 1.5, [1, 2]]
    emit_json("eval", {"checkpoint": "c", "task": "t", "mode": "lm", "sequences_per_bucket": 1,
                       "seed": 0, "buckets": {"0-50": float("nan")}, "recorded": None})
    out = capsys.readouterr().out
    assert "NaN" not in out and json.loads(out)["result"]["buckets"]["0-50"] is None
    envelopes(out)


# ---------------------------------------------------------------- progress

def test_progress_is_log_lines_off_a_terminal_and_nothing_when_quiet():
    stream = io.StringIO()
    progress = Progress("extract", stream=stream)
    progress("estimating LayerNorm scales")
    for i in range(1, 4):
        progress(f"pruning run: λ={i}", done=i, total=3)
    bar = progress.bar(10, "eval", "seq")
    bar.update(10)
    bar.close()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and "\033" not in stream.getvalue()
    assert lines[0].endswith("extract: estimating LayerNorm scales")
    assert any("pruning run 1/3: λ=1" in line for line in lines)
    assert any("pruning run 3/3: λ=3" in line for line in lines)
    assert any("eval 10/10 seq" in line for line in lines)
    assert all(line.startswith("[") for line in lines)          # elapsed time first
    quiet = io.StringIO()
    progress = Progress("extract", quiet=True, stream=quiet)
    progress("anything")
    progress("run: x", done=1, total=2)
    progress.bar(3, "eval").update(3)
    assert quiet.getvalue() == ""


def test_eval_progress_goes_to_stderr_only(capsys):
    status, out, err = main(capsys, "eval", EXAMPLES / "bin_majority", "--n", "20")
    assert status == 0 and "60/60 seq" in err             # 3 buckets of 20
    assert "60/60" not in out
    status, _, err = main(capsys, "eval", EXAMPLES / "bin_majority", "--n", "20", "--quiet")
    assert err == ""


# ---------------------------------------------------------------- true messages (extract)

def test_the_final_line_names_only_files_written(tmp_path):
    import inspect

    from rasp_ir.cli.extraction import _beside
    output = tmp_path / "p.rasp"

    class Args:                       # `_beside(args, report)` or `_beside(output, report)`
        pass
    Args.output = output
    first = Args if next(iter(inspect.signature(_beside).parameters)) == "args" else output
    (tmp_path / "p.tables.safetensors").write_bytes(b"left by an earlier extraction")

    class Report:
        files = [str(output), str(tmp_path / "p.report.json")]
    assert _beside(first, Report) == "report: p.report.json"
    Report.files = [str(tmp_path / "p.tables.safetensors")] + Report.files
    assert _beside(first, Report) == "tables: p.tables.safetensors, report: p.report.json"


def test_extract_lists_the_files_it_wrote(capsys, tmp_path):
    model = tmp_path / "model"
    assert main(capsys, "compile", REVERSE, "-o", model, "--max-len", "4")[0] == 0
    out = tmp_path / "x.rasp"
    status, text, _ = main(capsys, "extract", model, "--stage", "full", "-o", out, "--quiet",
                           "--json")
    assert status == 0
    report = envelopes(text)[0]["result"]
    assert all(Path(f).exists() for f in report["files"])
    assert report["files"][-2:] == [str(out), str(out.with_suffix(".report.json"))]
    tables = out.with_suffix(".tables.safetensors")
    assert (str(tables) in report["files"]) == tables.exists()


# ---------------------------------------------------------------- the Python API

def test_the_python_api(tmp_path):
    import rasp_ir
    program = rasp_ir.load(REVERSE)
    assert [r.output for r in rasp_ir.run(program, ["hello", ["a", "b"]])] == \
        [list("olleh"), ["b", "a"]]
    assert rasp_ir.run(REVERSE.read_text(), ["ab"])[0].output == ["b", "a"]
    compiled = rasp_ir.compile(REVERSE, output=tmp_path / "m")
    assert compiled.run([list("abc")]) == [["c", "b", "a"]]
    assert (tmp_path / "m" / "config.json").exists()
    assert rasp_ir.equivalent(program, REVERSE, bound=500, examples=10).equal
    check = rasp_ir.verify(program, tmp_path / "m", bound=200, examples=10, max_len=4)
    assert check.matches
    extracted = rasp_ir.extract(tmp_path / "m", tmp_path / "x.rasp", stage="full")
    assert rasp_ir.run(extracted.program, [[compiled.vocab[0], "a", "b"]])[0].output[1:] == \
        ["b", "a"] or extracted.report.stage == "full"
    for name in rasp_ir.__all__:
        assert getattr(rasp_ir, name).__doc__
    with pytest.raises(AttributeError):
        rasp_ir.no_such_function


def test_importing_rasp_ir_loads_nothing_heavy():
    code = ("import sys, rasp_ir; rasp_ir.version; "
            "print(sorted(m for m in ('grammar', 'numpy', 'torch', 'lark') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- verify agrees with extract

@pytest.mark.slow
def test_verify_reports_the_match_extract_reported(capsys, tmp_path):
    """On the shipped checkpoint: the quick extraction's held-out match per bucket is what
    `rasp verify` measures on the same task data (same n, same seed), and verify finds the
    program agreeing with the model where the task scores on generated prompts too."""
    out = tmp_path / "bm.rasp"
    status, text, err = main(capsys, "extract", EXAMPLES / "bin_majority", "--quick", "-o", out,
                             "--quiet", "--json")
    assert status == 0, err
    report = envelopes(text)[0]["result"]
    extracted = {b: r["match"] for b, r in report["evaluation"]["buckets"].items()}
    n = report["evaluation"]["sequences_per_bucket"]
    status, text, err = main(capsys, "verify", out, EXAMPLES / "bin_majority", "--n", n,
                             "--quiet", "--json")
    result = envelopes(text)[0]["result"]
    verified = {b: r["match"] for b, r in result["task_data"].items()}
    assert verified == pytest.approx(extracted, abs=1e-12)
    assert "<sep>" in result["comparison"]
    if min(extracted.values()) == 1.0:
        generated = [b["match"] for b in result["generated"].values()]
        assert min(generated) > 0.5, result
