"""The one place that writes rendered files: all or nothing, explicit modes, own files only.

``write_tree(root, files)`` takes ``{relative path: text}`` from the renderers and
changes the tree as one transaction:

1. stage: every new or changed file is written to a temporary file in its own
   directory (given its mode, and the systemd-network group for networkd files, as
   netplan does, and flushed to disk); every file about to be replaced or removed
   gets a hard link as a backup.  A full disk, a read-only filesystem or a path
   component that is a file fails here, before anything visible changed: the
   temporary files (and directories this run made) go, and the error is raised.
2. commit: rename each temporary file over its target, then move stale files
   aside.  Should a rename fail, every step already taken is undone from the
   backups.
3. clean up the backups.

So a generate writes the complete new set or leaves the previous one byte for byte.
A file whose content and mode are already right is left alone (its mtime does not
change, networkd has nothing to reload).  Stale removal deletes only files that
carry fangen's own prefix in networkd's directory, were not rendered this time and
are not in ``keep`` (the files of a fan whose definition is broken just now).
"""

from __future__ import annotations

import errno
import grp
import os
import shutil
import stat
import tempfile

from fangen.errors import FangenError
from fangen.render import names

NETWORKD_MODE = 0o640
DEFAULT_MODE = 0o644
DIR_MODE = 0o755
TEMP_PREFIX = ".fangen-"


class WriteError(FangenError):
    """The tree could not be changed; nothing was (the path and the OS error say why)."""

    def __init__(self, path: str, exc: OSError):
        reason = exc.strerror or str(exc)
        super().__init__(f"{path}: {reason}; nothing was changed")
        self.path, self.errno = path, exc.errno


