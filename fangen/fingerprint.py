"""generate's memo: what the last clean run read and wrote, and whether that still holds.

A *clean* ``fangen generate`` (exit 0, not one diagnostic, no fan refused or frozen)
is a function of what it read and of the code that read it: its files follow from
the fan.d files, the names the host already uses (netplan's and networkd's files,
and on the live host whether a fan's device name is an interface fangen did not
make), the root, the systemd-network group, and fangen's and PyYAML's code.  The
configuration pipeline reads the system only through ``fangen.config.files``, and
generate records those reads on a tape while it loads and validates.

So a clean run leaves a memo, ``var/cache/fangen/generate.memo`` under the root
(mode 0600; on disk, so that it outlives the boot):

* ``code``: a digest of the root, the live flag, the effective uid's right to chown,
  the systemd-network group, Python's version, fangen's modules (name, size, mtime)
  and PyYAML's directory;
* ``inputs``: the questions on the tape (list this directory, read this file, the
  mode of that one, is this device name an interface fangen did not make) and a
  digest of their answers -- never the answers themselves (netplan's files may
  hold secrets);
* the files the run wrote, with their bytes.

The next generate asks the same questions again.  When the code and every answer
are the same, a full run would write exactly those files and nothing else:

* they are all on disk as meant (regular files of their own, mode, group, bytes)
  and nothing is stale: it exits 0 having loaded nothing else (no YAML, no
  validation, no rendering) and without the lock (it writes nothing);
* otherwise (the first run after boot: /run is an empty tmpfs; or a file was
  changed or removed): under the lock, it asks again and writes them through the
  writer, all or nothing, as the full run would have.

Anything else misses and runs in full: a byte, a mode, a file added to or removed
from a directory that was listed, an interface named like a fan's device, a module.
The memo cannot vouch for another state: its questions are the reads the run really
made and its digest is of what they really returned (a file read twice with two
contents cannot match again), so there is no window between reading and
remembering; an older memo matches only its own run's state, for which its files
are still right.  A damaged memo (its last line is a digest of the rest) is ignored.

Import-light on purpose (no YAML, no dataclasses, no hashlib's OpenSSL): this is
all that a boot-time generate pays for when nothing changed.
"""

from __future__ import annotations

import os
import sys

from fangen.config import files
from fangen.render import names

MEMO = "var/cache/fangen/generate.memo"
FORMAT = b"fangen-generate-memo 1"
MEMO_MODE = 0o600
MAX_MEMO_BYTES = 1 << 22
MAX_OUTPUT_BYTES = 1 << 20
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_CODE_DIRS = ("", "config", "render", "cli", "datapath")


def _sha256(data: bytes = b""):
    try:
        from _sha256 import sha256           # CPython 3.11's own, without OpenSSL
    except ImportError:
        try:
            from _sha2 import sha256         # its name since 3.12
        except ImportError:
            from hashlib import sha256
    return sha256(data)


def digest(values) -> str:
    """The sha256 of ``values`` (nested tuples and lists of str, bytes, int, bool, None):
    of their repr, which tells every such value from every other."""
    return _sha256(repr(values).encode("utf-8", "backslashreplace")).hexdigest()


