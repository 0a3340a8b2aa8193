"""The floor plan, enforced: which room may import which, no cycles, no private names.

Every import statement of the four packages is read with `ast`, including those written inside
functions (a lazy import is still a dependency). The table below is the whole rule; the README's
architecture section draws it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rasp_ir", "grammar", "compiler", "extractor")

# room -> the rooms it may import (its own always allowed). The longest matching prefix of a
# module's name is its room.
ALLOWED = {
    "rasp_ir": set(),                        # the ground floor
    # pictures read the IR and the interpreter; nothing of the ground floor draws
    "rasp_ir.viz": {"rasp_ir"},
    "rasp_ir.cli": {"*"},                    # the command line parses, calls and prints
    "rasp_ir.__main__": {"*"},               # `python -m rasp_ir`: the command line
    # the Python API (rasp_ir.load, rasp_ir.run, ...): thin wrappers over every room, like the
    # command line, each importing what it wraps inside the function
    "rasp_ir.api": {"*"},
    "grammar": {"rasp_ir"},
    "compiler": {"rasp_ir"},
    "extractor": set(),                      # the package docstring only
    "extractor.tasks": {"rasp_ir", "compiler"},
    "extractor.training": {"rasp_ir", "compiler", "extractor.tasks"},
    # reading back the text an extraction wrote is what `rasp run` executes
    "extractor.checking": {"rasp_ir", "compiler", "grammar", "extractor.tasks"},
    "extractor.decompile": {"rasp_ir", "compiler", "extractor.tasks", "extractor.checking"},
}


# The one import against the table: `rasp_ir/__init__.py` reads the API's functions from
# rasp_ir.api inside its module `__getattr__` (PEP 562), so `rasp_ir.run` works while importing
# `rasp_ir` loads nothing else. It runs after the package is imported, never while it is, so it
# is no import-time dependency of the ground floor and no cycle.
LAZY_FORWARDS = {("rasp_ir", "rasp_ir.api")}


def room(module: str) -> str:
    return max((r for r in ALLOWED if module == r or module.startswith(r + ".")), key=len)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports() -> list[tuple[str, str, list[str], str]]:
    """(importer, imported module, names taken from it, 'file:line') for every internal import."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = module_name(path)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.split(".")[0] in PACKAGES:
                            found.append((module, alias.name, [], where))
                elif isinstance(node, ast.ImportFrom):
                    target = resolve(module, path.name == "__init__.py", node)
                    if target.split(".")[0] not in PACKAGES:
                        continue
                    names = [a.name for a in node.names]
                    # `from package import module` imports the module
                    found.append((module, target, names, where))
                    for name in names:
                        if (ROOT / Path(*target.split(".")) / f"{name}.py").exists() or \
                                (ROOT / Path(*target.split(".")) / name).is_dir():
                            found.append((module, f"{target}.{name}", [], where))
    return found


IMPORTS = imports()


def test_the_scan_sees_lazy_imports():
    # the command line imports the extractor inside its commands only
    assert any(a.startswith("rasp_ir.cli") and b.startswith("extractor")
               for a, b, _, _ in IMPORTS)


def allowed(importer: str, imported: str) -> bool:
    if (importer, imported) in LAZY_FORWARDS:
        return True
    mine, theirs = room(importer), room(imported)
    rule = ALLOWED[mine]
    if mine == theirs or "*" in rule:
        return True
    return any(theirs == r or theirs.startswith(r + ".") for r in rule)


def test_every_import_goes_an_allowed_direction():
    wrong = sorted({f"{where}: {a} imports {b} ({room(a)} -> {room(b)})"
                    for a, b, _, where in IMPORTS if not allowed(a, b)})
    assert not wrong, "imports against the floor plan:\n" + "\n".join(wrong)


def test_no_private_names_from_other_modules():
    wrong = sorted({f"{where}: {a} takes {name} from {b}"
                    for a, b, names, where in IMPORTS for name in names
                    if name.startswith("_") and not name.startswith("__") and b != a})
    assert not wrong, "private names imported:\n" + "\n".join(wrong)


def test_no_import_cycles():
    modules = {module_name(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for a, b, _, _ in IMPORTS:
        # a package's __init__ is not a dependency of its own modules' imports of siblings
        if b in modules and b != a and not a.startswith(b + ".") and \
                (a, b) not in LAZY_FORWARDS:
            graph[a].add(b)
    cycles, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("importer, imported, ok", [
    ("rasp_ir.passes", "grammar.library", False),
    ("rasp_ir.cli.models", "extractor.tasks.registry", True),
    ("compiler.plan", "grammar", False),
    ("extractor.tasks.registry", "extractor.decompile.extract", False),
    ("extractor.decompile.sweep", "extractor.tasks.checkpoint", True),
    ("extractor.checking.judge", "extractor.decompile.prune", False),
    ("extractor.training.train", "extractor.checking.judge", False),
    ("rasp_ir", "rasp_ir.api", True),               # the lazy forward, and only it
    ("rasp_ir.passes", "rasp_ir.api", False),
    ("rasp_ir.api", "extractor.decompile.extract", True),
])
def test_the_rule_itself(importer, imported, ok):
    assert allowed(importer, imported) is ok