def _group(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def mode_for(relpath: str) -> tuple[int, int | None]:
    if relpath.startswith(names.NETWORKD_DIR + "/"):
        return NETWORKD_MODE, _group("systemd-network")
    return DEFAULT_MODE, None


def _unchanged(path: str, data: bytes, mode: int, gid: int | None) -> bool:
    """The file is a regular file (not a symlink) with exactly this content and mode."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
            return False
        if st.st_mode & 0o7777 != mode or (gid is not None and st.st_gid != gid):
            return False
        return os.read(fd, len(data) + 1) == data
    except OSError:
        return False
    finally:
        os.close(fd)


class _Transaction:
    def __init__(self):
        self.staged: list = []         # (tmp, path, backup or None)
        self.removals: list = []       # (path, aside)
        self.dirs: list = []           # directories this transaction created
        self.done: list = []           # ("write", path, backup) | ("remove", path, aside)

    def _makedirs(self, directory: str) -> None:
        missing = []
        while directory and not os.path.isdir(directory):
            if os.path.lexists(directory):          # a file (or a dangling link) in the way
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), directory)
            missing.append(directory)
            parent = os.path.dirname(directory)
            if parent == directory:
                break
            directory = parent
        for path in reversed(missing):
            os.mkdir(path, DIR_MODE)
            self.dirs.append(path)

    def _backup(self, path: str) -> str | None:
        if not os.path.lexists(path):
            return None
        backup = tempfile.mktemp(prefix=TEMP_PREFIX + "old-", dir=os.path.dirname(path))
        try:
            os.link(path, backup, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            shutil.copy2(path, backup, follow_symlinks=False)   # no hard links here
        return backup

    def stage_write(self, path: str, data: bytes, mode: int, gid: int | None) -> None:
        directory = os.path.dirname(path)
        self._makedirs(directory)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        entry = [tmp, path, None]
        self.staged.append(entry)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            if gid is not None and os.geteuid() == 0:
                os.fchown(fh.fileno(), 0, gid)
            os.fsync(fh.fileno())
        if os.path.isdir(path) and not os.path.islink(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        entry[2] = self._backup(path)

    def stage_remove(self, path: str) -> None:
        aside = tempfile.mktemp(prefix=TEMP_PREFIX + "gone-", dir=os.path.dirname(path))
        self.removals.append((path, aside))

    def commit(self) -> None:
        for tmp, path, backup in self.staged:
            os.replace(tmp, path)
            self.done.append(("write", path, backup))
        for path, aside in self.removals:
            os.rename(path, aside)
            self.done.append(("remove", path, aside))

    def rollback(self) -> None:
        for what, path, other in reversed(self.done):
            try:
                if what == "remove":
                    os.rename(other, path)
                elif other is not None:
                    os.replace(other, path)
                else:
                    os.unlink(path)
            except OSError:
                pass
        self.done = []
        for tmp, _, backup in self.staged:
            for leftover in (tmp, backup):
                if leftover is not None:
                    _quietly(os.unlink, leftover)
        for directory in reversed(self.dirs):
            _quietly(os.rmdir, directory)

    def finish(self) -> None:
        for what, _, other in self.done:
            if other is None:
                continue
            if what == "remove" and os.path.isdir(other) and not os.path.islink(other):
                shutil.rmtree(other, ignore_errors=True)
            else:
                _quietly(os.unlink, other)


def _quietly(func, path: str) -> None:
    try:
        func(path)
    except OSError:
        pass


def write_file(path: str, text: str, mode: int = DEFAULT_MODE, gid: int | None = None) -> bool:
    """Atomically replace ``path`` with ``text``; False when it already held exactly that.
    Raises OSError (nothing changed) when it cannot."""
    data = text.encode("utf-8")
    if _unchanged(path, data, mode, gid):
        return False
    tx = _Transaction()
    try:
        tx.stage_write(path, data, mode, gid)
        tx.commit()
    except BaseException:
        tx.rollback()
        raise
    tx.finish()
    return True


def write_tree(root: str, files: dict[str, str], remove_stale: bool = True,
               keep: frozenset | set = frozenset()) -> dict:
    """Write every file under ``root`` and remove fangen's stale networkd files, all or
    nothing; ``keep``: relative paths neither written nor removed.

    Returns {"written": [...], "unchanged": [...], "removed": [...]} (relative paths);
    raises WriteError, with the tree as it was, when any step fails."""
    result = {"written": [], "unchanged": [], "removed": []}
    tx = _Transaction()
    current = root
    try:
        for rel in sorted(files):
            if rel in keep:
                continue
            mode, gid = mode_for(rel)
            current = os.path.join(root, rel)
            data = files[rel].encode("utf-8")
            if _unchanged(current, data, mode, gid):
                result["unchanged"].append(rel)
                continue
            tx.stage_write(current, data, mode, gid)
            result["written"].append(rel)
        if remove_stale:
            for rel in _stale(root, files, keep):
                current = os.path.join(root, rel)
                tx.stage_remove(current)
                result["removed"].append(rel)
        tx.commit()
    except OSError as exc:
        tx.rollback()
        raise WriteError(exc.filename or current, exc) from None
    except BaseException:
        tx.rollback()
        raise
    tx.finish()
    return result


def _stale(root: str, files: dict[str, str], keep) -> list[str]:
    directory = os.path.join(root, names.NETWORKD_DIR)
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    wanted = {os.path.basename(rel) for rel in list(files) + list(keep)
              if rel.startswith(names.NETWORKD_DIR + "/")}
    live_devices = {name[len(names.OWNED_PREFIX):].rsplit(".", 1)[0] for name in wanted}
    stale = []
    for entry in entries:
        if not entry.startswith(names.OWNED_PREFIX) or entry in wanted or \
                entry.startswith(TEMP_PREFIX):
            continue
        path = os.path.join(directory, entry)
        if entry.endswith(".network.d") and os.path.isdir(path) and not os.path.islink(path):
            device = entry[len(names.OWNED_PREFIX):-len(".network.d")]
            if device not in live_devices:          # the runtime's drop-ins of a gone fan
                stale.append(f"{names.NETWORKD_DIR}/{entry}")
        elif os.path.isfile(path) or os.path.islink(path):
            stale.append(f"{names.NETWORKD_DIR}/{entry}")
    return stale
