"""Start-up time of the command line: the median wall time of whole `rasp` processes.

    python bench/startup.py [--runs N] [--json]

Each command is run once to warm the caches (the parser tables and the elaborated programs in
~/.cache/rasp-ir, the operating system's file cache), then N times (default 15); the median,
minimum and maximum wall times are printed with the target each must meet, and the median CPU
time (user + system), which other processes' load disturbs less. The last row runs a program
edited before every run, which the program cache cannot answer: the time after an edit. Exit
status 1 when a median is over its target. Run it on an idle machine (`nice` it on a shared
one): other processes' load shows up directly in the wall times.

The commands run without PYTHONDONTWRITEBYTECODE (some sandboxes set it): a user's Python
keeps the compiled modules in __pycache__, and recompiling every module edited since the last
install on each call would time the compiler, not the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EDITED = "{edited}"      # stands for a copy of reverse.rasp changed before every run

# (label, arguments after `rasp`, target median in seconds; None: shown, not judged)
COMMANDS = [
    ("rasp --help", ["--help"], 0.2),
    ("rasp --version", ["--version"], 0.2),
    ("rasp run examples/reverse.rasp hello", ["run", "examples/reverse.rasp", "hello"], 0.3),
    ("rasp check examples/reverse.rasp", ["check", "examples/reverse.rasp"], 0.3),
    # a program edited since its last run misses the program cache (rasp_ir/program_cache.py)
    # and is parsed and elaborated: the time after each edit
    ("rasp run EDITED.rasp hello", ["run", EDITED, "hello"], None),
]


def rasp_command() -> list[str]:
    """The installed `rasp` script beside this Python, else `python -m rasp_ir`."""
    script = Path(sys.executable).parent / "rasp"
    if script.exists():
        return [str(script)]
    found = shutil.which("rasp")
    return [found] if found else [sys.executable, "-m", "rasp_ir"]


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of `argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed (exit {done.returncode}):\n"
                         f"{done.stderr.decode(errors='replace')}")
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command (>= 10)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--module", action="store_true",
                        help="time `python -m rasp_ir` (honours PYTHONPATH) instead of `rasp`")
    parser.add_argument("--only", metavar="TEXT", help="only the commands containing TEXT")
    args = parser.parse_args()
    base = [sys.executable, "-m", "rasp_ir"] if args.module else rasp_command()
    results, over = [], False
    edited = Path(tempfile.mkdtemp(prefix="rasp-startup-")) / "EDITED.rasp"
    source = (ROOT / "examples" / "reverse.rasp").read_text()

    def command(argv: list[str], run: int) -> list[str]:
        if EDITED not in argv:
            return base + argv
        edited.write_text(source + f"# edit {run} of {time.time()}\n")
        return base + [str(edited) if a == EDITED else a for a in argv]
    for label, argv, target in COMMANDS:
        if args.only and args.only not in label:
            continue
        timed(command(argv, 0))                     # warm-up: fills the caches
        runs = [timed(command(argv, i + 1)) for i in range(args.runs)]
        times = [wall for wall, _ in runs]
        median = statistics.median(times)
        ok = target is None or median <= target
        over |= not ok
        results.append({"command": label, "median_s": round(median, 4),
                        "min_s": round(min(times), 4), "max_s": round(max(times), 4),
                        "cpu_median_s": round(statistics.median(c for _, c in runs), 4),
                        "runs": args.runs, "target_s": target, "ok": ok})
    shutil.rmtree(edited.parent, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
              f"{args.runs} runs each; seconds")
        print(f"{'command':<40} {'median':>7} {'min':>7} {'max':>7} {'cpu':>7} {'target':>7}")
        for r in results:
            mark = "" if r["ok"] else "  OVER"
            target = "-" if r["target_s"] is None else f"{r['target_s']:.2f}"
            print(f"{r['command']:<40} {r['median_s']:>7.3f} {r['min_s']:>7.3f} "
                  f"{r['max_s']:>7.3f} {r['cpu_median_s']:>7.3f} {target:>7}{mark}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
