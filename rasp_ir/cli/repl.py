"""`rasp repl`: an interactive session in the manner of RASP 0.1's.

Statements accumulate into one program and `prog("input");` prints a value at every position.
`set example "…"` shows every new definition on that example, selectors as grids (queries
down, keys across); `draw(x, "…")` shows every value x is computed from. Line editing and
history come from Python's readline (history in ~/.rasp_history); Ctrl-C cancels the input
being typed or a long evaluation and keeps the session; no mistake ends it: each is shown as
a diagnostic whose caret points at the line where the text was typed.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

from rasp_ir.diagnostics import RaspError

EXAMPLE = ('flip = select(indices, length - indices - 1, ==);  '
           'aggregate(flip, tokens)("abc");')
BANNER = f"""rasp repl: statements end with `;`; `help` lists the commands, Ctrl-D leaves.
Try:  {EXAMPLE}"""

HELP = """Statements end with `;` and may span several lines (`..` asks for more):
  name = expression;             define a name (with an example set, its value is shown)
  expression("input");           run an s-op or selector on an input (["a", 1] for a list)
  def f(x) { ...; return e; }    define a function          load "paper_examples";
  draw(x, "input");              every value x is computed from, on the input (or the example)
  @vocab {"a", "b"};             directives, as in a file (docs/language.md)
Commands (no `;`):
  set example "hey"              show every new definition on this input ([1, 2] too)
  show example                   the example;  examples off / examples on: stop / resume
  help                           this text;  exit, quit or Ctrl-D: leave
