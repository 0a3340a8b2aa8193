"""Every cap on what a program, an input or a command may ask for, in one place.

Each cap keeps a hostile or careless input from taking unbounded time or memory: past it, the
front end, the interpreter, the compiler or the command line reports a coded diagnostic that
names the cap and the size that was asked for, before allocating anything. docs/limits.md lists
them for users; tests/test_hostile.py holds one attack per cap.
"""

from __future__ import annotations

# ---------------------------------------------------------------- programs (E111, E243)

MAX_PROGRAM_BYTES = 1 << 20        # a .rasp file or standard input: 1 MiB (examples: < 5 KB)
MAX_NESTING = 1000                 # depth of one statement's syntax tree (brackets, operators)
MAX_LITERAL_DIGITS = 1000          # digits of an integer literal in a program or an input
MAX_CALL_DEPTH = 64                # functions (macros) expanding inside each other
MAX_LOAD_DEPTH = 16                # libraries loading libraries
MAX_EXPANSION = 1_000_000          # loop iterations, comprehension items, list/range/string
                                   # elements built while elaborating one program, all together
MAX_VOCAB = 10_000                 # tokens in @vocab

# ---------------------------------------------------------------- sizes of values and weights

MAX_LEN = 1 << 16                  # @maxlen, `compile --max-len`: positions stay enumerable
MAX_TABLE_ENTRIES = 1 << 26        # one-hot rows, selectors and tables of one sequence, the
                                   # compiler's tables and weight matrices: 64 Mi entries
                                   # (float64: 512 MiB), checked before they are allocated (E306)

# ---------------------------------------------------------------- reporting

MAX_DIAGNOSTICS_SHOWN = 50         # diagnostics printed by a command; then one line with the count

# ---------------------------------------------------------------- the Python stack

RECURSION_LIMIT = 10_000           # what the command line allows the front end's recursive walks
                                   # (MAX_NESTING and MAX_CALL_DEPTH keep well inside it)


def size_text(entries: int, itemsize: int = 4) -> str:
    """`entries` float32 entries as a human size: '32.0 GiB'."""
    size = float(entries) * itemsize
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} TiB"


def too_large(entries: int, what: str, itemsize: int = 8) -> str | None:
    """The E306 message when `what` would hold more than MAX_TABLE_ENTRIES numbers (naming the
    count and the memory it would take); None when it fits. Callers check before allocating
    and attach their own location."""
    if entries <= MAX_TABLE_ENTRIES:
        return None
    return (f"{what} would hold {entries:,} numbers ({size_text(entries, itemsize)}), past "
            f"the cap of {MAX_TABLE_ENTRIES:,} (rasp_ir/limits.py MAX_TABLE_ENTRIES)")
