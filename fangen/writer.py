"""The one place that writes rendered files: all or nothing, explicit modes, own files only.

``write_tree(root, files)`` takes ``{relative path: text}`` from the renderers and
changes the tree as one transaction:

1. stage: every new or changed file is written to a temporary file in its own
   directory (given its mode, and the systemd-network group for networkd files, as
   netplan does, and flushed to disk unless it lives under ``run/``, see below);
   every file about to be replaced or removed
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

Durability: a file under the root's ``run/`` is not fsync'ed.  /run is a tmpfs on
every systemd system (and an image's own run/ is hidden under it at boot), so a
power cut empties it whatever fsync said; while the system runs, what readers see
is all or nothing because rename(2) is atomic, with or without fsync.  Files
elsewhere (``write_file``'s callers) are flushed before the rename.
"""

from __future__ import annotations

import errno
import os
import stat

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


_groups: dict = {}


def _group(name: str) -> int | None:
    if name not in _groups:
        import grp

        try:
            _groups[name] = grp.getgrnam(name).gr_gid
        except KeyError:
            _groups[name] = None
    return _groups[name]


def _temp_name(directory: str, kind: str = "") -> str:
    """A fresh name for a temporary file of ours in ``directory`` (not created)."""
    return os.path.join(directory, f"{TEMP_PREFIX}{kind}{os.urandom(6).hex()}")


def _create_temp(directory: str) -> tuple[int, str]:
    """A new empty file of ours in ``directory``, mode 0600, opened for writing."""
    while True:
        path = _temp_name(directory)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC |
                         os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        return fd, path


def mode_for(relpath: str) -> tuple[int, int | None]:
    if relpath.startswith(names.NETWORKD_DIR + "/"):
        return NETWORKD_MODE, _group("systemd-network")
    return DEFAULT_MODE, None


def unchanged(path: str, data: bytes, mode: int, gid: int | None) -> bool:
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
        backup = _temp_name(os.path.dirname(path), "old-")
        try:
            os.link(path, backup, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            import shutil

            shutil.copy2(path, backup, follow_symlinks=False)   # no hard links here
        return backup

    def stage_write(self, path: str, data: bytes, mode: int, gid: int | None,
                    durable: bool = True) -> None:
        directory = os.path.dirname(path)
        self._makedirs(directory)
        fd, tmp = _create_temp(directory)
        entry = [tmp, path, None]
        self.staged.append(entry)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            if gid is not None and os.geteuid() == 0:
                os.fchown(fd, 0, gid)
            if durable:
                os.fsync(fd)
        except OSError as exc:          # a full disk: name the file it was for
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, path) from None
            raise
        finally:
            os.close(fd)
        if os.path.isdir(path) and not os.path.islink(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        entry[2] = self._backup(path)

    def stage_remove(self, path: str) -> None:
        aside = _temp_name(os.path.dirname(path), "gone-")
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
                import shutil

                shutil.rmtree(other, ignore_errors=True)
            else:
                _quietly(os.unlink, other)


def _quietly(func, path: str) -> None:
    try:
        func(path)
    except OSError:
        pass


def write_file(path: str, text: str, mode: int = DEFAULT_MODE, gid: int | None = None,
               durable: bool = True) -> bool:
    """Atomically replace ``path`` with ``text``; False when it already held exactly that.
    ``durable=False``: no fsync (a file in /run).  Raises OSError (nothing changed) when
    it cannot."""
    return write_bytes(path, text.encode("utf-8"), mode, gid, durable)


def remove_file(path: str) -> None:
    """Remove ``path`` (already gone is fine), then its folder if that is empty now (an
    emptied ``*.network.d``)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    _quietly(os.rmdir, os.path.dirname(path))


def write_bytes(path: str, data: bytes, mode: int = DEFAULT_MODE, gid: int | None = None,
                durable: bool = True) -> bool:
    """``write_file`` for bytes."""
    if unchanged(path, data, mode, gid):
        return False
    tx = _Transaction()
    try:
        tx.stage_write(path, data, mode, gid, durable)
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
            if unchanged(current, data, mode, gid):
                result["unchanged"].append(rel)
                continue
            tx.stage_write(current, data, mode, gid, durable=not volatile(rel))
            result["written"].append(rel)
        if remove_stale:
            for rel in stale(root, files, keep):
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


def volatile(rel: str) -> bool:
    """A file under the root's run/: gone at the next boot whatever is done (no fsync)."""
    return rel.startswith("run/")


def stale(root: str, files, keep=()) -> list[str]:
    """fangen's networkd files (and drop-in directories of gone devices) that a tree of
    ``files`` (relative paths) does not hold: what ``write_tree`` removes."""
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