Keys: arrows edit the line and recall earlier ones (history in ~/.rasp_history, or
$RASP_HISTORY); Ctrl-C cancels the line being typed or a long evaluation.
Selectors print as grids: one row per query position, one column per key position."""

COMMANDS = ("exit", "quit", "exit()", "quit()")


class Repl:
    """One session: the program so far, the example, and how values are shown."""

    def __init__(self, stdout):
        import grammar
        from grammar.values import Builtin
        self.out = stdout
        self.session = grammar.Session()
        self.example: list | str | None = None
        self.examples_on = True
        self.applied: list = []     # (term, input, result) of each application, this input
        self.drawn: list = []       # (term, input, result) of each draw(...), this input
        self.sources: dict[str, str] = {}
        el = self.session.elaborator
        apply = el.apply

        def recording_apply(term, value, span):
            result = apply(term, value, span)
            self.applied.append((term, value, result))
            return result
        el.apply = recording_apply
        # draw(x) takes the example when no input is given, and is shown as a drawing
        el.env.values["draw"] = Builtin("draw", self._draw, ("x", "input"))

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    # ------------------------------------------------------------ input

    def load(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.say(f"rasp repl: cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
            return
        self.sources[str(path)] = text
        self.execute(text, file=str(path), quiet=True)

    def command(self, line: str) -> bool:
        """Run `line` if it is a REPL command (no `;`); False if it is a statement."""
        words = line.split(None, 2)
        if not words or line.rstrip().endswith(";"):
            return False
        if line.strip() == "help":
            self.say(HELP)
        elif words[0] == "set" and len(words) >= 2 and words[1] == "example":
            self.set_example(line.split("example", 1)[1].strip())
        elif line.split() == ["show", "example"]:
            self.say(f"example: {self.example_text()}" if self.example is not None
                     else 'no example: `set example "hey"` sets one')
        elif words[0] == "examples" and len(words) == 2 and words[1] in ("on", "off"):
            self.examples_on = words[1] == "on"
        else:
            return False
        return True

    def set_example(self, text: str) -> None:
        """`set example "hey"`, `set example [1, 2]`, or a name bound to such a value."""
        if not text:
            self.example = None
            return
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            try:
                value = self.session.elaborator.env.lookup(text)
            except KeyError:
                self.say(f'rasp repl: {text} is not an example: give a string such as "hey" '
                         "or a list such as [1, 2]")
                return
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, (str, list)) or not value:
            self.say(f'rasp repl: {text} is not an example: give a string such as "hey" '
                     "or a list such as [1, 2]")
            return
        self.example = value
        self.examples_on = True

    def example_text(self) -> str:
        from rasp_ir.printer import literal
        return literal(self.example)

    # ------------------------------------------------------------ statements

    def execute(self, text: str, file: str | None = None, quiet: bool = False) -> None:
        """Run statements: print values, new definitions on the example, and diagnostics."""
        el = self.session.elaborator
        before = dict(el.env.values)
        self.applied, self.drawn = [], []
        try:
            values = self.session.run(text, file)
        except RaspError as exc:
            self.say(self.render(exc))
            values = None
        if not quiet and self.example is not None and self.examples_on:
            self.show_definitions(before)
        for value in values or ():
            if value is not None:
                self.say(self.show(value))

    def render(self, exc: RaspError) -> str:
        """Each diagnostic with the text of the file its span is in (the session's input, a
        loaded file or a library), so that its caret sits under the text it means."""
        out = []
        for d in exc.diagnostics:
            file = d.span.file if d.span is not None else None
            if file == self.session.file:
                source = self.session.source
            elif file is not None and file not in self.sources and Path(file).is_file():
                try:
                    source = self.sources[file] = Path(file).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    source = None
            else:
                source = self.sources.get(file, exc.source)
            out.append(d.render(source))
        return "\n\n".join(out)

    def show_definitions(self, before: dict) -> None:
        from grammar.values import Term
        el = self.session.elaborator
        for name, value in el.env.values.items():
            if name == "draw" or before.get(name, _ABSENT) is value:
                continue
            if isinstance(value, Term):
                self.say(self.on_example(name, value))
            elif _is_data(value):
                self.say(f"{name} = {_constant(value)}")

    def on_example(self, name: str, term) -> str:
        """`name("hey") = [...]`, or a grid for a selector, or the error it gives there."""
        from rasp_ir import types as T
        from grammar.values import Issue
        head = f"{name}({self.example_text()})"
        applied = len(self.applied)
        try:
            result = self.session.elaborator.apply(term, self.example, None)
        except Issue as issue:
            return f"{head}: error[{issue.code}]: {issue.message}"
        except RaspError as exc:
            first = exc.diagnostics[0]
            return f"{head}: {first.severity}[{first.code}]: {first.message}"
        finally:
            del self.applied[applied:]      # not a value of the input's statements
        if isinstance(term.type, (T.Sel, T.Score)):
            return f"{head} =\n{grid(result, _tokens(self.example))}"
        return f"{head} = {sequence(result)}"

    def show(self, value) -> str:
        """An expression statement's value."""
        from rasp_ir import types as T
        from grammar.values import Builtin, Function, Term
        for term, given, result in self.drawn:
            if result is value:
                program = _snapshot(self.session.elaborator, term)
                from rasp_ir.cli.drawing import repl_picture     # the picture, as rasp draw's
                return draw(program, given) + "\n" + repl_picture(program, _tokens(given))
        for term, given, result in self.applied:
            if result is value:
                if isinstance(term.type, (T.Sel, T.Score)):
                    return grid(value, _tokens(given))
                return sequence(value)
        if isinstance(value, Term):
            from rasp_ir.printer import ATOM as T_ATOM, expr
            text = f"{T.describe(value.type)} : {value.type} = {expr(value.node)}"
            if self.example is not None and self.examples_on:
                text += "\n" + self.on_example(_short(expr(value.node, T_ATOM)), value)
            return text
        if isinstance(value, Function):
            return f"<function {value.name}({', '.join(value.params)})>"
        if isinstance(value, Builtin):
            return f"<builtin {value.name}({', '.join(value.params)})>"
        return _constant(value)

    def _draw(self, el, a, span):
        from grammar.values import Issue
        term = a.term("x")
        given = a.value("input", None)
        if given is None:
            if self.example is None:
                raise Issue("E240", "draw needs an input", span,
                            'give one, draw(x, "hey"), or `set example "hey"` first')
            given = self.example
        result = el.apply(term, given, span)
        self.drawn.append((term, given, result))
        return result


_ABSENT = object()


