"""Hugging Face: a compiled directory loads as what it is (AutoModelForCausalLM with its own
modeling file gives rasp-ir's logits) and never as a random GPT-2; the tokenizer files of
compiled and trained directories give AutoTokenizer rasp-ir's ids."""

import pytest
import torch
from conftest import EXAMPLES

from compiler.checkpoint import load_model
from compiler.compile import compile_program, load_compiled, save_compiled
from extractor.tasks.registry import get_task

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    import grammar
    directory = tmp_path_factory.mktemp("hf") / "sort"
    save_compiled(compile_program(grammar.load(EXAMPLES / "sort.rasp")), directory)
    return directory


def test_auto_model_gives_rasp_irs_logits(compiled):
    model, _ = load_model(compiled)
    ids = torch.randint(0, model.config.vocab_size, (4, model.config.n_positions),
                        generator=torch.Generator().manual_seed(0))
    hf = transformers.AutoModelForCausalLM.from_pretrained(compiled, trust_remote_code=True,
                                                           dtype="auto")
    assert next(hf.parameters()).dtype == torch.float64
    with torch.no_grad():
        assert torch.equal(hf(ids).logits, model(ids))
    hf32 = transformers.AutoModelForCausalLM.from_pretrained(compiled, trust_remote_code=True)
    with torch.no_grad():
        theirs = hf32(ids).logits.double()
    assert (theirs - model(ids)).abs().max() <= 1e-5 * max(1.0, model(ids).abs().max())


def test_gpt2_refuses_a_compiled_directory(compiled):
    with pytest.raises(Exception, match="trust_remote_code=True"):
        transformers.GPT2LMHeadModel.from_pretrained(compiled)
    with pytest.raises(ValueError, match="trust_remote_code"):
        transformers.AutoModelForCausalLM.from_pretrained(compiled, trust_remote_code=False)


def test_auto_tokenizer_of_a_compiled_directory(compiled):
    tok = transformers.AutoTokenizer.from_pretrained(compiled)
    vocab = load_compiled(compiled).vocab
    text = " ".join(str(t) for t in [vocab[0], *vocab[1:][::-1]])
    assert tok(text)["input_ids"] == list(range(len(vocab)))[:1] + list(
        range(len(vocab) - 1, 0, -1))
    assert tok.bos_token == "<compiler_bos>" and tok.bos_token_id == 0


def test_auto_tokenizer_of_a_trained_directory(tmp_path):
    from extractor.training.train import write_task_tokenizer
    task = get_task("bin_majority")
    write_task_tokenizer(tmp_path, task.vocab)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert tok("<bos> 1 0 1 <sep> 1 <eos>")["input_ids"] == task.vocab.ids(
        ["<bos>", "1", "0", "1", "<sep>", "1", "<eos>"])
    assert (tok.bos_token_id, tok.sep_token_id, tok.eos_token_id, tok.pad_token_id) == (
        task.vocab.bos, task.vocab.sep, task.vocab.eos, task.vocab.pad)
    assert tok.decode([0, 1, task.vocab.sep]) == "0 1 <sep>"
