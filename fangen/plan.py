"""From validated fans to the full set of rendered files: the generate pipeline's core."""

from __future__ import annotations

from fangen.config.model import Fan
from fangen.render import dnsmasq, names, networkd


def render_all(fans: list[Fan], sources: dict[str, list[str]], root: str = "/") -> dict[str, str]:
    """{relative path: text} for every enabled fan, deterministic (sorted by the writer)."""
    files: dict[str, str] = {}
    for fan in sorted(fans, key=lambda f: f.name):
        if not fan.enabled:
            continue
        origin = ", ".join(sources.get(fan.name, [])) or "fan.d"
        files.update(networkd.render(fan, origin))
        static = fan.static_slice
        if static is not None and fan.mtu is not None:
            text = dnsmasq.render(fan, static, fan.mtu, root)
            if text is not None:
                files[names.dnsmasq_conf(fan.name)] = text
    return files
