"""Time and size of `rasp report` (issue 17: a two-layer extraction's report in under 10 s and
under 5 MB).

    python bench/report.py                      # two-layer extractions made here (below)
    python bench/report.py PROG.rasp ...        # reports of extractions already written
    python bench/report.py --checkpoint DIR     # extract DIR (--quick) first, then its report

Without arguments it makes its own two-layer extractions from the repository alone:
`examples/reverse.rasp` and `examples/sort.rasp` compiled at length 8 (two layers each) and
extracted, at the default stage and at `--stage full` (the exact program: every table on the
page). Each report is written to a temporary folder; one row per report: layers, figures drawn,
seconds (the whole `rasp report` process: imports, reading, drawing, writing) and its CPU
seconds, megabytes. Exit status 1 when a
report takes 10 s or more or weighs 5 MB or more.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LIMIT_SECONDS, LIMIT_BYTES = 10.0, 5_000_000


def rasp(*argv) -> None:
    """A `rasp` command in its own process, as a user runs it (imports included)."""
    subprocess.run([sys.executable, "-m", "rasp_ir", *map(str, argv)], check=True,
                   stdout=subprocess.DEVNULL)


def made_here(out: Path) -> list[Path]:
    programs = []
    for name in ("reverse", "sort"):
        model = out / f"{name}_model"
        rasp("compile", ROOT / "examples" / f"{name}.rasp", "-o", model, "--max-len", 8)
        for stage in ("pruned", "full"):
            program = out / f"{name}_{stage}.rasp"
            rasp("extract", model, "--stage", stage, "-o", program, "--quiet")
            programs.append(program)
    return programs


def measure(program: Path) -> dict:
    html = program.with_suffix(".bench.html")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    rasp("report", program, "-o", html)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time as well as wall time: on a shared machine the wall clock counts the others' work
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    page = html.read_text(encoding="utf-8")
    report = json.loads(program.with_suffix(".report.json").read_text())
    return {"program": program.name, "stage": report["stage"],
            "layers": report["model"]["layers"], "figures": page.count("<figure"),
            "table_entries": report["program"].get("table_entries"),
            "seconds": seconds, "cpu": cpu, "bytes": len(page.encode("utf-8"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("programs", nargs="*", type=Path, metavar="PROG.rasp")
    parser.add_argument("--checkpoint", type=Path, action="append", default=[],
                        help="extract this checkpoint with --quick first (repeatable)")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="rasp-bench-report-"))
    programs = list(args.programs)
    for i, checkpoint in enumerate(args.checkpoint):
        program = out / f"checkpoint{i}.rasp"
        rasp("extract", checkpoint, "--quick", "-o", program, "--quiet")
        programs.append(program)
    if not programs:
        programs = made_here(out)
    print("| program | stage | layers | table entries | figures | seconds | CPU s | MB |")
    print("|---|---|---|---|---|---|---|---|")
    slow = 0
    for program in programs:
        row = measure(program)
        over = row["seconds"] >= LIMIT_SECONDS or row["bytes"] >= LIMIT_BYTES
        slow += over
        print(f"| {row['program']} | {row['stage']} | {row['layers']} | {row['table_entries']} "
              f"| {row['figures']} | {row['seconds']:.2f} | {row['cpu']:.2f} "
              f"| {row['bytes'] / 1e6:.2f}"
              f"{' (over)' if over else ''} |")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"limits: {LIMIT_SECONDS:.0f} s and {LIMIT_BYTES / 1e6:.0f} MB per report; "
          f"{slow} over; load average {load} on {os.cpu_count()} cores (wall seconds count "
          "the other processes' work, CPU seconds do not)")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