def _snapshot(el, term):
    """The program so far with `term` as its @output (what an application runs)."""
    import attrs
    return attrs.evolve(el.program((term.node,)), output=term.node, expects=())


def _is_data(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, list, dict, tuple))


def _tokens(example) -> list:
    return list(example)


# ---------------------------------------------------------------- how values print

def cell(value) -> str:
    """One position's value as RASP 0.1 prints it: T/F, floats to 3 places, strings bare."""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return str(round(value, 3))
    if value is None or isinstance(value, (int, str)):
        return str(value)
    return repr(value)


def sequence(values) -> str:
    """`[c, b, a] (strings)`, `[5]*5 (ints)`: RASP 0.1's notation for a value per position."""
    values = list(values)
    kinds = {type(v) for v in values if v is not None}
    suffix = ""
    if kinds and kinds <= {bool}:
        suffix = " (bools)"
    elif kinds and kinds <= {int}:
        suffix = " (ints)"
    elif kinds and kinds <= {int, float}:
        suffix = " (floats)"
    elif kinds and kinds <= {str}:
        suffix = " (strings)"
    cells = [cell(v) for v in values]
    if len(cells) > 1 and len(set(cells)) == 1 and len({type(v) for v in values}) == 1:
        return f"[{cells[0]}]*{len(cells)}{suffix}"
    return "[" + ", ".join(cells) + "]" + suffix


def grid(matrix, tokens, indent: str = "    ") -> str:
    """A selector (or score) on an input: one row per query, one column per key, labelled by
    the input's tokens; 1/0 for a selector, numbers for a score."""
    rows = [[("1" if v else "0") if isinstance(v, bool) else cell(v) for v in row]
            for row in matrix]
    labels = [str(t) for t in tokens][:len(rows)]
    labels += [str(i) for i in range(len(labels), len(rows))]
    width = max([len(c) for row in rows for c in row] + [len(x) for x in labels] + [1])
    side = max(len(x) for x in labels) if labels else 1
    lines = [indent + " " * side + "   " + " ".join(x.rjust(width) for x in labels)]
    for label, row in zip(labels, rows):
        lines.append(indent + label.rjust(side) + " | " + " ".join(c.rjust(width) for c in row))
    return "\n".join(lines)


def _constant(value) -> str:
    from rasp_ir.printer import literal
    try:
        return literal(value)
    except ValueError:
        return repr(value)


def draw(program, example) -> str:
    """What `draw(x, "input")` shows: the value on the input of every binding x is computed
    from, in order (the input's sources first, x last), each selector as a grid. The text the
    REPL prints; `program` is the session's program with x as its @output."""
    from rasp_ir import nodes as ir
    from rasp_ir import types as T
    from rasp_ir.interpreter import Interpreter, run
    from rasp_ir.printer import expr
    tokens = _tokens(example)
    interpreter = Interpreter(program)
    needed = _needed(program)
    rows: list[tuple[str, object, object]] = []     # (label, node, type)
    sources = {}
    for b in program.bindings:
        if b.name in needed:
            for n in ir.walk(b.value):
                if isinstance(n, (ir.Tokens, ir.Indices)):
                    sources.setdefault(expr(n), n)
    for label, node in sorted(sources.items(), key=lambda kv: kv[0] != "tokens"):
        rows.append((label, node))
    for b in program.bindings:
        if b.name not in needed:
            continue
        for n in ir.walk(b.value):     # selectors written inline in an aggregate
            if isinstance(n, (ir.Aggregate, ir.SelectorWidth)) and \
                    not isinstance(n.selector, ir.Ref):
                rows.append((f"{b.name}: {_short(expr(n.selector))}", n.selector))
        rows.append((b.name, ir.Ref(b.name)))
    if not isinstance(program.output, ir.Ref):
        rows.append((_short(expr(program.output)), program.output))
    width = max(len(label) for label, _ in rows if "\n" not in label)
    lines = [f"draw on {_constant(example)} (selectors: queries down, keys across):"]
    for label, node in rows:
        kind = interpreter.type_of(node)
        try:
            value = run(program, [tokens], node=node)[0].output
        except RaspError as exc:
            first = exc.diagnostics[0]
            lines.append(f"  {label.ljust(width)}  {first.severity}[{first.code}]: "
                         f"{first.message}")
            continue
        if isinstance(kind, (T.Sel, T.Score)):
            lines.append(f"  {label}:")
            lines.append(grid(value, tokens, indent="      "))
        else:
            lines.append(f"  {label.ljust(width)}  {sequence(value)}")
    return "\n".join(lines)


