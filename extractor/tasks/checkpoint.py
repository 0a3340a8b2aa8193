"""Which task a checkpoint was trained on, and whether the checkpoint fits it.

A checkpoint trained by `rasp train` carries `task.json` (the task, its mode and vocabulary,
training record and accuracy). The paper's checkpoints carry nothing, but their folder names
start with the task: `bce_tomita4-@2l2h16d3lr01drop` is tomita4 in next-token-set mode.

Token ids follow the task's layout (extractor/tasks/vocabulary.py) unless the checkpoint has a
`tokenizer.json`: then its vocabulary says which id each of the task's tokens has, and a
different order is mapped onto the task's by permuting the embedding and unembedding.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from attrs import frozen

from extractor.tasks.base import Task
from extractor.tasks.registry import get_task, recorded_task
from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.files import atomic_write_text

TASK_FILE = "task.json"


@frozen
class Subject:
    """A model to extract, with the names of its inputs and outputs."""
    model: object                 # compiler.transformer.Transformer
    tokens: tuple                 # name of each token id
    outputs: tuple                # label of each logit
    prediction: str | None        # "softmax", "sigmoid" or None (the output is the logits)
    task: object | None           # extractor.tasks.base.Task (None for compiled models)
    kind: str                     # "trained" or "compiled"
    bos: str | None = None        # the token every input starts with


def load_subject(directory: str | Path, task_spec: str | None = None) -> Subject:
    """A trained checkpoint (with its task) or a model directory written by `rasp compile`."""
    from compiler.checkpoint import load_model
    directory = Path(directory)
    model, metadata = load_model(directory)       # read once, whichever kind it is
    if (metadata.get("extra") or {}).get("compiled"):
        from compiler.compile import compiled_from
        if task_spec is not None:
            raise RaspError([Diagnostic("T406", f"{directory} is a compiled program; --task "
                                        "applies to trained checkpoints only")])
        compiled = compiled_from(model, metadata, directory)
        vocab = tuple(compiled.vocab)
        if any(not isinstance(v, str) for v in vocab):
            # the compiler's BOS is a string; an IR vocabulary holds one type of token
            vocab = tuple(str(v) for v in vocab)
        d_out = model.config.d_vocab_out
        outputs = tuple(compiled.output_values) if compiled.output_values is not None \
            else tuple(range(d_out))
        return Subject(model, vocab, outputs, compiled.output_function, None, "compiled",
                       vocab[0])
    task = task_for(model, metadata, directory, task_spec)
    tokens = tuple(task.vocab.tokens)
    prediction = "softmax" if task.mode == "lm" else "sigmoid"
    return Subject(model.eval(), tokens, tokens, prediction, task, "trained",
                   tokens[task.vocab.bos])


def read_task_file(directory: Path) -> dict | None:
    path = directory / TASK_FILE
    if not path.is_file():
        return None
    try:
        from rasp_ir.jsondata import decoded
        data = decoded(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RaspError([Diagnostic("T405", f"{path}: not readable as JSON ({exc})")]) from None
    if not isinstance(data, dict) or not isinstance(data.get("task"), str):
        raise RaspError([Diagnostic("T405", f"{path}: expected an object with a 'task' name")])
    return data


def task_spec(directory: Path, config_json: dict) -> tuple[str, dict | None]:
    """(task spec, task.json contents or None) for a checkpoint directory."""
    recorded = read_task_file(directory)
    if recorded is not None:
        return recorded["task"], recorded
    prefix = directory.resolve().name.split("-")[0]
    try:
        if not re.fullmatch(r"[A-Za-z0-9_]+", prefix):   # a name, never a file to read or run
            raise RaspError([])
        task = get_task(prefix)
    except RaspError:
        raise RaspError([Diagnostic(
            "T405", f"{directory}: cannot tell which task this checkpoint was trained on",
            note=f"it has no {TASK_FILE}, and its folder name does not start with a task "
            f"name ('{prefix}')", hint="pass --task NAME")]) from None
    bce_model = "GPT2BCELMHeadModel" in (config_json.get("architectures") or [])
    if task.mode == "bce" and not (prefix.lower().startswith("bce_") or bce_model):
        # The paper's plain formal-language names (e.g. `tomita4-…`) mean recognition mode.
        raise RaspError([Diagnostic(
            "T405", f"{directory}: '{prefix}' names the paper's recognition mode (accept/reject "
            "after <sep>), which is not implemented; only next-token-set (bce_) models are",
            hint=f"pass --task {task.name} if this model predicts next-token sets")])
    return prefix, None


def check_fits(model, task: Task, directory: Path, recorded: dict | None) -> None:
    """RaspError T403 naming every way the model does not fit the task."""
    problems = []
    c = model.config
    if c.vocab_size != len(task.vocab) or c.d_vocab_out != len(task.vocab):
        problems.append(f"the model's vocabulary has {c.vocab_size} tokens; task {task.name} "
                        f"has {len(task.vocab)} ({_preview(task.vocab.tokens)})")
    if recorded is not None:
        if recorded.get("mode", task.mode) != task.mode:
            problems.append(f"the model was trained in mode '{recorded['mode']}', task "
                            f"{task.name} is in mode '{task.mode}'")
        vocab = recorded.get("vocab")
        if isinstance(vocab, list) and vocab != list(task.vocab.tokens):
            diff = next((i for i, (a, b) in enumerate(zip(vocab, task.vocab.tokens))
                         if a != b), min(len(vocab), len(task.vocab)))
            problems.append(f"the model's vocabulary ({_preview(vocab)}) differs from task "
                            f"{task.name}'s ({_preview(task.vocab.tokens)}) at id {diff}")
    if problems:
        raise RaspError([Diagnostic("T403", f"{directory}: {p}") for p in problems])


def _preview(tokens, limit: int = 8) -> str:
    tokens = list(tokens)
    shown = ", ".join(map(str, tokens[:limit]))
    return shown + (f", … {len(tokens) - limit} more" if len(tokens) > limit else "")


def checkpoint_folders(directory: Path, only: str | None = None) -> list[Path]:
    """The checkpoint directories (those with a config.json) in `directory`, sorted; `only`
    keeps the names starting with one of its comma-separated prefixes."""
    folders = sorted(p for p in Path(directory).iterdir() if (p / "config.json").is_file())
    if only:
        folders = [p for p in folders if p.name.startswith(tuple(only.split(",")))]
    return folders


def load_with_task(directory: str | Path, spec: str | None = None):
    """(model, task) for a checkpoint directory; the task is `spec` if given, else the one
    the checkpoint records or its folder name says. Raises CheckpointError or RaspError
    (T401-T405) with a message that names the problem."""
    from compiler.checkpoint import load_model
    directory = Path(directory)
    model, metadata = load_model(directory)
    return model, task_for(model, metadata, directory, spec)


def task_for(model, metadata: dict, directory: Path, spec: str | None = None) -> Task:
    """The task of a checkpoint already loaded by `load_model`, checked against the model
    (see `load_with_task`)."""
    recorded = read_task_file(directory)
    if spec is None:      # named by the directory, not by the user: no code runs (T407)
        spec, recorded = task_spec(directory, metadata["config_json"])
        where = directory / TASK_FILE if recorded is not None else f"{directory}'s name"
        task = recorded_task(spec, directory, str(where))
    else:
        task = get_task(spec)
    map_tokenizer(model, task, directory)
    check_fits(model, task, directory, recorded)
    return task


def map_tokenizer(model, task: Task, directory: Path) -> bool:
    """Put the model's token ids in the task's order when DIR/tokenizer.json orders them
    differently (rows of W_E, columns of W_U and b_U permuted in place). True if it did.
    Raises RaspError T403 naming the tokens the tokenizer and the task do not share, and C313
    for an unreadable tokenizer file."""
    import torch

    from compiler.tokenizer import TOKENIZER, read_vocabulary
    vocab = read_vocabulary(directory)
    if vocab is None:
        return False
    path = Path(directory) / TOKENIZER
    tokens = list(task.vocab.tokens)
    missing = [t for t in tokens if t not in vocab]
    extra = sorted((t for t in vocab if t not in set(tokens)), key=vocab.get)
    problems = []
    if missing:
        problems.append(f"task {task.name}'s tokens {missing} are not in the tokenizer's "
                        "vocabulary")
    if extra:
        problems.append(f"the tokenizer's tokens {extra} are not in task {task.name}'s "
                        f"vocabulary ({_preview(tokens)})")
    c = model.config
    beyond = sorted(t for t, i in vocab.items() if i >= min(c.vocab_size, c.d_vocab_out))
    if beyond:
        problems.append(f"the tokenizer gives {beyond} ids beyond the model's "
                        f"{min(c.vocab_size, c.d_vocab_out)} tokens")
    if problems:
        hint = ("special tokens are matched by role (special_tokens_map.json: bos_token, "
                "sep_token, eos_token, pad_token); a tokenizer-only token such as [UNK] can be "
                "added to a JSON Lines task's header vocab")
        raise RaspError([Diagnostic("T403", f"{path}: {p}", hint=hint) for p in problems])
    order = [vocab[t] for t in tokens]          # the model's id of the task's token i
    if order == list(range(len(tokens))) or len(tokens) != c.vocab_size:
        return False                            # a size mismatch is check_fits' to report
    index = torch.tensor(order)
    with torch.no_grad():
        model.embed.W_E.copy_(model.embed.W_E[index].clone())
        model.unembed.W_U.copy_(model.unembed.W_U[:, index].clone())
        model.unembed.b_U.copy_(model.unembed.b_U[index].clone())
    return True


def write_task_file(directory: Path, task: Task, record: dict) -> Path:
    """Write task.json: the task's metadata plus `record` (training settings, accuracy)."""
    path = Path(directory) / TASK_FILE
    from rasp_ir.jsondata import dumps
    # standard JSON: a diverged training's NaN loss is {"float": "nan"}, read back by
    # read_task_file
    atomic_write_text(path, dumps({**task.metadata(), **record}, indent=2) + "\n")
    return path


def recorded_accuracy(directory: str | Path) -> dict[str, float] | None:
    """{bucket: accuracy} from a checkpoint's acc.txt (the paper's format), or None."""
    path = Path(directory) / "acc.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = re.findall(r"eval_len(\d+-\d+)_acc:\s*([0-9.eE+-]+)", text)
    return {bucket: float(value) for bucket, value in found} or None
