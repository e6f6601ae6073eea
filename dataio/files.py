"""Atomic file writes: the one place every writer of the project goes through.

A crash mid-write never leaves a torn file: data goes to a temp file in the same folder, is
flushed to disk, then renamed over the target (atomic on POSIX), and the folder entry is synced.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from glob import escape as glob_escape
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_write"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """`with atomic_write(path) as f: ...` writes `path` whole or not at all.

    An exception inside the block removes the temp file and leaves any previous `path` intact.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    _remove_stale_temps(directory, path.name)
    prefix = f".{path.name}.{os.getpid()}."  # the pid tells a later write whether it is stale
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _remove_stale_temps(directory: Path, name: str) -> None:
    """Delete temp files of earlier writes of `name` whose process died mid-write (kill -9).

    A temp file carries its writer's pid; one whose process is gone is stale. Temp files of
    the older form without a pid are stale once a minute old.
    """
    try:
        candidates = list(directory.glob(f".{glob_escape(name)}.*.tmp"))
    except OSError:
        return
    for tmp in candidates:
        middle = tmp.name[len(name) + 2 : -len(".tmp")]  # "<pid>.<random>" or "<random>"
        pid = middle.split(".", 1)[0]
        try:
            if pid.isdigit() and "." in middle:
                if _alive(int(pid)):
                    continue
            elif time.time() - tmp.stat().st_mtime < 60:
                continue
            tmp.unlink()
        except OSError:
            pass  # removed meanwhile, or not ours to remove


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform (e.g. Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """`obj` as JSON in `path`, atomically: a crash never leaves a torn metrics file."""
    with atomic_write(path, "w") as f:
        f.write(json.dumps(obj, indent=indent) + "\n")
