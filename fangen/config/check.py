"""Load and validate in one call, and the rule for broken files (see fan.d(5), SAFETY).

A file that cannot be read or parsed, or whose top level has the wrong shape (and
any error outside a single fan), leaves fangen unable to tell what was meant: a
broken drop-in may have been meant to disable a fan, or to change it.  So every fan
is frozen: nothing is written, removed, started, reloaded or stopped until the file
is fixed.  ``Frozen`` is that refusal; callers that change nothing may catch it.
A fan with an error of its own is left alone (``Result.broken``); the others go on.
"""

from __future__ import annotations

from collections import namedtuple

from fangen.config import loader, validate
from fangen.config.foreign import ForeignNames
from fangen.errors import ConfigError, Report


class Frozen(ConfigError):
    """A fan.d file is broken: every fan stays as it is."""

    def __init__(self, diagnostics: list, printed: bool = False):
        super().__init__(list(diagnostics))
        self.printed = printed          # the caller printed the diagnostics already
        files = sorted({d.file for d in diagnostics if d.file})
        shown = ", ".join(files) if files else "the fan.d configuration"
        self.summary = (f"fangen: {shown} cannot be used: every fan is frozen (nothing is "
                        "started, changed or stopped) until it is fixed")


# (report, result, loaded); collections' namedtuple, not typing's: typing costs a
# boot-time generate more than the rest of this module
Checked = namedtuple("Checked", "report result loaded")


def load_checked(root: str, foreign: ForeignNames | None = None) -> Checked:
    """Every fan.d file under ``root``, loaded and validated; ``foreign``: names the
    host already uses (collected by the shell)."""
    report = Report()
    loaded = loader.load(root, report)
    result = validate.validate(loaded, report, foreign)
    return Checked(report, result, loaded)


def load_for_host(root: str, host_interfaces: bool = False) -> Checked:
    """The configuration under ``root`` checked against the names the host already uses
    (netplan's and networkd's files; its interfaces too for the real root, or when
    asked): the pipeline's entry point for every command."""
    from fangen import hostnames

    live = hostnames.live_wanted(root, host_interfaces)
    return load_checked(root, hostnames.collect(root, live))


def require_unfrozen(result: validate.Result, printed: bool = False) -> None:
    if result.frozen:
        raise Frozen(result.frozen, printed)