def _needed(program) -> set[str]:
    """The names of the bindings the program's @output reads, directly or not."""
    from rasp_ir.passes import bindings_read
    return bindings_read(program, [program.output])


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---------------------------------------------------------------- the loop

def _complete(text: str) -> bool:
    """Whether `text` is whole statements: brackets closed (outside strings and comments),
    ending with `;`, or with the `}` of a def or for."""
    depth, i, last = 0, 0, ""
    while i < len(text):
        ch = text[i]
        if ch == "#":
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        if ch in "\"'":
            j = i + 1
            while j < len(text) and text[j] not in (ch, "\n"):
                j += 2 if text[j] == "\\" else 1
            i, last = j + 1, ch
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if not ch.isspace():
            last = ch
        i += 1
    if depth > 0:
        return False
    starts_block = text.lstrip().startswith(("def ", "for ", "def\t", "for\t"))
    return last == ";" or (last == "}" and (starts_block or depth < 0)) or depth < 0


def _history_file() -> Path | None:
    value = os.environ.get("RASP_HISTORY")
    if value == "":
        return None
    if value:
        return Path(value)
    try:
        return Path.home() / ".rasp_history"
    except RuntimeError:        # no home directory
        return None


def _readline(history: Path | None):
    """The readline module with the history read, or None where there is none."""
    try:
        import readline
    except ImportError:
        return None
    if history is not None:
        try:
            readline.read_history_file(history)
        except (OSError, UnicodeDecodeError):
            pass
        readline.set_history_length(1000)
    return readline


def _save_history(readline, history: Path | None) -> None:
    if readline is None or history is None:
        return
    try:
        readline.write_history_file(history)
    except OSError:
        pass


def repl(path: Path | None = None, stdin=None, stdout=None) -> int:
    """Run a session on `stdin` (a terminal: prompts, line editing and history) until the end
    of the input or `exit`; `path`, a file run first."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    interactive = stdin is sys.stdin and stdin.isatty()
    session = Repl(stdout)
    if interactive:
        # Ctrl-C is the session's own key: a parent that ignores SIGINT (a shell's background
        # job, nohup under some shells) passes that on, and Python then installs no handler
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)
    history = _history_file() if interactive else None
    readline = _readline(history) if interactive else None
    if path is not None:
        session.load(path)
    if interactive:
        session.say(BANNER)
    buffer = ""
    try:
        while True:
            try:
                if interactive:
                    line = input(">> " if not buffer else ".. ")
                else:
                    line = stdin.readline()
                    if not line:
                        break
                    line = line.rstrip("\n")
            except EOFError:
                if interactive:
                    session.say()
                break
            except KeyboardInterrupt:        # cancel the input being typed, keep the session
                session.say("\n(cancelled)" if buffer else "")
                buffer = ""
                continue
            if not buffer:
                if line.strip() in COMMANDS:
                    break
                if not line.strip():
                    continue
                try:
                    if session.command(line):
                        continue
                except KeyboardInterrupt:
                    session.say("(interrupted)")
                    continue
            buffer += line + "\n"
            if not _complete(buffer):
                continue
            text, buffer = buffer.rstrip("\n"), ""
            try:
                session.execute(text)
            except KeyboardInterrupt:
                session.say("(interrupted: the session goes on; the last input may be "
                            "partly defined)")
            except Exception as exc:     # a bug of the front end must not end the session
                session.say(f"internal error: {type(exc).__name__}: {exc}\n"
                            "   = note: this is a bug in rasp-ir; the session goes on. Please "
                            "report the input that caused it.")
                if os.environ.get("RASP_DEBUG"):
                    import traceback
                    traceback.print_exc(file=stdout)
    finally:
        _save_history(readline, history)
    return 0
