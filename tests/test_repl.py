"""The REPL: statements accumulate, values print in RASP 0.1's notation, definitions show on the
example, selectors as grids, `draw`, `help`; through a pseudo-terminal: the banner's example,
line editing, history, Ctrl-C, and carets on the line typed. No mistake ends the session."""

import io
import os
import re
import sys
import time

import pytest

from conftest import ROOT
from rasp_ir.cli import repl as repl_module
from rasp_ir.cli.repl import BANNER, EXAMPLE, grid, repl, sequence


def session(text, path=None):
    out = io.StringIO()
    assert repl(path, stdin=io.StringIO(text), stdout=out) == 0
    return out.getvalue()


# ---------------------------------------------------------------- in this process

def test_values_definitions_and_errors():
    text = session('flip = select(indices, length - indices - 1, ==);\n'
                   'reverse = aggregate(flip,\n tokens);\n'        # a statement over two lines
                   'reverse("abc");\n'
                   'nope;\n'
                   '2 ^ 3 ^ 2;\n'
                   'def f(x) { return x + 1; }\n'
                   'f(tokens_int)([1, 2]);\n'
                   'exit\n'
                   'reverse("never");\n')
    lines = text.splitlines()
    assert "[c, b, a] (strings)" in lines
    assert any("error[E250]: undefined name `nope`" in line for line in lines)
    assert "512" in lines
    assert "[2, 3] (ints)" in lines
    assert "never" not in text


def test_rasp01_notation():
    assert sequence([5, 5, 5]) == "[5]*3 (ints)"
    assert sequence([True, False]) == "[T, F] (bools)"
    assert sequence([0.3333333, 0.5]) == "[0.333, 0.5] (floats)"
    assert sequence(["b", None]) == "[b, None] (strings)"
    assert grid([[False, True], [True, False]], ["a", "b"]) == (
        "        a b\n"
        "    a | 0 1\n"
        "    b | 1 0")


def test_unapplied_sop_prints_its_type_and_definition():
    text = session('@vocab {"a", "b"};\nx = tokens == "a";\nx;\n')
    assert "s-op : bool = x" in text


def test_set_example_shows_every_new_definition_selectors_as_grids():
    text = session('set example "hey"\n'
                   'flip = select(indices, length - indices - 1, ==);\n'
                   'x, n = tokens == "e", 3;\n'
                   'bad = aggregate(select(indices, indices, <=), tokens);\n'
                   'def f(a) { return a; }\n'
                   'show example\n'
                   'examples off\n'
                   'quiet = tokens;\n'
                   'set example [3, 1, 2]\n'
                   'y = tokens_int + 1;\n')
    assert ('flip("hey") =\n'
            '        h e y\n'
            '    h | 0 0 1\n'
            '    e | 0 1 0\n'
            '    y | 1 0 0\n') in text
    assert 'x("hey") = [F, T, F] (bools)\nn = 3\n' in text
    # a definition that fails on the example is still defined; the error is one line
    assert 'bad("hey"): runtime error[R230]' in text
    assert 'example: "hey"' in text
    assert "quiet" not in text
    assert "y([3, 1, 2]) = [4, 2, 3] (ints)" in text     # set example turns examples on


def test_selector_applied_to_an_input_is_a_grid():
    text = session('select(tokens, tokens, ==)("aba");\n')
    assert text == ("        a b a\n"
                    "    a | 1 0 1\n"
                    "    b | 0 1 0\n"
                    "    a | 1 0 1\n")


def test_draw_shows_every_value_on_the_input():
    text = session('flip = select(indices, length - indices - 1, ==);\n'
                   'reverse = aggregate(flip, tokens);\n'
                   'draw(reverse, "ab");\n'
                   'draw(reverse);\n'                              # no input and no example
                   'set example "xyz"\n'
                   'draw(reverse);\n')
    first = text[text.index('draw on "ab"'):]
    assert "  tokens   [a, b] (strings)" in first
    assert "  flip:\n          a b\n      a | 0 1\n      b | 1 0\n" in first
    assert "  reverse  [b, a] (strings)" in first
    assert "error[E240]: draw needs an input" in text
    assert 'draw on "xyz"' in text and "  reverse  [z, y, x] (strings)" in text


