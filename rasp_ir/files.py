"""Writing a user-visible file in one step: readers see the old file or the new one, never half.

The bytes go to a temporary file in the target's directory (a rename across file systems is not
atomic), are flushed to disk, and the temporary file is renamed over the target. Permissions
are what the user expects of an ordinary write: a new file gets 0666 minus the umask, a file
that already exists keeps its mode (`rasp fmt --write` on a 0644 file leaves it 0644). If
anything fails, the target is untouched and the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

_ATTEMPTS = 100            # fresh temporary names tried before giving up


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace the file at `path` with `data` atomically (see the module docstring). Raises
    OSError when the file cannot be written; the old file is then left whole."""
    path = Path(path)
    mode = _existing_mode(path)
    tmp, fd = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                # before any byte is written: a private file never has readable copies
                os.chmod(tmp, mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_directory(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Replace the file at `path` with `text` atomically, like `atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode(encoding))


def _existing_mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def _temporary(path: Path) -> tuple[Path, int]:
    """A new file beside `path`, opened for writing. It is created with mode 0666 so that the
    kernel applies the umask (and any default ACL) exactly as for an ordinary new file:
    reading the umask would mean setting it, which is not safe while other threads create
    files."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | \
        getattr(os, "O_CLOEXEC", 0)
    for _ in range(_ATTEMPTS):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable where the platform allows it (POSIX directories can be
    opened and synced; elsewhere this is skipped)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
