"""nftables through libnftables' Python binding (python3-nftables) or ``nft -f -``.

The handle works in the network namespace of the calling process (``ip netns
exec`` puts fangen there); scripts come from :mod:`fangen.render.nft`.
"""

from __future__ import annotations

import shutil
import subprocess

from fangen.errors import FangenError


class NftFailed(FangenError):
    """nft refused a ruleset change."""


class Nft:
    def __init__(self, nft_binary: str | None = None, use_library: bool = True):
        self.lib = None
        if use_library:
            try:
                import nftables  # python3-nftables (Debian)
                self.lib = nftables.Nftables()
            except (ImportError, OSError):
                self.lib = None
        self.binary = nft_binary or shutil.which("nft") or "/usr/sbin/nft"

    def _run(self, script: str, what: str) -> str:
        if self.lib is not None:
            rc, out, err = self.lib.cmd(script)
            if rc != 0:
                raise NftFailed(f"{what}: {(err or '').strip().splitlines()[0:1] or rc}")
            return out or ""
        try:
            res = subprocess.run([self.binary, "-f", "-"], input=script, text=True,
                                 capture_output=True, timeout=30)
        except OSError as exc:
            raise NftFailed(f"{what}: cannot run {self.binary}: {exc.strerror}") from None
        if res.returncode != 0:
            first = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[0]
            raise NftFailed(f"{what}: {first}")
        return res.stdout

    def apply(self, script: str, what: str = "nft") -> None:
        self._run(script, what)

    def chains(self) -> str:
        """``nft list chains`` (every family): what fangen.runtime.forwarding reads."""
        return self._run("list chains\n", "list nft chains")

    def tables(self) -> frozenset:
        """Names of the tables in family ip."""
        out = self._run("list tables ip\n", "list nft tables")
        found = set()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "table" and parts[1] == "ip":
                found.add(parts[2])
        return frozenset(found)