def test_help_lists_the_commands():
    text = session("help\n")
    for word in ("set example", "show example", "examples off", "draw(", "exit", "Ctrl-C"):
        assert word in text


def test_the_banners_example_works():
    assert EXAMPLE in BANNER
    assert session(EXAMPLE + "\n") == "[c, b, a] (strings)\n"


def test_errors_point_at_the_line_they_were_typed_on():
    text = session('a = aggregate(select(indices, indices, <=), tokens);\n'
                   'b = 1;\n'
                   'a("ab");\n'
                   'b +\n  nope;\n')
    # the runtime error is in `a`'s definition, typed on line 1
    assert ("  --> <repl>:1:5\n   |\n 1 | a = aggregate(select(indices, indices, <=), "
            "tokens);\n   |     ^^^^") in text
    # an error on the second line of a two-line input
    assert "  --> <repl>:5:3\n   |\n 5 |   nope;\n   |   ^^^^" in text


def test_an_error_inside_a_library_function_points_at_the_call_typed():
    text = session('\ncount(select(indices, indices, ==), 1);\n')
    assert "  --> <repl>:1:1\n   |\n 1 | count(select(indices, indices, ==), 1);\n" in text
    assert re.search(r"= note: inside count, at \S+rasplib\.rasp:\d+:\d+", text)


def test_averaging_text_is_a_runtime_error_not_an_internal_one():
    """`average(tokens)("ab")`: numerical() marks the letters as numbers; averaging them is
    R201 with a hint, and the session goes on."""
    text = session('average(tokens)("ab");\naverage(indices)("ab");\n')
    assert "runtime error[R201]: a numerical aggregate averages the value 'a'" in text
    assert "= hint: average numbers" in text
    assert "internal error" not in text and "ValueError" not in text
    assert "[0.5]*2 (floats)" in text


def test_a_file_loaded_first(tmp_path):
    prog = tmp_path / "prog.rasp"
    prog.write_text('flip = select(indices, length - indices - 1, ==);\n'
                    'rev = aggregate(flip, tokens);\noops = selector_width(rev);\n')
    text = session('rev("ab");\n', path=prog)
    assert f"--> {prog}:3:8\n   |\n 3 | oops = selector_width(rev);\n" in text
    assert "[b, a] (strings)" in text


def test_an_internal_error_is_shown_and_the_session_goes_on(monkeypatch):
    import grammar
    run = grammar.Session.run

    def broken(self, text, file=None):
        if "boom" in text:
            raise RuntimeError("boom")
        return run(self, text, file)
    monkeypatch.setattr(grammar.Session, "run", broken)
    text = session('boom;\n(tokens == "a")("ab");\n')
    assert "internal error: RuntimeError: boom" in text and "Traceback" not in text
    assert "[T, F] (bools)" in text


@pytest.mark.parametrize("text, complete", [
    ("x = 1;", True), ("x = (1,\n", False), ('x = "(";', True), ("x = 1; # (\n", True),
    ("def f(x) {\n", False), ("def f(x) { return x; }", True), ("x = {1: 2}", False),
    ("x = 1)", True),
])
def test_complete(text, complete):
    assert repl_module._complete(text) == complete


# ---------------------------------------------------------------- through a pseudo-terminal

pexpect = pytest.importorskip("pexpect")


@pytest.fixture
def terminal(tmp_path):
    """`rasp repl` on a pseudo-terminal, as a person runs it, with its history in tmp_path."""
    env = dict(os.environ, HOME=str(tmp_path), TERM="xterm", RASP_HISTORY="",
               PYTHONPATH=str(ROOT))
    env.pop("RASP_DEBUG", None)
    children = []

    def start(history=None):
        if history is not None:
            env["RASP_HISTORY"] = str(history)
        child = pexpect.spawn(sys.executable, ["-m", "rasp_ir.cli", "repl"], env=env,
                              cwd=str(ROOT), encoding="utf-8", timeout=60,
                              dimensions=(24, 200))
        children.append(child)
        child.expect_exact("Ctrl-D leaves")
        child.expect_exact(">> ")
        return child
    yield start
    for child in children:
        child.close(force=True)


