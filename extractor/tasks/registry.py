"""Finding a task by name: the paper's tasks, user-registered ones and task files.

A task spec is one of
- a registered name: `bin_majority`, `tomita4`, `D12`, … The paper's spellings of formal
  languages work too (`bce_tomita4`, `Tomita4`, `D_12`, `zot_z_t`): they name the BCE task;
- a JSON Lines file: `my_task.jsonl` (extractor/tasks/jsonl_tasks.py);
- a Python class in a file: `my_tasks.py:MyTask` (a `Task` subclass built without arguments).

Only a spec the user typed may name a Python file: running it runs its code. A spec read from a
checkpoint's task.json or folder name goes through `recorded_task`, which takes registered
names and JSON Lines files (data) and refuses Python files (T407).
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Callable

from extractor.tasks.base import Task
from extractor.tasks.formal_languages import (
    DYCK_DEPTHS,
    LANGUAGES,
    Dyck,
    FormalLanguageTask,
)
from extractor.tasks.lm_tasks import LM_TASKS
from rasp_ir.diagnostics import Diagnostic, RaspError

_FACTORIES: dict[str, Callable[[], Task]] = {}
_DYCK = re.compile(r"[Dd]_?(\d+)")


def register(factory: Callable[[], Task], name: str | None = None) -> Callable[[], Task]:
    """Make a task available by name (to `get_task`, `rasp eval --task`, `rasp train`).

    `factory` is a Task subclass or any callable returning a Task; `name` defaults to its
    `name` attribute. Usable as a class decorator. Returns the factory.
    """
    key = name or getattr(factory, "name", None)
    if not key:
        raise ValueError("a registered task needs a name")
    _FACTORIES[key] = factory
    return factory


for _cls in LM_TASKS:
    register(_cls)
for _lang in LANGUAGES:
    register(lambda lang=_lang: FormalLanguageTask(lang()), _lang.name)


def task_names() -> list[str]:
    """Registered names (D_n is listed for the paper's depths; any depth works)."""
    return list(_FACTORIES) + [f"D{n}" for n in DYCK_DEPTHS]


def canonical_name(name: str) -> str:
    """The registry's spelling of one of the paper's task names."""
    base = re.sub(r"^(bce|BCE)_", "", name)
    if base in _FACTORIES:
        return base
    lowered = {"zot_z_t": "012_0_2"}.get(base.lower(), base.lower())
    if lowered in _FACTORIES and _FACTORIES[lowered]().mode == "bce":
        return lowered         # Tomita4, ABCDE, AAstar: the paper's regexes accept these
    match = _DYCK.fullmatch(base)
    if match and int(match.group(1)) >= 1:
        return f"D{int(match.group(1))}"
    return name


def get_task(spec: str) -> Task:
    """The task for a spec (see the module docstring); RaspError T401/T402 if there is none."""
    if spec.endswith((".jsonl", ".json")):
        from extractor.tasks.jsonl_tasks import load_jsonl_task
        return load_jsonl_task(Path(spec))
    if ".py:" in spec:
        return _task_from_python(spec)
    name = canonical_name(spec)
    task = None
    if name in _FACTORIES:
        task = _FACTORIES[name]()
    elif match := _DYCK.fullmatch(name):
        task = FormalLanguageTask(Dyck(int(match.group(1))))
    if task is not None and (task.mode == "bce" or not re.match(r"(bce|BCE)_", spec)):
        return task
    close = difflib.get_close_matches(spec, task_names(), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "`rasp tasks` lists them"
    raise RaspError([Diagnostic("T401", f"unknown task '{spec}'", hint=hint,
                                note="a task is a registered name, a FILE.jsonl or "
                                "a FILE.py:CLASS")])


def recorded_task(spec: str, directory: Path, source: str) -> Task:
    """The task a checkpoint directory names (`source`: its task.json, or its folder name):
    a registered name or a JSON Lines file (a relative path is looked for in `directory`
    first, then in the current directory), never a Python file, whose code would run just
    because a directory was read. RaspError T407 for a Python file, else as `get_task`."""
    if ".py:" in spec or spec.endswith(".py"):
        raise RaspError([Diagnostic(
            "T407", f"{source} names the Python task {spec!r}; rasp does not run code named by "
            "a checkpoint", note="a task.json may name a registered task or a JSON Lines file",
            hint=f"if you trust that file, name it yourself: --task {spec}")])
    if spec.endswith((".jsonl", ".json")):
        path = Path(spec)
        if not path.is_absolute() and (Path(directory) / path).is_file():
            path = Path(directory) / path
        return get_task(str(path))
    return get_task(spec)


def _task_from_python(spec: str) -> Task:
    path_text, _, class_name = spec.rpartition(":")
    path = Path(path_text)

    def fail(message: str) -> RaspError:
        return RaspError([Diagnostic("T402", f"{path}: {message}")])

    if not path.is_file():
        raise fail("no such file")
    module_name = f"rasp_user_task_{abs(hash(path.resolve()))}"
    loader = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = module       # dataclasses and pickling look modules up here
    try:
        loader.loader.exec_module(module)
    except Exception as exc:                 # the user's file: report, do not crash
        raise fail(f"running the file failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, class_name, None)
    if factory is None:
        raise fail(f"defines no '{class_name}'")
    try:
        task = factory()
    except Exception as exc:
        raise fail(f"{class_name}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(task, Task):
        raise fail(f"{class_name}() is a {type(task).__name__}, not an extractor.tasks.base.Task")
    task.spec = spec            # what a checkpoint's task.json records to find the task again
    return task
