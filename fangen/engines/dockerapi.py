"""Read Docker's networks from its API socket (``GET /networks``).  Read-only, no client
library: one HTTP/1.0 request over the unix socket, the unversioned path every Docker
since 1.9 answers."""

from __future__ import annotations

import json
import os
import socket

from fangen.errors import FangenError

DEFAULT_SOCKET = "/var/run/docker.sock"


class DockerUnavailable(FangenError):
    """No Docker answers at the socket, or its answer is not what the API promises."""


def socket_path(host: str | None) -> str:
    """A path from ``unix:///path``, ``unix:/path`` or a plain path (DOCKER_HOST style)."""
    host = host or DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://"):]
    if host.startswith("unix:"):
        return host[len("unix:"):]
    if "://" in host:
        raise DockerUnavailable(f"{host}: only unix sockets are supported (unix:///path)")
    return host


def present(path: str) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def get(path: str, url: str, timeout: float = 5.0):
    """The decoded JSON body of ``GET url`` on the Docker socket at ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(f"GET {url} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError as exc:
        raise DockerUnavailable(f"{path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if " 200 " not in f"{status} ":
        raise DockerUnavailable(f"{path}: GET {url}: {status or 'no answer'}")
    try:
        return json.loads(body)
    except ValueError:
        raise DockerUnavailable(f"{path}: GET {url}: not JSON") from None


def networks(path: str) -> list[dict]:
    data = get(path, "/networks")
    if not isinstance(data, list):
        raise DockerUnavailable(f"{path}: GET /networks: not a list")
    return data