def test_terminal_banner_example_and_carets(terminal):
    child = terminal()
    child.sendline(EXAMPLE)
    child.expect_exact("[c, b, a] (strings)")
    child.expect_exact(">> ")
    child.sendline("nope;")
    child.expect_exact("error[E250]: undefined name `nope`")
    child.expect_exact("  --> <repl>:2:1")
    child.expect_exact(" 2 | nope;")
    child.expect_exact(">> ")
    child.sendline("x = 1 +;")         # a syntax error does not end the session either
    child.expect_exact("error[")
    child.sendline('flip("ab");')       # the definitions of the first line are still there
    child.expect_exact("a | 0 1")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def interrupt(child, then: str):
    """Ctrl-C once readline waits for a key, and wait for `then`. A signal that comes just
    before readline waits is only seen at the next key (Python's readline loop), and on a
    loaded machine 0.3 s is not always enough for it to start waiting: Ctrl-C is sent again,
    later each time, until `then` is printed (a second Ctrl-C on the fresh, empty line only
    prints another prompt)."""
    for attempt in range(5):
        time.sleep(0.3 * (attempt + 1))
        child.sendintr()
        try:
            child.expect_exact(then, timeout=3)
            return
        except pexpect.TIMEOUT:
            continue
    child.expect_exact(then)             # the last try's error names what was printed


def test_terminal_ctrl_c_cancels_the_input_and_keeps_the_session(terminal):
    child = terminal()
    child.sendline('x = tokens == "a";')
    child.expect_exact(">> ")
    child.send("y = (tokens")
    child.expect_exact("y = (tokens")    # echoed by readline: it is reading keys
    interrupt(child, ">> ")              # Ctrl-C while typing
    child.sendline('x("ab");')
    child.expect_exact("[T, F] (bools)")
    child.expect_exact(">> ")
    child.sendline("z = (1,")           # Ctrl-C on a continuation line drops the statement
    child.expect_exact(".. ")
    interrupt(child, "(cancelled)")
    child.expect_exact(">> ")
    child.sendline('x("ba");')
    child.expect_exact("[F, T] (bools)")
    child.sendeof()                      # Ctrl-D leaves
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_terminal_ctrl_c_interrupts_a_long_evaluation(terminal):
    child = terminal()
    child.sendline('x = tokens == "a";')
    child.expect_exact(">> ")
    # a long evaluation (a million statements), its first line read before the second is sent
    child.sendline("for i in range(1000) {")
    child.expect_exact(".. ")
    child.sendline("for j in range(1000) { c = j; } }")
    time.sleep(1.0)
    child.sendintr()
    child.expect_exact("(interrupted")
    child.expect_exact(">> ")
    child.sendline('x("ba");')
    child.expect_exact("[F, T] (bools)")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_terminal_line_editing_and_history(terminal, tmp_path):
    history = tmp_path / "history"
    child = terminal(history)
    left = "\x1b[D"
    up = "\x1b[A"
    child.send('(tokens == "a")("ab";' + left + ")\r")     # the arrow moves the cursor back
    child.expect_exact("[T, F] (bools)")
    child.expect_exact(">> ")
    child.send(up + "\r")                                   # the line again, from history
    child.expect_exact("[T, F] (bools)")
    child.expect_exact(">> ")
    assert "\x1b[D" not in child.before
    child.sendline("exit")
    child.expect(pexpect.EOF)
    assert '(tokens == "a")("ab");' in history.read_text()
    # the next session starts with that history (`exit` the last line of it)
    child = terminal(history)
    child.send(up + up + "\r")
    child.expect_exact("[T, F] (bools)")
    child.sendline("exit")
    child.expect(pexpect.EOF)


def test_terminal_history_that_cannot_be_written_is_not_an_error(terminal, tmp_path):
    child = terminal(tmp_path / "no" / "such" / "dir" / "history")
    child.sendline("1 + 1;")
    child.expect_exact("2")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in child.before
