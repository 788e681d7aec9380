"""Atomic file writes: a temp file in the destination folder, fsync, then rename.

A process killed mid-write leaves the old file (or nothing), never a half-written one. The temp file
is named `.NAME.vidtool-PID-XXXX.tmp` beside NAME: recognisable, removed on any exit the process
sees (an exception, Ctrl-C, and SIGTERM once `stages.cli` has turned it into SystemExit), and, when
a `kill -9` gave the process no chance, swept by the next write of the same NAME once PID is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from vidtool.errors import UserError

MARK = "vidtool"


def _read_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# mkstemp creates its file 0600, but an output should get the mode open() would give a new file. The
# umask can only be read by setting it, and a file another thread created meanwhile would get umask
# 0, so it is read once, at import, not on each write (make_dataset writes from threads).
_NEW_FILE_MODE = 0o666 & ~_read_umask()
# Failures of a write that the user's disk, not vidtool, causes.
_FULL_OR_DENIED = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG}


def temp_prefix(name: str) -> str:
    """The start of the name of this process's temp files for an output called `name`."""
    return f".{name}.{MARK}-{os.getpid()}-"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep(folder: Path, name: str) -> list[Path]:
    """Remove temp files (and temp folders) left beside `folder/name` by vidtool processes that have
    died; a live process's are left alone, so two writers of one name do not trip each other."""
    pattern = re.compile(rf"\.{re.escape(name)}\.{MARK}-(\d+)-.*")
    removed = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            found = pattern.fullmatch(entry.name)
            if found and not pid_alive(int(found[1])):
                with contextlib.suppress(OSError):
                    if entry.is_dir() and not entry.is_symlink():
                        import shutil

                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                    removed.append(entry)
    return removed


@contextlib.contextmanager
def temp_beside(dest: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a new empty temp file beside `dest`, named as `sweep` expects; it is removed on exit.

    Missing parent folders are created (the layouts the data stages write under an --out-dir);
    stages check a user's `-o` first (`vidtool.outputs.check_output`).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        sweep(dest.parent, dest.name)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(dest.name), suffix=suffix, dir=dest.parent)
    except OSError as e:  # read-only file system, permission denied, a file where a folder should be
        raise UserError(f"cannot write {dest}: {e.strerror or e}; choose another output path") from e
    os.close(fd)
    tmp = Path(tmp)
    try:
        try:
            yield tmp
        except OSError as e:
            if e.errno in _FULL_OR_DENIED:
                raise UserError(f"cannot write {dest}: {e.strerror}; free space or choose another output path") from e
            raise
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `dest` (`temp_beside`); on success it is fsynced and renamed onto
    `dest`. `dest` gets a new file's usual mode, 0o666 less the umask the process had at import."""
    dest = Path(dest)
    with temp_beside(dest) as tmp:
        yield tmp
        os.chmod(tmp, _NEW_FILE_MODE)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(dest, text.encode())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def stop_signals_exit():
    """SIGTERM and SIGHUP end the process as SystemExit(128 + signal), so `finally` blocks run and a
    stage's temp files go with it (their default action would kill the process on the spot). The
    trainer installs its own handlers while it runs (checkpoint first, vidtool.train.loop)."""

    def stop(signum, frame):
        print(f"vidtool: {signal.strsignal(signum).lower()}", file=sys.stderr)
        sys.exit(128 + signum)

    stops = (signal.SIGTERM, signal.SIGHUP)
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {signum: signal.signal(signum, stop) for signum in stops}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
