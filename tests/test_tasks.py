"""Task generators: the paper's token ids, labels checked against membership tests written
independently here (regular expressions and counters, not the automata of
extractor/tasks/formal_languages.py), lengths in range, offsets within the positions, seeding, the
registry's spellings, JSON Lines files and user-defined tasks."""

import itertools
import json
import re
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest

from extractor.tasks.registry import get_task, register, task_names
from extractor.tasks.base import IGNORE, PromptAnswerTask
from rasp_ir.diagnostics import RaspError

from conftest import SHARED

LM_NAMES = ["bin_majority", "majority", "bin_majority_interleave", "unique_copy",
            "unique_reverse", "sort", "unique_bigram_copy", "repeat_copy", "count", "parity",
            "addition"]
LANGUAGE_NAMES = ["tomita1", "tomita2", "tomita3", "tomita4", "tomita5", "tomita6", "tomita7",
                  "D2", "D3", "D4", "D12", "aastar", "aaaastar", "ababstar", "abcde", "ab_d_bc",
                  "012_0_2"]


# ------------------------------------------------------------------ vocabularies

# the paper's token layout (docs/extractor.md, Tasks): (vocabulary size, first symbols, <bos> id)
VOCABS = {
    "bin_majority": (6, ["0", "1"], 2), "parity": (6, ["0", "1"], 2),
    "bin_majority_interleave": (6, ["0", "1"], 2), "majority": (30, ["a", "b"], 26),
    "unique_copy": (154, ["0", "1", "2"], 150), "sort": (154, ["0", "1"], 150),
    "unique_reverse": (154, ["0"], 150), "count": (154, ["0", "1"], 150),
    "unique_bigram_copy": (20, ["0", "1"], 16), "repeat_copy": (6, ["a", "b"], 2),
    "addition": (7, ["0", "1", "+"], 3), "tomita3": (6, ["0", "1"], 2), "D12": (6, ["a", "b"], 2),
    "aastar": (5, ["a"], 1), "aaaastar": (5, ["a"], 1), "abcde": (9, list("abcde"), 5),
    "ab_d_bc": (8, list("abcd"), 4), "012_0_2": (7, ["0", "1", "2"], 3),
}


@pytest.mark.parametrize("name", sorted(VOCABS))
def test_vocabulary_matches_the_paper(name):
    size, first, bos = VOCABS[name]
    v = get_task(name).vocab
    assert len(v) == size and list(v.tokens[:len(first)]) == first
    assert (v.bos, v.sep, v.eos, v.pad) == (bos, bos + 1, bos + 2, bos + 3)
    assert v.tokens[bos:] == ("<bos>", "<sep>", "<eos>", "<pad>")


@pytest.mark.skipif(not (SHARED / "checkpoints").is_dir(), reason="no shared checkpoints")
def test_vocabulary_and_positions_fit_every_shared_checkpoint():
    for folder in sorted((SHARED / "checkpoints").iterdir()):
        config = json.loads((folder / "config.json").read_text())
        task = get_task(folder.name.split("-")[0])
        assert config["vocab_size"] == len(task.vocab), folder.name
        assert config["n_positions"] == task.n_positions, folder.name


def test_registry_lists_every_task_of_the_paper():
    assert set(LM_NAMES + LANGUAGE_NAMES) <= set(task_names())


# ------------------------------------------------------------------ formal languages

def _runs_ok(word: str) -> bool:
    """Tomita 3 by runs: no odd run of 1s directly followed by an odd run of 0s."""
    runs = [(c, len(list(g))) for c, g in itertools.groupby(word)]
    return not any(a == ("1", a[1]) and a[1] % 2 and b[0] == "0" and b[1] % 2
                   for a, b in zip(runs, runs[1:]))


def _dyck(depth):
    def member(word):
        level = 0
        for c in word:
            level += 1 if c == "a" else -1
            if not 0 <= level <= depth:
                return False
        return level == 0
    return member


MEMBERS = {
    "tomita1": lambda w: re.fullmatch("1*", w) is not None,
    "tomita2": lambda w: re.fullmatch("(10)*", w) is not None,
    "tomita3": _runs_ok,
    "tomita4": lambda w: "000" not in w,
    "tomita5": lambda w: w.count("0") % 2 == 0 and w.count("1") % 2 == 0,
    "tomita6": lambda w: (w.count("0") - w.count("1")) % 3 == 0,
    "tomita7": lambda w: re.fullmatch("0*1*0*1*", w) is not None,
    "aastar": lambda w: re.fullmatch("(aa)*", w) is not None,
    "aaaastar": lambda w: re.fullmatch("(aaaa)*", w) is not None,
    "ababstar": lambda w: re.fullmatch("(abab)*", w) is not None,
    "abcde": lambda w: re.fullmatch("a+b+c+d+e+", w) is not None,
    "ab_d_bc": lambda w: re.fullmatch("[ab]*d[bc]*", w) is not None,
    "012_0_2": lambda w: re.fullmatch("[012]*02*", w) is not None,
    **{f"D{n}": _dyck(n) for n in (2, 3, 4, 12)},
}


