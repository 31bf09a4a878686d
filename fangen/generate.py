"""From validated fans to the full set of rendered files: the generate pipeline's core.

Besides the networkd and dnsmasq files, the set holds a manifest
(``run/fangen/.generated.json``): which files belong to which fan.  When a fan's
definition is broken, its files from the last good run are kept as they are (not
rewritten, not removed as stale) and its manifest entry is carried over, so a
broken fan is frozen alone while the others change.
"""

from __future__ import annotations

from fangen.config.model import Fan
from fangen.render import dnsmasq, names, networkd

MANIFEST_VERSION = 1


def render_all(fans: list[Fan], sources: dict[str, list[str]], root: str = "/") -> dict[str, str]:
    """{relative path: text} for every enabled fan, deterministic (sorted by the writer)."""
    files: dict[str, str] = {}
    for fan in sorted(fans, key=lambda f: f.name):
        files.update(render_fan(fan, sources, root))
    return files


def render_fan(fan: Fan, sources: dict[str, list[str]], root: str = "/") -> dict[str, str]:
    if not fan.enabled:
        return {}
    files: dict[str, str] = {}
    origin = ", ".join(sources.get(fan.name, [])) or "fan.d"
    files.update(networkd.render(fan, origin))
    static = fan.static_slice
    if static is not None and fan.mtu is not None:
        text = dnsmasq.render(fan, static, fan.mtu, root)
        if text is not None:
            files[names.dnsmasq_conf(fan.name)] = text
    return files


def render_set(fans: list[Fan], sources: dict[str, list[str]], root: str = "/",
               broken: set | frozenset = frozenset(),
               previous: dict | None = None) -> tuple[dict[str, str], set[str]]:
    """(files, keep): every file to write, the manifest among them, and the files of
    broken fans to keep from ``previous`` (the last manifest's {fan: [paths]})."""
    files: dict[str, str] = {}
    owners: dict[str, list[str]] = {}
    for fan in sorted(fans, key=lambda f: f.name):
        mine = render_fan(fan, sources, root)
        files.update(mine)
        if mine:
            owners[fan.name] = sorted(mine)
    keep: set[str] = set()
    for name in sorted(broken):
        carried = [rel for rel in (previous or {}).get(name, []) if rel not in files]
        if carried:
            owners[name] = carried
            keep.update(carried)
    files[names.MANIFEST] = manifest_text(owners)
    return files, keep


def manifest_text(owners: dict[str, list[str]]) -> str:
    import json

    return json.dumps({"fans": owners, "version": MANIFEST_VERSION}, indent=1,
                      sort_keys=True) + "\n"


def parse_manifest(text: str) -> dict[str, list[str]] | None:
    """{fan: [relative paths]} from a manifest's text; None when it is not one."""
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION or \
            not isinstance(data.get("fans"), dict):
        return None
    owners = {}
    for name, paths in data["fans"].items():
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            return None
        owners[name] = [p for p in paths if _owned_path(p)]
    return owners


def _owned_path(rel: str) -> bool:
    """Only paths fangen writes: a manifest must not make generate keep anything else."""
    parts = rel.split("/")
    if ".." in parts or "" in parts or rel.startswith("/"):
        return False
    base = parts[-1]
    return (rel.startswith(names.NETWORKD_DIR + "/") and base.startswith(names.OWNED_PREFIX)
            and len(parts) == 4) or \
        (rel.startswith(names.STATE_DIR + "/") and len(parts) == 4)
