"""Round trip (`rasp extract --verify`) of the programs bench/extract_suite.py wrote.

    python bench/roundtrip_suite.py [--dir /tmp/rasp-extract-suite] [--n 200]

For each NAME.rasp in DIR (from `bench/extract_suite.py --out DIR`), the program is compiled
back to weights and (a) the compiled model is compared with the program's interpreter (decoded
outputs at every position, on the held-out task sequences and on generated ones) and (b) with
its checkpoint (match per length bucket), as extractor/checking/roundtrip.py describes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from extractor.checking.roundtrip import round_trip
    from extractor.tasks.checkpoint import load_subject
    from rasp_ir.cli.extraction import round_trip_lines

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/rasp-extract-suite"))
    parser.add_argument("--checkpoints", type=Path,
                        default=ROOT.parent / "shared" / "checkpoints")
    parser.add_argument("--n", type=int, default=200, help="held-out sequences per bucket")
    args = parser.parse_args()
    differ = 0
    for program in sorted(args.dir.glob("*.rasp")):
        prefix = program.stem.split("_1")[0] if program.stem[-4:].isdigit() else program.stem
        folders = sorted(f for f in args.checkpoints.iterdir()
                         if f.name.startswith(prefix + "-"))
        if program.stem[-4:].isdigit():
            folders = [f for f in folders if f.name.endswith(program.stem[-4:])]
        if not folders:
            continue
        report = round_trip(program, load_subject(folders[0]), n=args.n)
        print(f"{program.stem} ({folders[0].name})")
        print("\n".join(round_trip_lines(report)), flush=True)
        differ += report["compiled"] and not report["interpreter"]["exact"]
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