def _viable(name: str, sigma: tuple, prefix: str) -> bool:
    """Whether some word of the language starts with prefix: a counter for Dyck languages,
    else a search over completions of up to 4 symbols (enough for every language here)."""
    if name.startswith("D"):
        depth, level = int(name[1:]), 0
        for c in prefix:
            level += 1 if c == "a" else -1
            if not 0 <= level <= depth:
                return False
        return True
    return _viable_search(name, sigma, prefix)


@lru_cache(maxsize=None)
def _viable_search(name, sigma, prefix):
    member = MEMBERS[name]
    return any(member(prefix + "".join(w)) for k in range(5)
               for w in itertools.product(sigma, repeat=k))


def _check_labels(name, task, word):
    v, sigma = task.vocab, tuple(task.language.sigma)
    rows = task.labels(word)
    assert not rows[-1].any()                         # the <eos> row is not scored
    for i in range(len(word) + 1):
        prefix = word[:i]
        expected = {s for s in sigma if _viable(name, sigma, prefix + s)}
        if MEMBERS[name](prefix):
            expected.add("<eos>")
        assert set(v.names(np.flatnonzero(rows[i]))) == expected, (name, prefix)


@pytest.mark.parametrize("name", LANGUAGE_NAMES)
def test_samples_are_words_and_labels_agree_with_membership(name):
    task = get_task(name)
    member = MEMBERS[name]
    rng = np.random.default_rng(1)
    for lo, hi in [(0, 12), (13, 30), (101, 150)]:
        for _ in range(40):
            e = task.sample(rng, lo, hi, offset=False)
            word = "".join(task.vocab.names(e.tokens[1:-1]))
            assert member(word), (name, word)
            assert max(lo, 1) <= len(word) <= hi and e.length == len(word)
            if len(word) <= 30:
                _check_labels(name, task, word)


@pytest.mark.parametrize("name", ["tomita3", "tomita5", "tomita7", "D3", "abcde", "012_0_2"])
def test_labels_of_every_short_prefix_agree_with_membership(name):
    # Not only sampled words: every string over the alphabet that is a viable prefix.
    task = get_task(name)
    sigma = tuple(task.language.sigma)
    for k in range(7 if len(sigma) <= 3 else 5):
        for letters in itertools.product(sigma, repeat=k):
            word = "".join(letters)
            if _viable(name, sigma, word):
                _check_labels(name, task, word)


def test_formal_language_lengths_follow_the_paper():
    assert get_task("tomita2").lengths(0, 6) == [2, 4, 6]
    assert get_task("tomita6").lengths(0, 9) == [3, 5, 7, 9]     # the paper's sampler's quirk
    assert get_task("aaaastar").lengths(0, 12) == [4, 8, 12]
    assert get_task("abcde").lengths(0, 7) == [5, 6, 7]
    assert get_task("tomita1").lengths(0, 3) == [1, 2, 3]       # the empty word is never drawn


# ------------------------------------------------------------------ language-modelling tasks

def _parts(task, e):
    """(prompt names, answer names, scored answer names) of an example."""
    names = task.vocab.names(e.tokens)
    sep = names.index("<sep>", 1)
    scored = [task.vocab.tokens[t] for t in e.targets if t != IGNORE]
    return names[1:sep], names[sep + 1:], scored


def _answer_ok(name, prompt, answer):
    if name == "bin_majority":
        c = Counter(prompt)
        return c["0"] != c["1"] and answer == [max("01", key=c.__getitem__)]
    if name == "majority":
        (top, k), *rest = Counter(prompt).most_common() + [(None, 0)]
        return rest[0][1] < k and answer == [top]
    if name == "bin_majority_interleave":
        streams = [prompt[i::3] for i in range(3)]
        return answer == [max("01", key=s.count) for s in streams] + ["<eos>"] and all(
            s.count("0") != s.count("1") for s in streams)
    if name == "unique_copy":
        return len(set(prompt)) == len(prompt) and answer == prompt + ["<eos>"]
    if name == "unique_reverse":
        return len(set(prompt)) == len(prompt) and answer == prompt[::-1] + ["<eos>"]
    if name == "sort":
        return answer == sorted(prompt, key=int) + ["<eos>"]
    if name == "unique_bigram_copy":
        bigrams = list(zip(prompt, prompt[1:]))
        return len(set(bigrams)) == len(bigrams) and answer == prompt + ["<eos>"]
    if name == "repeat_copy":
        return answer == prompt + ["<eos>"]
    if name == "count":
        start, end = map(int, prompt)
        return answer == [str(i) for i in range(start, end + 1)] + ["<eos>"]
    if name == "parity":
        return answer == [str(prompt.count("1") % 2)]
    if name == "addition":
        a, b = "".join(prompt).split("+")
        return answer == list(bin(int(a, 2) + int(b, 2))[2:]) + ["<eos>"]
    raise AssertionError(name)


