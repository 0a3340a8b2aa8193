"""Where a command writes its files: refused when the place holds something else, tidied after.

`rasp compile -o DIR`, `rasp train -o DIR` and `rasp extract -o PROG.rasp` each write a set of
files. Before any work, the command asks what the place holds: nothing, an earlier run of the
same command on the same input (a rerun: allowed), or another kind of artefact or another
run's output, which is refused with C316 unless `--force` is given, so that a trained model or
a hand-edited program is never replaced by accident. After writing, `Claim.tidy` removes the
files the earlier run wrote that this one did not write again (a stale side-file, a
checkpoint's task.json under a compiled model), so that the place holds one run's output.

A file counts as written again when its identity (inode and modification time) changed: every
writer here replaces files by renaming a new one over them (rasp_ir/files.py), which gives a
new inode, so clocks and their resolution play no part.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from rasp_ir.diagnostics import Diagnostic, RaspError

# files a model directory may hold that rasp-ir itself writes (compile, train, export)
MODEL_FILES = ("config.json", "model.safetensors", "modeling_rasp_ir.py", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "task.json", "acc.txt",
               "vocab.json", "generation_config.json")

# what `rasp extract -o PROG.rasp` writes beside the program (PROG.runs/ is a cache, kept)
PROGRAM_SUFFIXES = (".rasp", ".tables.safetensors", ".mlps.safetensors", ".report.json",
                    ".html")
ROUND_TRIP_SUFFIX = ".compiled"      # `--verify` compiles the program into PROG.compiled/


def _identity(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class Claim:
    """The files at a place before a command wrote there, to tidy once it has written."""

    def __init__(self, files: list[Path], directories: list[Path] = ()):
        self.before = {p: _identity(p) for p in files if _identity(p) is not None}
        # a model directory inside the place (PROG.compiled/): judged by its config.json
        self.directories = {d: _identity(d / "config.json") for d in directories
                            if _identity(d / "config.json") is not None}

    def tidy(self) -> list[Path]:
        """Remove what was there before and was not written again; the paths removed."""
        removed = []
        for path, identity in self.before.items():
            if _identity(path) == identity:
                # a directory where a file was expected, or no permission: it stays
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
        for directory, identity in self.directories.items():
            if _identity(directory / "config.json") != identity:
                continue
            # only the model files rasp-ir writes: anything else the user put there stays
            for name in MODEL_FILES:
                with contextlib.suppress(OSError):
                    (directory / name).unlink()
            with contextlib.suppress(OSError):
                directory.rmdir()
            removed.append(directory)
        return removed


_JSON_READ = 1 << 26       # bytes of a config.json or report read to tell what a place holds


def _json(path: Path):
    """A small JSON file's data, or None: a FIFO, a device or a file past _JSON_READ is not
    read (a hostile PROG.report.json must not hang or flood the check)."""
    try:
        if not path.is_file() or path.stat().st_size > _JSON_READ:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def refusal(place, holds: str, command: str, hint: str | None = None) -> RaspError:
    """C316: `place` holds `holds`, which `rasp COMMAND` would replace."""
    return RaspError([Diagnostic(
        "C316", f"{place} holds {holds}; rasp {command} would replace it",
        hint=hint or "write elsewhere, or pass --force to replace it")])


# ---------------------------------------------------------------- model directories


def model_kind(directory: Path) -> str:
    """What a directory holding model files is: "compiled" (rasp compile), "a trained
    checkpoint" (it has task.json or acc.txt) or "another model"."""
    if (directory / "task.json").exists() or (directory / "acc.txt").exists():
        return "a trained checkpoint"
    config = _json(directory / "config.json")
    if isinstance(config, dict) and isinstance(config.get("extra"), dict) and \
            config["extra"].get("compiled"):
        return "compiled"
    return "another model"


def claim_model_directory(directory, command: str, force: bool,
                          rerun_kind: str | None = None) -> Claim:
    """Before `rasp COMMAND -o DIR` writes a model: C316 when DIR is a file, or holds model
    files and is not a rerun (its kind is not `rerun_kind`) and --force is not given. The
    claim on DIR's model files, to tidy after writing."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise RaspError([Diagnostic("C316", f"{directory} is a file, not a directory; "
                                    f"rasp {command} writes a model directory",
                                    hint="name a new directory with -o")])
    present = [directory / name for name in MODEL_FILES if (directory / name).exists()]
    if present and not force:
        kind = model_kind(directory)
        if kind != rerun_kind:
            shown = "a compiled program" if kind == "compiled" else kind
            raise refusal(directory, f"{shown} ({', '.join(p.name for p in present)})", command)
    return Claim(present)


# ---------------------------------------------------------------- extracted programs


def claim_program(program: Path, checkpoint: Path, force: bool) -> Claim:
    """Before `rasp extract -o PROG.rasp` writes: C316 unless PROG.rasp and the files beside it
    are absent, or are an earlier extraction of the same checkpoint whose program has not been
    edited since (its PROG.report.json names the checkpoint and is not older than the
    program), or --force is given. The claim on those files, to tidy after writing."""
    files = [program.with_suffix(s) for s in PROGRAM_SUFFIXES]
    compiled = program.with_suffix(ROUND_TRIP_SUFFIX)
    claim = Claim(files, [compiled])
    if force or not (claim.before or claim.directories):
        return claim
    holds = _not_a_rerun(program, checkpoint)
    if holds is not None:
        raise refusal(program, holds, "extract")
    return claim


def _not_a_rerun(program: Path, checkpoint: Path) -> str | None:
    """What PROG.rasp's place holds when it is not an earlier extraction of `checkpoint`."""
    report_file = program.with_suffix(".report.json")
    report = _json(report_file)
    if not isinstance(report, dict) or not isinstance(report.get("checkpoint"), str):
        if program.exists():
            return f"a program that rasp extract did not write (no {report_file.name} names " \
                   "its checkpoint)"
        return f"files of another program ({', '.join(_present(program))})"
    earlier = Path(report["checkpoint"])
    if not _same(earlier, checkpoint):
        return f"the extraction of {earlier}"
    if program.exists() and report_file.stat().st_mtime_ns < program.stat().st_mtime_ns:
        return f"a program edited since rasp extract wrote it (newer than {report_file.name})"
    return None


def _present(program: Path) -> list[str]:
    return [program.with_suffix(s).name for s in PROGRAM_SUFFIXES + (ROUND_TRIP_SUFFIX,)
            if program.with_suffix(s).exists()]


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False
