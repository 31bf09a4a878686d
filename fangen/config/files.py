"""Every read of the host that the configuration pipeline makes, and a tape of them.

The loader, the host-name collection (``fangen.hostnames``) and generate's memo
(``fangen.fingerprint``) read the system only through the functions here:
``listdir``, ``read_limited``, ``stat_mode`` and ``ask`` (a question answered by
a function of the shell, such as "is this name an interface fangen did not make?").
While a ``Tape`` is ``recording()``, each call notes what it was asked and what it
got (the question's own reads are not noted), so a clean generate can remember
exactly what its result was computed from, and a later one can ask the same
questions again and compare (``replay``).  Kept free of YAML and of every other
import that a boot-time ``fangen generate`` which finds nothing changed should not
pay for.

Layering follows netplan: ``run`` hides a same-named file in ``etc``, which hides
``lib``; the surviving files are taken in lexical order of their names.
"""

from __future__ import annotations

import errno
import os
import stat

LAYERS = ("lib", "etc", "run")
FAN_DIR = "netplan/fan.d"
NETPLAN_DIR = "netplan"
MAX_FILE_BYTES = 1 << 20        # a fan.d file is a few hundred bytes; refuse megabytes
NETWORKD_SUFFIXES = (".network", ".netdev", ".link")
OWNED_PREFIX = "10-fangen-"     # fangen.render.names.OWNED_PREFIX (kept equal by a test)

_tape = None                    # the Tape recording now, if any


class Tape:
    """The questions asked while recording, as (kind, subject, limit), and the answers."""

    def __init__(self):
        self.questions: list[tuple[str, str, int]] = []
        self.answers: list = []


class recording:
    """``with recording() as tape:`` records every read of the body into a fresh Tape."""

    def __enter__(self) -> Tape:
        global _tape
        self.outer, _tape = _tape, Tape()
        return _tape

    def __exit__(self, *exc_info) -> None:
        global _tape
        _tape = self.outer


def _asked(kind: str, subject: str, limit: int, func, *args):
    """func(*args), noted on the tape as the answer to (kind, subject, limit); the reads
    func makes itself are not noted (the answer is what counts)."""
    global _tape
    tape, _tape = _tape, None
    try:
        answer = func(*args)
    except OSError as exc:
        if tape is not None:
            tape.questions.append((kind, subject, limit))
            tape.answers.append(("error", exc.errno))
        raise
    finally:
        _tape = tape
    if tape is not None:
        tape.questions.append((kind, subject, limit))
        tape.answers.append(_comparable(answer))
    return answer


def _comparable(answer):
    return sorted(answer) if isinstance(answer, list) else answer


def replay(root: str, questions) -> list:
    """The answers the same questions get now (as the tape would note them)."""
    found = []
    for kind, subject, limit in questions:
        try:
            found.append(_comparable(_ANSWER[kind](root, subject, limit)))
        except OSError as exc:
            found.append(("error", exc.errno))
    return found


# -- the questions ---------------------------------------------------------------------------

def _names(path: str, pick: str) -> list[str]:
    if pick == "networkd":      # networkd's own files, not fangen's (which never count)
        try:
            names = os.listdir(path)
        except OSError:
            return []
        return [n for n in names if n.endswith(NETWORKD_SUFFIXES) and
                not n.startswith(OWNED_PREFIX)]
    names = os.listdir(path)
    if pick == "yaml":
        return [n for n in names if n.endswith(".yaml")]
    return names


def listdir(path: str, pick: str = "all") -> list[str]:
    """The names in a directory (os.listdir); only the ``*.yaml`` ones for ``pick="yaml"``;
    for ``pick="networkd"`` only networkd's files that are not fangen's, and none (not
    an error) when the directory is missing or cannot be listed."""
    return _asked("listdir-" + pick, path, 0, _names, path, pick)


def _read(path: str, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_limited(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """Up to ``limit + 1`` bytes of a regular file; OSError otherwise (a FIFO, a device or
    a directory is refused without blocking or reading it)."""
    return _asked("read", path, limit, _read, path, limit)


def _mode(path: str) -> int:
    return os.stat(path).st_mode


def stat_mode(path: str) -> int:
    """os.stat(path).st_mode."""
    return _asked("mode", path, 0, _mode, path)


def ask(kind: str, subject: str, func, *args):
    """func(*args) as the answer to a question of the shell's (``kind`` in QUESTIONS,
    where the same answer is found again from (root, subject))."""
    return _asked(kind, subject, 0, func, *args)


def _foreign_interface(root: str, name: str, _limit=0) -> bool:
    from fangen import hostnames

    return hostnames.foreign_interface(root, name)


_ANSWER = {"listdir-all": lambda _, path, __: _names(path, "all"),
           "listdir-yaml": lambda _, path, __: _names(path, "yaml"),
           "listdir-networkd": lambda _, path, __: _names(path, "networkd"),
           "read": lambda _, path, limit: _read(path, limit),
           "mode": lambda _, path, __: _mode(path),
           "foreign-interface": _foreign_interface}
QUESTIONS = tuple(_ANSWER)


def listing(root: str, subdir: str) -> list[tuple[str, object]]:
    """(directory, what listing it gave) for root/{lib,etc,run}/subdir: a list of the
    ``*.yaml`` names in it, None when it does not exist, or the OSError of listing it."""
    found: list[tuple[str, object]] = []
    for layer in LAYERS:
        directory = os.path.join(root, layer, subdir)
        try:
            names = listdir(directory, "yaml")
        except FileNotFoundError:
            found.append((directory, None))
            continue
        except OSError as exc:
            found.append((directory, exc))
            continue
        found.append((directory, sorted(names)))
    return found


def chosen(listed: list[tuple[str, object]]) -> list[str]:
    """The paths a ``listing`` makes count: later layers hide earlier, sorted by name."""
    paths: dict[str, str] = {}
    for directory, names in listed:
        if isinstance(names, list):
            for name in names:
                paths[name] = os.path.join(directory, name)
    return [paths[name] for name in sorted(paths)]


def layered_files(root: str, subdir: str, on_error=None) -> list[str]:
    """``*.yaml`` under root/{lib,etc,run}/subdir, later layers hiding earlier, sorted by name.

    ``on_error(directory, exc)`` hears of a directory that exists but cannot be listed
    (its files might hide or change others); a missing directory is no error."""
    listed = listing(root, subdir)
    if on_error is not None:
        for directory, names in listed:
            if isinstance(names, OSError) and names.errno != errno.ENOENT:
                on_error(directory, names)
    return chosen(listed)
