"""Tokenizer files (compiler/tokenizer.py) without `transformers`: written by `rasp train` and
`rasp compile`, read back, a different order mapped onto the task's, disagreeing tokens and
malformed files refused by name."""

import json

import pytest
from conftest import EXAMPLES

from compiler.checkpoint import load_model
from compiler.tokenizer import TokenizerError, read_vocabulary, write_tokenizer
from extractor.tasks.checkpoint import load_with_task
from extractor.tasks.evaluate import evaluate
from rasp_ir.diagnostics import RaspError


def copy_checkpoint(source, target):
    target.mkdir()
    for path in source.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


def test_written_and_read_back(tmp_path):
    write_tokenizer(tmp_path, ["a", 3, "<bos>"], {"bos_token": "<bos>"}, 10)
    assert read_vocabulary(tmp_path) == {"a": 0, "3": 1, "<bos>": 2}
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    assert data["model"]["type"] == "WordLevel" and data["added_tokens"][0]["id"] == 2
    assert read_vocabulary(tmp_path / "nothing") is None


def test_special_tokens_are_read_by_role(tmp_path):
    write_tokenizer(tmp_path, ["[S]", "x", "[E]"], {"bos_token": "[S]", "eos_token": "[E]"})
    assert read_vocabulary(tmp_path) == {"<bos>": 0, "x": 1, "<eos>": 2}


def test_compile_and_train_write_tokenizers(tmp_path, capsys):
    from rasp_ir.cli import main
    assert main(["compile", str(EXAMPLES / "reverse.rasp"), "-o", str(tmp_path / "r")]) == 0
    vocab = read_vocabulary(tmp_path / "r")
    # the compiler's BOS is the bos_token: read under the name tasks give it
    assert vocab["<bos>"] == 0 and len(vocab) == load_model(tmp_path / "r")[
        0].config.vocab_size
    assert main(["train", "bin_majority", "--layers", "1", "--heads", "1", "--d-model", "8",
                 "--steps", "5", "--eval-every", "5", "--n", "5", "-o", str(tmp_path / "t"),
                 "--quiet"]) == 0
    assert read_vocabulary(tmp_path / "t") == {
        t: i for i, t in enumerate(["0", "1", "<bos>", "<sep>", "<eos>", "<pad>"])}
    capsys.readouterr()


def test_a_different_order_is_mapped_onto_the_task(tmp_path):
    # bin_majority's weights with its tokens renumbered specials first, as a tokenizer says
    from safetensors.torch import load_file, save_file
    source = copy_checkpoint(EXAMPLES / "bin_majority", tmp_path / "shuffled")
    (source / "task.json").unlink()             # the task comes from --task, as for a user's
    order = ["<pad>", "<bos>", "<sep>", "<eos>", "1", "0"]    # new id -> token
    task_ids = {t: i for i, t in enumerate(["0", "1", "<bos>", "<sep>", "<eos>", "<pad>"])}
    index = [task_ids[t] for t in order]
    weights = load_file(source / "model.safetensors")
    weights["transformer.wte.weight"] = weights["transformer.wte.weight"][index].contiguous()
    save_file(weights, source / "model.safetensors", metadata={"format": "pt"})
    model, task = load_with_task(source, "bin_majority")
    buckets = [(0, 20)]
    wrong = evaluate(model, task, buckets, n=100)
    write_tokenizer(source, order, {"bos_token": "<bos>", "sep_token": "<sep>",
                                    "eos_token": "<eos>", "pad_token": "<pad>"})
    model, task = load_with_task(source, "bin_majority")
    original, _ = load_with_task(EXAMPLES / "bin_majority")
    assert evaluate(model, task, buckets, n=100) == evaluate(original, task, buckets, n=100)
    assert wrong["0-20"] < 0.9


def test_disagreeing_tokens_are_named(tmp_path):
    source = copy_checkpoint(EXAMPLES / "bin_majority", tmp_path / "bm")
    write_tokenizer(source, ["0", "x", "<bos>", "<sep>", "<eos>", "[UNK]"],
                    {"bos_token": "<bos>"})
    with pytest.raises(RaspError) as error:
        load_with_task(source)
    text = " ".join(d.message for d in error.value.diagnostics)
    assert error.value.codes == ["T403", "T403"]
    assert "'1'" in text and "'<pad>'" in text and "'x'" in text and "'[UNK]'" in text
    assert "tokenizer.json" in text


@pytest.mark.parametrize("content, field", [
    ("{", "not readable as JSON"),
    ('{"model": {"type": "WordLevel"}}', "model.vocab"),
    ('{"model": {"vocab": {"a": -1}}}', "model.vocab"),
    ('{"model": {"vocab": {"a": 0, "b": 0}}}', "model.vocab"),
    ('{"model": {"vocab": {"a": 0}}, "added_tokens": [{"content": "a", "id": 1}]}',
     "added_tokens"),
])
def test_malformed_tokenizer_files(tmp_path, content, field):
    (tmp_path / "tokenizer.json").write_text(content)
    with pytest.raises(TokenizerError) as error:
        read_vocabulary(tmp_path)
    [d] = error.value.diagnostics
    assert d.code == "C313" and field in d.message and "tokenizer.json" in d.message


def test_a_malformed_tokenizer_is_a_clean_cli_error(tmp_path, capsys):
    from rasp_ir.cli import main
    source = copy_checkpoint(EXAMPLES / "bin_majority", tmp_path / "bm")
    (source / "special_tokens_map.json").write_text('{"bos_token": 3}')
    (source / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    assert main(["eval", str(source), "--n", "5"]) == 2
    err = capsys.readouterr().err
    assert "C313" in err and "bos_token" in err and "Traceback" not in err