def _length(name, prompt):
    return len(prompt) if name != "count" else int(prompt[1]) - int(prompt[0]) + 1


@pytest.mark.parametrize("name", LM_NAMES)
def test_answers_are_right_and_only_the_answer_is_scored(name):
    task = get_task(name)
    rng = np.random.default_rng(2)
    for lo, hi in task.test_buckets:
        for _ in range(30):
            e = task.sample(rng, lo, hi, offset=True)
            prompt, answer, scored = _parts(task, e)
            assert _answer_ok(name, prompt, answer), (name, prompt, answer)
            assert scored == answer
            assert lo <= e.length <= hi and _length(name, prompt) == e.length
            assert e.length >= task.min_length
            assert e.positions[-1] < task.n_positions and e.offset >= 0


@pytest.mark.parametrize("name", LM_NAMES + LANGUAGE_NAMES)
def test_lengths_fill_the_range_and_offsets_stay_within_the_positions(name):
    task = get_task(name)
    rng = np.random.default_rng(3)
    examples = [task.sample(rng, 0, 50, offset=True) for _ in range(400)]
    lengths = [e.length for e in examples]
    valid = task.lengths(0, 50)
    assert set(lengths) <= set(valid) and len(set(lengths)) > len(valid) // 2
    assert max(e.positions[-1] for e in examples) < task.n_positions
    assert max(e.offset for e in examples) > 20                    # offsets are really drawn
    longest = [task.sample(rng, 150, 150, offset=True) for _ in range(10)] if \
        task.lengths(150, 150) else []
    assert all(e.positions[-1] < task.n_positions for e in longest)


@pytest.mark.parametrize("name", ["bin_majority", "unique_bigram_copy", "tomita3", "D4"])
def test_same_seed_same_data(name):
    task = get_task(name)

    def tokens(seed):
        return [e.tokens.tolist() for e in task.evaluation_set(51, 100, 20, seed)]

    assert tokens(0) == tokens(0) and tokens(0) != tokens(1)
    assert all(e.offset == 0 for e in task.evaluation_set(0, 50, 20))
    stream_a, stream_b = task.training_stream(5), get_task(name).training_stream(5)
    for _ in range(10):
        a, b = next(stream_a), next(stream_b)
        assert a.tokens.tolist() == b.tokens.tolist() and a.offset == b.offset
    # a bucket's set does not depend on which other buckets were drawn before it
    assert tokens(0) == [e.tokens.tolist() for e in task.evaluation_set(51, 100, 20, 0)]


# ------------------------------------------------------------------ registry

@pytest.mark.parametrize("spelling,name", [("bce_tomita4", "tomita4"), ("Tomita4", "tomita4"),
                                           ("bce_D_12", "D12"), ("d7", "D7"),
                                           ("zot_z_t", "012_0_2"), ("BCE_abcde", "abcde")])
def test_the_papers_spellings(spelling, name):
    task = get_task(spelling)
    assert task.name == name and task.mode == "bce"


@pytest.mark.parametrize("spec,words", [("bin_majorty", "did you mean bin_majority"),
                                        ("bce_sort", "unknown task 'bce_sort'"),
                                        ("nonsense", "rasp tasks")])
def test_unknown_task_is_a_coded_error(spec, words):
    with pytest.raises(RaspError) as info:
        get_task(spec)
    assert info.value.codes == ["T401"] and words in info.value.render()


# ------------------------------------------------------------------ user tasks

class Reverse(PromptAnswerTask):
    name, symbols, min_length, max_length = "test_reverse", ("x", "y", "z"), 1, 20

    def prompt_answer(self, rng, n):
        seq = rng.integers(3, size=n).tolist()
        return seq, seq[::-1] + [self.vocab.eos]