def code(root: str, live: bool) -> str:
    """The digest of what, besides the reads, decides a generate's outcome."""
    from fangen import writer

    found: list = [FORMAT, sys.version, root, live, os.geteuid() == 0,
                   writer.mode_for(names.NETWORKD_DIR + "/x")[1]]
    for sub in _CODE_DIRS:
        directory = os.path.join(_PACKAGE, sub)
        try:
            with os.scandir(directory) as entries:
                found += sorted((sub, e.name, e.stat().st_size, e.stat().st_mtime_ns)
                                for e in entries if e.name.endswith((".py", ".json")))
        except OSError as exc:
            found.append(("code", sub, exc.errno))
    for base in sys.path:                   # the yaml package the loader imports
        directory = os.path.join(base or ".", "yaml")
        try:
            st = os.stat(directory)
        except OSError:
            continue
        found.append(("yaml", directory, st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
        break
    return digest(found)


def answers(questions, replies) -> str:
    return digest(list(zip(questions, replies)))


class Memo:
    """A memo as read back: its code digest, questions, answers' digest and files."""

    def __init__(self, code_digest: str, inputs_digest: str, questions: list,
                 written: dict[str, str]):
        self.code = code_digest
        self.inputs = inputs_digest
        self.questions = questions
        self.files = written                # {relative path: text}


# -- the memo's bytes ----------------------------------------------------------------------
# FORMAT, "code HEX", "inputs HEX", then one question a line ("? KIND LIMIT HEXSUBJECT"),
# then each file ("= HEXPATH SIZE", its SIZE bytes, a newline), then "end HEX": the
# sha256 of everything before it.  Paths and subjects as the hex of their bytes (a
# file name may hold anything but '/' and NUL).

def memo_bytes(code_digest: str, tape, written: dict[str, str]) -> bytes:
    parts = [FORMAT + b"\n", f"code {code_digest}\n".encode(),
             f"inputs {answers(tape.questions, tape.answers)}\n".encode()]
    for kind, subject, limit in tape.questions:
        parts.append(f"? {kind} {limit} {os.fsencode(subject).hex()}\n".encode())
    for rel in sorted(written):
        data = written[rel].encode("utf-8")
        parts.append(f"= {os.fsencode(rel).hex()} {len(data)}\n".encode() + data + b"\n")
    body = b"".join(parts)
    return body + f"end {_sha256(body).hexdigest()}\n".encode()


def parse(raw: bytes) -> Memo | None:
    """The memo in ``raw``, or None when it is not one (damaged, foreign, torn)."""
    cut = raw.rfind(b"end ", 0, len(raw) - 1)
    if cut < 0 or not raw.endswith(b"\n") or (cut and raw[cut - 1:cut] != b"\n") or \
            raw[cut + 4:-1].decode("ascii", "replace") != _sha256(raw[:cut]).hexdigest():
        return None
    try:
        return _parse_body(raw[:cut])
    except (ValueError, UnicodeDecodeError):
        return None


def _parse_body(body: bytes) -> Memo | None:
    head = body.split(b"\n", 3)
    if len(head) < 4 or head[0] != FORMAT or not head[1].startswith(b"code ") or \
            not head[2].startswith(b"inputs "):
        return None
    questions, written = [], {}
    rest, at = head[3], 0
    while at < len(rest):
        end = rest.index(b"\n", at)
        line = rest[at:end].decode("ascii").split(" ")
        at = end + 1
        if line[0] == "?" and len(line) == 4 and line[1] in files.QUESTIONS:
            questions.append((line[1], os.fsdecode(bytes.fromhex(line[3])), int(line[2])))
        elif line[0] == "=" and len(line) == 3:
            rel, size = os.fsdecode(bytes.fromhex(line[1])), int(line[2])
            if not owned(rel) or not 0 <= size <= MAX_OUTPUT_BYTES or \
                    rest[at + size:at + size + 1] != b"\n":
                return None
            written[rel] = rest[at:at + size].decode("utf-8")
            at += size + 1
        else:
            return None
    if names.MANIFEST not in written:
        return None
    return Memo(head[1][5:].decode("ascii"), head[2][7:].decode("ascii"), questions, written)


def owned(rel: str) -> bool:
    """A path generate writes (a networkd file of ours, a file of a fan's state
    directory, the manifest): a memo never makes it write anything else."""
    parts = rel.split("/")
    if rel.startswith("/") or ".." in parts or "." in parts or "" in parts:
        return False
    if rel == names.MANIFEST:
        return True
    if rel.startswith(names.NETWORKD_DIR + "/"):
        return len(parts) == 4 and parts[3].startswith(names.OWNED_PREFIX)
    return rel.startswith(names.STATE_DIR + "/") and len(parts) == 4 and \
        not parts[2].startswith(".")


def load(root: str) -> Memo | None:
    """The memo under ``root``, or None."""
    try:
        raw = files.read_limited(os.path.join(root, MEMO), MAX_MEMO_BYTES)
    except OSError:
        return None
    return parse(raw) if len(raw) <= MAX_MEMO_BYTES else None


# -- the checks ----------------------------------------------------------------------------

def holds(root: str, live: bool, memo: Memo) -> bool:
    """The memo's code is this code, and its questions get the same answers now."""
    return code(root, live) == memo.code and \
        answers(memo.questions, files.replay(root, memo.questions)) == memo.inputs


def settled(root: str, memo: Memo) -> bool:
    """The memo's files are all on disk as a full run would leave them (regular files
    of their own with that mode, group and content) and nothing is stale."""
    from fangen import writer

    for rel, text in memo.files.items():
        mode, gid = writer.mode_for(rel)
        if not writer.unchanged(os.path.join(root, rel), text.encode("utf-8"), mode, gid):
            return False
    return not writer.stale(root, memo.files)


def store(root: str, code_digest: str, tape, written: dict[str, str]) -> None:
    """Remember a clean run (best effort: without a memo the next run is a full one)."""
    from fangen import writer

    if not all(owned(rel) for rel in written):
        forget(root)
        return
    try:
        # no fsync: a memo a power cut left empty or torn fails its digest and is ignored
        writer.write_bytes(os.path.join(root, MEMO), memo_bytes(code_digest, tape, written),
                           MEMO_MODE, durable=False)
    except OSError:
        forget(root)


def forget(root: str) -> None:
    try:
        os.unlink(os.path.join(root, MEMO))
    except OSError:
        pass
