"""The one place that writes rendered files: atomic, explicit modes, own files only.

``write_tree(root, files)`` takes ``{relative path: text}`` from the renderers.  Each
file is written to a temporary file in the same directory, given its mode (and the
systemd-network group for networkd files, as netplan does), then renamed over the
old one; a file whose content is already right is left alone, so its mtime does not
change and networkd has nothing to reload.  Stale removal deletes only files that
carry fangen's own prefix in networkd's directory and were not rendered this time.
"""

from __future__ import annotations

import grp
import os
import shutil
import tempfile

from fangen.render import names

NETWORKD_MODE = 0o640
DEFAULT_MODE = 0o644
DIR_MODE = 0o755


def _group(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def mode_for(relpath: str) -> tuple[int, int | None]:
    if relpath.startswith(names.NETWORKD_DIR + "/"):
        return NETWORKD_MODE, _group("systemd-network")
    return DEFAULT_MODE, None


def write_file(path: str, text: str, mode: int = DEFAULT_MODE, gid: int | None = None) -> bool:
    """Atomically replace ``path`` with ``text``; False when it already held exactly that."""
    data = text.encode("utf-8")
    try:
        with open(path, "rb") as fh:
            if fh.read() == data:
                st = os.fstat(fh.fileno())
                if st.st_mode & 0o7777 == mode and (gid is None or st.st_gid == gid):
                    return False
    except OSError:
        pass
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fangen-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), mode)
            if gid is not None and os.geteuid() == 0:
                os.fchown(fh.fileno(), 0, gid)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return True


def write_tree(root: str, files: dict[str, str], remove_stale: bool = True) -> dict:
    """Write every file under ``root``; remove fangen's stale networkd files.

    Returns {"written": [...], "unchanged": [...], "removed": [...]} (relative paths).
    """
    result = {"written": [], "unchanged": [], "removed": []}
    for rel in sorted(files):
        mode, gid = mode_for(rel)
        if write_file(os.path.join(root, rel), files[rel], mode, gid):
            result["written"].append(rel)
        else:
            result["unchanged"].append(rel)
    if remove_stale:
        result["removed"] = _remove_stale(root, files)
    return result


def _remove_stale(root: str, files: dict[str, str]) -> list[str]:
    removed = []
    directory = os.path.join(root, names.NETWORKD_DIR)
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return removed
    wanted = {os.path.basename(rel) for rel in files if rel.startswith(names.NETWORKD_DIR + "/")}
    live_devices = {name[len(names.OWNED_PREFIX):].rsplit(".", 1)[0] for name in wanted}
    for entry in entries:
        if not entry.startswith(names.OWNED_PREFIX) or entry in wanted:
            continue
        path = os.path.join(directory, entry)
        rel = f"{names.NETWORKD_DIR}/{entry}"
        if entry.endswith(".network.d") and os.path.isdir(path):
            device = entry[len(names.OWNED_PREFIX):-len(".network.d")]
            if device not in live_devices:          # the runtime's drop-ins of a gone fan
                shutil.rmtree(path, ignore_errors=True)
                removed.append(rel)
        elif os.path.isfile(path) or os.path.islink(path):
            os.unlink(path)
            removed.append(rel)
    return removed