def test_a_user_class_registers_and_samples():
    register(Reverse)
    task = get_task("test_reverse")
    e = task.sample(np.random.default_rng(0), 2, 5, offset=True)
    names = task.vocab.names(e.tokens)
    sep = names.index("<sep>")
    assert names[sep + 1:] == names[1:sep][::-1] + ["<eos>"]
    assert e.positions[-1] < task.n_positions


def test_a_user_class_from_a_python_file(tmp_path):
    path = tmp_path / "my_tasks.py"
    path.write_text("from extractor.tasks.base import PromptAnswerTask\n"
                    "class Echo(PromptAnswerTask):\n"
                    "    name, symbols, min_length = 'echo', ('p', 'q'), 1\n"
                    "    def prompt_answer(self, rng, n):\n"
                    "        s = rng.integers(2, size=n).tolist()\n"
                    "        return s, s[-1:]\n")
    task = get_task(f"{path}:Echo")
    assert task.name == "echo" and task.metadata()["task"] == f"{path}:Echo"
    with pytest.raises(RaspError) as info:
        get_task(f"{path}:Missing")
    assert info.value.codes == ["T402"] and "defines no 'Missing'" in info.value.render()


def write_lines(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_jsonl_language_modelling_file(tmp_path):
    path = write_lines(tmp_path / "rev.jsonl", [
        {"input": ["a", "b", "b"], "target": ["b", "b", "a", "<eos>"]},
        "",
        {"input": ["b"], "target": ["b", "<eos>"]},
        {"input": [1, "a"], "target": ["a", 1, "<eos>"]},
    ])
    task = get_task(str(path))
    assert task.mode == "lm" and task.vocab.symbols == ("1", "a", "b")
    assert task.train_lengths == (1, 3) and task.test_buckets == [(1, 3)]
    first = task.evaluation_set(0, 10, 5)[0]
    assert task.vocab.names(first.tokens) == ["<bos>", "a", "b", "b", "<sep>", "b", "b", "a",
                                              "<eos>"]
    assert [task.vocab.tokens[t] for t in first.targets if t != IGNORE] == ["b", "b", "a",
                                                                            "<eos>"]
    assert len(task.evaluation_set(2, 3, 10)) == 2


def test_jsonl_next_set_file_with_header(tmp_path):
    path = write_lines(tmp_path / "d1.jsonl", [
        {"vocab": ["a", "b"], "train_lengths": [2, 2]},
        {"input": ["a", "b"], "next": [["a", "<eos>"], ["b"], ["a", "<eos>"]]},
        {"input": ["a", "b", "a", "b"], "next": [["a", "<eos>"], ["b"], ["a", "<eos>"], ["b"],
                                                 ["a", "<eos>"]]},
    ])
    task = get_task(str(path))
    assert task.mode == "bce" and task.test_buckets == [(2, 2), (3, 4)]
    e = task.evaluation_set(2, 2, 1)[0]
    assert e.targets.shape == (4, 6) and not e.targets[-1].any()
    assert task.vocab.names(np.flatnonzero(e.targets[1])) == ["b"]


def test_malformed_jsonl_names_file_and_every_bad_line(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [
        {"input": ["a"], "target": ["a"]},
        "{not json",
        [1, 2],
        {"input": "ab", "target": ["a"]},
        {"input": ["a"], "target": ["a"], "next": [["a"]]},
        {"input": ["a"], "next": [["a"]]},
        {"input": ["a", "<sep>"], "target": ["a"]},
    ])
    with pytest.raises(RaspError) as info:
        get_task(str(path))
    text = info.value.render()
    assert set(info.value.codes) == {"T402"}
    for line, words in [(2, "not JSON"), (3, "expected an object"),
                        (4, "'input' must be a list"), (5, "exactly one of"),
                        (6, "needs len(input) + 1"), (7, "special token")]:
        assert f"{path}:{line}: " in text and words in text, (line, text)


def test_jsonl_unknown_tokens_mixed_kinds_and_empty_files(tmp_path):
    cases = [
        ([{"vocab": ["a"]}, {"input": ["a", "c"], "target": ["a"]}], "not in the header's vocab"),
        ([{"input": ["a"], "target": ["a"]},
          {"input": ["a"], "next": [["a"], ["<eos>"]]}], "mixes 'target' examples"),
        ([""], "no examples"),
    ]
    for i, (lines, words) in enumerate(cases):
        with pytest.raises(RaspError) as info:
            get_task(str(write_lines(tmp_path / f"f{i}.jsonl", lines)))
        assert info.value.codes[0] == "T402" and words in info.value.render()
    with pytest.raises(RaspError) as info:
        get_task(str(tmp_path / "missing.jsonl"))
    assert "cannot read" in info.value.render()
