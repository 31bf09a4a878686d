"""One lock serialises every change fangen makes under a root directory.

``up``, ``down``, ``apply`` and ``generate`` hold it while they change links,
nft tables, sysctls, processes or files; ``run`` holds it only while it
reconciles (never while it waits for the underlay or for events), so another
command waits at most for one reconciliation.  One lock per root, not per fan:
fans share the ``net.ipv4.ip_forward`` decision and the generated file tree, so
two fans changing at once could each decide wrongly about the other.

The lock is ``flock(2)`` on ``ROOT/run/fangen/.lock`` (fangen's own directory, not
the world-writable /run/lock, where any user could make the file and hold it; no
fan name starts with a dot): the kernel drops it
when the holder exits, however it exits, so a killed command never leaves a
stale lock.  The holder writes "PID what" into the file, which the message of a
waiter that gives up quotes.  The holder removes the file when it is done, and a
waiter that got the lock on a file that is no longer at that path starts again
(the usual lock-then-check-the-inode dance), so no file is left behind.

A process may take the lock again while it holds it (``apply`` holds it across
``generate``): a count per path, since a second ``flock`` on a new file
descriptor of the same file would wait for the first.  The wait is bounded:
``FANGEN_LOCK_TIMEOUT`` seconds (default 60), then a one-line error.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from fangen.errors import FangenError

LOCK_FILE = "run/fangen/.lock"
TIMEOUT_ENV = "FANGEN_LOCK_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
_POLL = (0.01, 0.2)        # first and longest sleep between attempts

_held: dict[str, list] = {}   # path -> [fd, depth]: what this process holds


class LockTimeout(FangenError):
    """Another fangen command held the lock for longer than we wait."""


def lock_path(root: str) -> str:
    return os.path.join(root or "/", LOCK_FILE)


def timeout_from_env(default: float = DEFAULT_TIMEOUT) -> float:
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text)
    except ValueError:
        return default
    return value if value >= 0 else default


class held:
    """Hold the root's lock for the body of a ``with`` statement.

    ``what`` names the holder in other commands' messages ("up fan250").
    ``required=False``: when the lock file cannot be made at all (a read-only or
    broken root, where nothing can be written either), run the body unlocked
    and let it report the file system's error itself.

    A class rather than ``contextlib.contextmanager``: ``fangen generate`` takes the
    lock on every run, and importing contextlib costs it a few milliseconds at an
    ``-IS`` start (bench/generator.py).
    """

    def __init__(self, root: str, what: str, timeout: float | None = None,
                 required: bool = True):
        self.path = lock_path(root)
        self.what = what
        self.timeout = timeout
        self.required = required
        self.fd = None
        self.nested = False

    def __enter__(self):
        mine = _held.get(self.path)
        if mine is not None:
            mine[1] += 1
            self.nested = True
            return self
        try:
            self.fd = _acquire(self.path, self.what,
                               timeout_from_env() if self.timeout is None else self.timeout)
        except OSError as exc:
            if self.required:
                raise FangenError(f"cannot take the lock {self.path}: "
                                  f"{exc.strerror or exc}") from None
            self.fd = None
        if self.fd is not None:
            _held[self.path] = [self.fd, 1]
        return self

    def __exit__(self, *exc_info) -> bool:
        if self.nested:
            _held[self.path][1] -= 1
        elif self.fd is not None:
            del _held[self.path]
            _release(self.path, self.fd)
        return False


def _acquire(path: str, what: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    pause = _POLL[0]
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            locked = _try_lock(fd)
            if locked and _same_file(fd, path):
                try:               # who holds it, for a waiter's message; a full disk
                    os.ftruncate(fd, 0)     # only loses that, not the lock itself
                    os.pwrite(fd, f"{os.getpid()} {what}\n".encode(errors="replace"), 0)
                except OSError:
                    pass
                return fd
        except BaseException:
            os.close(fd)
            raise
        if locked:                 # the holder removed it under us: open the new one
            os.close(fd)
            continue
        holder = _holder(fd)
        os.close(fd)
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"{path}: another fangen command ({holder}) holds the lock; gave up after "
                f"{timeout:g} s (try again when it has finished; {TIMEOUT_ENV} sets the wait)")
        time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 2, _POLL[1])


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    pid, _, what = text.partition(" ")
    if not pid.isdigit():
        return "holder unknown"
    return f"pid {pid}: fangen {what}" if what else f"pid {pid}"


def _release(path: str, fd: int) -> None:
    try:
        if _same_file(fd, path):
            os.unlink(path)
    except OSError:
        pass
    os.close(fd)
