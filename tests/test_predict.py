"""`rasp predict`: per-position predictions of trained (lm and bce) and compiled models, scored
positions, a program beside the model and the positions where they differ."""

import json

import pytest
from conftest import EXAMPLES, SHARED

from rasp_ir.cli import main

TOMITA4 = SHARED / "checkpoints" / "bce_tomita4-@2l2h16d3lr01drop"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def envelope(out):
    record = json.loads(out)
    assert record["command"] == "predict"
    return record["result"]


@pytest.fixture(scope="module")
def reverse(tmp_path_factory):
    directory = tmp_path_factory.mktemp("predict") / "reverse"
    assert main(["compile", str(EXAMPLES / "reverse.rasp"), "-o", str(directory)]) == 0
    return directory


def test_a_next_token_model(capsys):
    code, out, _ = run(capsys, "predict", EXAMPLES / "bin_majority", "1 1 0 1 <sep>",
                       "<bos> 0 0 1 <sep>", "--json")
    result = envelope(out)
    assert code == 0 and result["kind"] == "trained" and result["mode"] == "lm"
    first, second = result["predictions"]
    assert first["tokens"] == ["<bos>", "1", "1", "0", "1", "<sep>"]
    assert first["scored"] == [False] * 5 + [True] and first["model"][-1] == "1"
    assert second["model"][-1] == "0" and result["predictions"][0]["program"] is None
    code, out, _ = run(capsys, "predict", EXAMPLES / "bin_majority", "1 1 0 1 <sep>")
    assert code == 0 and "*5" in out and "<sep>" in out


@pytest.mark.skipif(not TOMITA4.is_dir(), reason="the paper's checkpoints are not here")
def test_a_next_token_set_model(capsys):
    code, out, _ = run(capsys, "predict", TOMITA4, "0 1 1 0 <eos>", "--json")
    assert code == 0
    [p] = envelope(out)["predictions"]
    assert p["scored"] == [True] * 5 + [False]
    assert all(isinstance(s, list) for s in p["model"])


def test_a_compiled_model_beside_its_program(capsys, reverse, tmp_path):
    code, out, _ = run(capsys, "predict", reverse, "hello", "--program",
                       EXAMPLES / "reverse.rasp", "--json")
    [p] = envelope(out)["predictions"]
    assert code == 0 and p["model"] == p["program"] == list("olleh") and p["differs_at"] == []
    wrong = tmp_path / "wrong.rasp"
    wrong.write_text((EXAMPLES / "reverse.rasp").read_text().replace(
        "length - indices - 1", "indices"))
    code, out, _ = run(capsys, "predict", reverse, "hello", "--program", wrong, "--json")
    [p] = envelope(out)["predictions"]
    assert code == 1 and p["program"] == list("hello") and p["differs_at"] == [0, 1, 3, 4]
    code, out, _ = run(capsys, "predict", reverse, "hello", "--program", wrong)
    assert code == 1 and "<- differs" in out and "4 scored" in out


def test_bad_inputs_are_input_errors(capsys, reverse):
    code, _, err = run(capsys, "predict", EXAMPLES / "bin_majority", "1 2 <sep>")
    assert code == 2 and "R233" in err and "'2'" in err
    code, _, err = run(capsys, "predict", reverse, "h" * 40)
    assert code == 2 and "R233" in err


def test_predict_and_export_json_fit_the_schema(capsys, reverse, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    from conftest import ROOT
    validator = jsonschema.Draft202012Validator(
        json.loads((ROOT / "docs" / "cli.schema.json").read_text()))
    cases = [("predict", [EXAMPLES / "bin_majority", "1 0 <sep>"]),
             ("predict", [reverse, "abc", "--program", EXAMPLES / "reverse.rasp"]),
             ("export", [reverse, "--to", "transformer-lens", "-o", tmp_path / "tl"]),
             ("export", [EXAMPLES / "bin_majority", "--to", "hugging-face", "-o",
                         tmp_path / "hf"])]
    for command, args in cases:
        code, out, _ = run(capsys, command, *args, "--json")
        record = json.loads(out)
        assert code == 0 and record["command"] == command
        validator.validate(record)
