"""One writer per run folder: an exclusive lock on `<output_dir>/.run.lock`, held for the whole run.

    with run_lock.hold(output_dir):   # raises RunLockedError naming the holder when another run has the folder
        ...                           # the run; the lock is released on any exit (and by the kernel if killed)

    run_lock.holder(output_dir)       # studies and search workers: who holds the folder, or None (nothing taken)

The lock is fcntl.flock on the open lock file: the kernel drops it when the holding process dies, however it dies,
so a second run is refused only while the first is alive. The file also records who holds it (pid, host, the
process's start time, the command), for the error message and for the cases flock cannot decide on its own: a
holder found alive on this host (same pid and start time) is respected even if its flock is gone. A record left by
a process that is gone (kill -9, a lost node) is taken over with a warning. On a clean exit the file is removed.

Under DDP only the main process takes the lock; the others write nothing of their own into the folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from pipelines.arguments import RecipeError

logger = logging.getLogger("pipelines")

LOCK_NAME = ".run.lock"


class RunLockedError(RecipeError):
    """Another run (alive) holds the output folder."""


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): with the pid, it names one
    process (a pid is reused, a start time with it is not). None where there is no /proc, no such process, or only
    its zombie: a killed run whose parent has not reaped it yet has closed its files and will write nothing more."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the fields after "(command)": state is field 3 overall, start time 22
    if fields[0] in ("Z", "X"):  # zombie or dead
        return None
    return fields[19]


def this_process() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process_start": process_start(os.getpid()),
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": shlex.join(sys.argv),
    }


def is_alive_here(record: dict) -> bool:
    """The recorded process is alive on this host (the same pid with the same start time)."""
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return False
    start = process_start(record["pid"])
    return start is not None and start == record.get("process_start")


def describe(record: dict) -> str:
    return (
        f"pid {record.get('pid')} on host {record.get('host')}, started {record.get('started')}"
        f" ({record.get('command')})"
    )


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        record = json.loads(os.read(fd, 65536).decode("utf-8") or "{}")
    except ValueError:  # written halfway by a process killed at that moment
        return {"pid": None, "host": "?", "started": "?", "command": "an unreadable lock record"}
    return record if isinstance(record, dict) else {}


def _try_flock(fd: int, attempts: int = 5) -> bool:
    """Exclusive, non-blocking; retried briefly because holder() takes the lock for an instant to look."""
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            if attempt < attempts - 1:
                time.sleep(0.05)
    return False


def _same_file(fd: int, path: Path) -> bool:
    """The locked file is still the one at `path` (its holder may have removed it between our open and flock)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def acquire(output_dir: str | os.PathLike) -> int:
    """Take the folder's lock (creating the folder); returns the open file, which holds the lock until released."""
    path = Path(output_dir) / LOCK_NAME
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_flock(fd):
            record = _read(fd)
            os.close(fd)
            raise RunLockedError(
                f"{output_dir} is in use by another run: {describe(record)}. Wait for it to end or "
                "stop it, or choose another output_dir."
            )
        if _same_file(fd, path):
            break
        os.close(fd)  # we locked a file its holder had just removed: start again
    record = _read(fd)
    if record.get("pid") is not None:
        if is_alive_here(record) and record["pid"] != os.getpid():
            os.close(fd)
            raise RunLockedError(
                f"{output_dir} is in use by another run: {describe(record)}. Wait for it to end or "
                "stop it, or choose another output_dir."
            )
        logger.warning("Taking over the lock of %s: the run that held it is gone (%s)", output_dir, describe(record))
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(this_process(), indent=2) + "\n").encode("utf-8"), 0)
    os.fsync(fd)
    return fd


def release(output_dir: str | os.PathLike, fd: int) -> None:
    """Remove the lock file (while still holding it, so nobody takes a file about to vanish), then let go."""
    with contextlib.suppress(OSError):
        os.unlink(Path(output_dir) / LOCK_NAME)
    os.close(fd)


@contextlib.contextmanager
def hold(output_dir: str | os.PathLike, main_process: bool = True):
    """Hold the folder's lock for the block. A folder the block created and left empty is removed again, so a run
    that stops on bad input leaves nothing behind. Processes other than the main one take nothing."""
    if not main_process:
        yield
        return
    output_dir = Path(output_dir)
    # The folders that taking the lock creates (output_dir and any missing parents, e.g. outputs/mnli/run), innermost
    # first: each is removed again if the block leaves it empty.
    created = [folder for folder in [output_dir, *output_dir.parents] if not folder.exists()]
    fd = acquire(output_dir)
    try:
        yield
    finally:
        release(output_dir, fd)
        for folder in created:
            try:
                folder.rmdir()  # only if empty
            except OSError:
                break  # not empty: the run wrote into it, so its parents stay too


def holder(output_dir: str | os.PathLike) -> dict | None:
    """The record of the run that holds the folder now, or None. Takes nothing: for a study deciding whether to
    start a job."""
    path = Path(output_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        record = _read(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            return record
        return record if is_alive_here(record) else None
    finally:
        os.close(fd)  # also releases the shared lock, if taken
