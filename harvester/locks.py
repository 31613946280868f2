"""A per-source lock shared by every process on the machine (daemon and CLI).

An advisory `flock` on `DATA_DIR/locks/SOURCE.lock`: the kernel drops it when
the holder dies, even by SIGKILL, so a crashed harvest never leaves a stale
lock behind. The holder's pid and purpose are written into the file for
`status` to show.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
import contextlib
from contextlib import contextmanager
from pathlib import Path

from harvester.errors import Interrupted, LockedError


def lock_path(data_dir: Path, source: str) -> Path:
    return Path(data_dir) / "locks" / f"{source}.lock"


@contextmanager
def exclusive_lock(path: Path, *, wait: float | None = 0.0, stop: threading.Event | None = None,
                   content: str = "", busy: str = "locked by another process") -> Iterator[None]:
    """Hold an flock on `path`, writing `content` into it while held. `wait`:
    seconds to wait for it (None: forever, 0: fail at once with LockedError
    carrying `busy` and the holder's content). Raises Interrupted when `stop`
    is set while waiting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    held_by = path.read_text().strip() or "unknown"
                    raise LockedError(f"{busy} ({held_by})") from None
                if stop is not None and stop.is_set():
                    raise Interrupted(f"stopped while waiting for the lock: {busy}") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, content.encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def source_lock(data_dir: Path, source: str, *, wait: float | None = 0.0, purpose: str = "harvest",
                stop: threading.Event | None = None) -> contextlib.AbstractContextManager[None]:
    """Hold the source's lock (see exclusive_lock for `wait`)."""
    return exclusive_lock(lock_path(data_dir, source), wait=wait, stop=stop,
                          content=f"{os.getpid()} {purpose}\n",
                          busy=f"source {source!r} is being harvested by another process")


def holder(data_dir: Path, source: str) -> str | None:
    """'PID PURPOSE' of the process holding the lock, or None when free."""
    path = lock_path(data_dir, source)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return path.read_text().strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
