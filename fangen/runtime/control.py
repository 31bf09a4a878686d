"""up, down and show for one host: load state, observe, plan, execute, verify.

Every change happens under the root's lock (:mod:`fangen.runtime.lock`): the
plan is made from what is observed while the lock is held, so two commands
never act on the same picture.  Waiting for the underlay happens before the lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fangen.config.model import Fan
from fangen.errors import ConfigError, FangenError
from fangen.runtime import actions as A
from fangen.runtime import announce, lock
from fangen.runtime import observe as observe_mod
from fangen.runtime import plan as P
from fangen.runtime import state as state_mod
from fangen.runtime import underlay as underlay_mod
from fangen.runtime import underlay_route
from fangen.runtime.execute import execute
from fangen.runtime.host import KernelFanRefused, choose_datapath
from fangen.runtime.view import FORWARD6_SYSCTL, FORWARD_SYSCTL


class NotCarrying(FangenError):
    """up finished but the fan does not look ready."""


def load_fans(root: str) -> tuple[dict, list, object]:
    """({name: Fan} of valid fans, diagnostics of errors, report); raises
    fangen.config.check.Frozen when a fan.d file is broken (fan.d(5), SAFETY)."""
    from fangen.config.check import load_for_host, require_unfrozen

    report, result, _ = load_for_host(root)
    require_unfrozen(result)
    return {fan.name: fan for fan in result.fans}, report.errors, report


def fan_named(root: str, name: str) -> Fan:
    fans, errors, _ = load_fans(root)
    if name in fans:
        return fans[name]
    mine = [d for d in errors if len(d.path) >= 3 and d.path[2] == name]
    if mine:
        raise ConfigError(mine)
    raise FangenError(f"no fan named '{name}' under {root.rstrip('/') or ''}/"
                      "{lib,etc,run}/netplan/fan.d")


@dataclass
class UpResult:
    fan: Fan
    target: P.Target
    actions: list
    notes: list = field(default_factory=list)     # said once, to stderr (a fallback)


def plan_for(host, fan: Fan, resolved: underlay_mod.Resolved) -> tuple[P.Target, list]:
    from fangen.datapath import upstream

    state = state_mod.load(host.root, fan.name)
    datapath = choose_datapath(fan, host.proc, host.kernel_refused)
    plain = P.choose_plain(fan, datapath, fan.type == "vxlan" and upstream.plain_supported())
    target = P.Target(fan, resolved, datapath, host.root, host.systemd, plain)
    obs = observe_mod.observe(host, fan.name, fan.bridge, target.tunnel, state)
    return target, P.plan_up(target, obs, state)


def up(host, fan: Fan, timeout: float | None = 30.0, dry_run: bool = False,
       events: underlay_mod.Events | None = None) -> UpResult:
    if not fan.enabled:
        raise FangenError(f"{fan.name}: the fan is disabled (enabled: false)")
    own_events = events is None and timeout != 0 and not dry_run
    if own_events:
        events = underlay_mod.Events(host.new_ipr)
    try:
        resolved = underlay_mod.wait_for(host.ipr, events, fan.underlay,
                                         0 if dry_run else timeout, fan.name)
    finally:
        if own_events:
            events.close()
    if dry_run:
        return UpResult(fan, *plan_for(host, fan, resolved))
    with lock.held(host.root, f"up {fan.name}"):
        return apply_up(host, fan, resolved)


def apply_up(host, fan: Fan, resolved: underlay_mod.Resolved,
             skip: frozenset = frozenset()) -> UpResult:
    """Plan and execute (the caller holds the lock); a kernel that does not read the
    fan map attribute back as fan maps makes an ``auto`` fan fall back to upstream.
    ``skip``: actions not to take (repairs ``run`` gave up on, fangen.runtime.repairs);
    the fan is then not verified."""
    notes = []
    announce.address(host, resolved)        # peers that tried while it was absent
    target, actions = plan_for(host, fan, resolved)
    if skip:
        actions = [a for a in actions if a not in skip]
    loaded = state_mod.load(host.root, fan.name)
    # the state in memory records every step done, also when saving it failed
    current = loaded or state_mod.State(fan.name)
    try:
        try:
            execute(actions, host, current)
        except KernelFanRefused as exc:
            host.kernel_refused[exc.kind] = f"the kernel refused the fan map ({exc})"
            target, actions = plan_for(host, fan, resolved)     # DatapathError for "kernel"
            notes.append(f"{fan.name}: kernel fan datapath not usable here ({exc}); using "
                         "the upstream datapath")
            host.say(notes[-1])
            execute(actions, host, current)
    except FangenError as exc:
        if not str(exc).startswith(f"{fan.name}: "):    # with --all: which fan failed
            exc.args = (f"{fan.name}: {exc}",)
        if loaded is None:
            _undo(host, current, exc)
        raise
    # multi-homed hosts (issue 15): the fan's rule and underlay routes; what was put
    # back is a note (the follower's children log their notes)
    notes += [f"{fan.name}: {line}" for line in underlay_route.reconcile(host, fan, resolved)]
    if not skip:
        notes += verify(host, target)
    return UpResult(fan, target, actions, notes)


def _undo(host, state, exc: FangenError) -> None:
    """A fan's first ``up`` failed half-way: take down what it made, as ``state`` (in
    memory) records it (the caller holds the lock), so that a failed ``up`` leaves the
    host as it was; ``exc``'s message says so.  Nothing is saved on the way (the
    failure may be a full or read-only /run).  A fan that was up before keeps what it
    had (it may be carrying traffic)."""
    name = state.name
    try:
        actions, _ = _plan_down(host, name, None, state=state)
        execute(actions, host, state, save=False)
    except FangenError as again:
        exc.args = (f"{exc}; undoing it failed too ({again}): 'fangen down --force "
                    f"{name}' removes what is left",)
        return
    exc.args = (f"{exc} (undone: nothing of {name} was left)",)


def verify(host, t: P.Target) -> list[str]:
    """The fan carries traffic: devices up and addressed, datapath, nft, dnsmasq.
    Returns notes on what is not fangen's to change: routes of someone else's into
    the overlay."""
    fan = t.fan
    state = state_mod.load(host.root, fan.name)
    obs = observe_mod.observe(host, fan.name, fan.bridge, t.tunnel, state)
    problems = []
    bridge, tunnel = obs.links.get(fan.bridge), obs.links.get(t.tunnel)
    if bridge is None or not bridge.up or t.bridge_address not in bridge.addresses:
        problems.append(f"bridge {fan.bridge} is not up with {t.bridge_address}")
    if tunnel is None or not tunnel.up:
        problems.append(f"tunnel {t.tunnel} is not up")
    elif fan.type == "vxlan" and tunnel.master != fan.bridge:
        problems.append(f"tunnel {fan.tunnel} is not a port of {fan.bridge}")
    if t.programs and set(obs.tc.get(t.tunnel, {})) != {"ingress", "egress"}:
        problems.append(f"the fan programs are not attached to {t.tunnel}")
    from fangen.render import nft as render_nft
    if render_nft.table_name(fan.name) not in obs.nft_tables:
        problems.append("the nft table is missing")
    if fan.dhcp and not obs.dnsmasq_running:
        problems.append("dnsmasq is not running")
    if problems:
        raise NotCarrying(f"{fan.name}: not ready: " + "; ".join(problems))
    from fangen.runtime import health

    foreign = health.foreign_routes(state, obs.routes) if state is not None else []
    return [f"{fan.name}: route {', '.join(foreign)} takes part of the overlay away from "
            f"the fan (not fangen's: left as it is; 'fangen doctor {fan.name}' checks)"
            ] if foreign else []


def down(host, name: str, dry_run: bool = False, notes: list | None = None,
         purge: bool = False) -> list:
    """Remove what fangen made for ``name``; [] when it was not up.  ``notes`` gets a
    line when forwarding stays on because something else needs it, and for a bridge
    kept for the containers on it (deleted anyway with ``purge``)."""
    state_mod.check_name(name)
    if dry_run:
        return _plan_down(host, name, notes, purge)[0]
    with lock.held(host.root, f"down {name}"):
        actions, state = _plan_down(host, name, notes, purge)
        if state is None:
            return []
        others = _other_fans(host.root, name)
        if others and state.sysctls:
            heir = _heir(host.root, others)
            if heir is not None:            # the last fan down puts the sysctls back
                for key, value in state.sysctls.items():
                    heir.sysctls.setdefault(key, value)
                state_mod.save(host.root, heir)
        underlay_route.remove(host, name)                # multi-homed hosts (issue 15)
        execute(actions, host, state)
        return actions


def still_wanted(host, name: str) -> str | None:
    """Why ``down --if-unconfigured`` leaves the fan up (None: take it down).

    The fan stays while it is configured and enabled under the same bridge name, when its
    definition has errors, and when a fan.d file cannot be parsed (fan.d(5), SAFETY): a
    restart of its unit, a package upgrade or a crash of ``fangen run`` is not a removal,
    and the containers on its bridge stay attached and keep their traffic."""
    from fangen.config.check import Frozen

    state_mod.check_name(name)
    try:
        fans, errors, _ = load_fans(host.root)
    except Frozen:
        return "a fan.d file cannot be read or parsed, so everything stays as it is"
    fan = fans.get(name)
    if fan is None and any(len(d.path) >= 3 and d.path[2] == name for d in errors):
        return "its definition has errors, so it stays as it is"
    if fan is None or not fan.enabled:
        return None
    try:
        st = state_mod.load(host.root, name)
    except state_mod.StateError:
        return "still configured and enabled"
    if st is None:
        return None                         # not up: down says so
    if st.bridge and st.bridge != fan.bridge:
        return None                         # renamed: the old devices are no longer the fan's
    return "still configured and enabled"


def down_if_unconfigured(host, name: str, dry_run: bool = False,
                         notes: list | None = None, purge: bool = False) -> list | None:
    """``down --if-unconfigured`` (what fangen@NAME.service runs when it stops): take the
    fan down only when it left the configuration, was disabled or renamed its bridge;
    None when it is left up."""
    reason = still_wanted(host, name)
    if reason is None:
        return down(host, name, dry_run=dry_run, notes=notes, purge=purge)
    if notes is not None:
        notes.append(f"{name}: left up: {reason} ('fangen down {name}' takes it down)")
    return None


def _other_fans(root: str, name: str) -> list:
    """The other fans that are up under ``root`` (a state that cannot be read counts: it
    may be up; a bridge kept by down does not)."""
    out = []
    for other in state_mod.names_with_state(root):
        if other == name:
            continue
        try:
            found = state_mod.load(root, other)
        except state_mod.StateError:
            found = None
        if found is None or not found.is_stub():
            out.append(other)
    return out


def _heir(root: str, others: list):
    """The first other fan whose state can be read (a corrupt one is not this fan's
    problem: its down goes on)."""
    for other in others:
        try:
            found = state_mod.load(root, other)
        except state_mod.StateError:
            continue
        if found is not None:
            return found
    return None


def _plan_down(host, name: str, notes: list | None, purge: bool = False,
               state=None) -> tuple[list, object]:
    """(actions, state) of taking ``name`` down; ``state``: the one in memory, not the
    file's."""
    state = state if state is not None else state_mod.load(host.root, name)
    if state is None:
        return [], None
    others = _other_fans(host.root, name)
    keep = []
    if not others and FORWARD_SYSCTL in state.sysctls:
        from fangen.runtime import forwarding
        keep = forwarding.users(host)
        if keep and notes is not None:
            notes.append(f"{name}: net.ipv4.ip_forward stays on: needed by "
                         + "; ".join(keep))
    keep6 = _ipv6_forwarding_users(host, state, others, notes)
    obs = observe_mod.observe(host, name, state.bridge or name, state.tunnel or f"{name}-tun",
                              state)
    actions = P.plan_down(state, obs, last_fan=not others and not keep, purge=purge)
    if keep6:
        actions = [a for a in actions
                   if not (isinstance(a, A.SetSysctl) and a.key == FORWARD6_SYSCTL)]
    actions = _only_marked(host, state, actions, notes)
    if notes is not None:
        for a in actions:
            if isinstance(a, A.KeepBridge):
                notes.append(f"{name}: kept bridge {a.name}: {', '.join(a.ports)} still "
                             f"attached (containers); 'fangen down --purge {name}' deletes "
                             "it and detaches them")
            elif isinstance(a, A.DeleteLink) and (ports := P.foreign_ports(a.name, state, obs)):
                notes.append(f"{name}: deleted bridge {a.name} with {', '.join(ports)} "
                             "attached: their containers are detached")
    return actions, state


def _ipv6_forwarding_users(host, state, others: list, notes: list | None) -> list:
    """Why IPv6 forwarding must stay on when the last (dual-stack) fan goes down."""
    if others or FORWARD6_SYSCTL not in state.sysctls:
        return []
    from fangen.runtime import forwarding

    keep = forwarding.users(host, family=6)
    if keep and notes is not None:
        notes.append(f"{state.name}: net.ipv6.conf.all.forwarding stays on: needed by "
                     + "; ".join(keep))
    return keep


def _only_marked(host, state, actions: list, notes: list | None) -> list:
    """A link is deleted only while it carries the mark fangen gave it: one replaced
    by someone else under the same name stays (a state from before marks: no alias)."""
    from fangen.runtime.netlink import Netlink

    if not any(isinstance(a, A.DeleteLink) for a in actions):
        return actions
    aliases = Netlink(host.ipr).aliases()
    kept = []
    for a in actions:
        if isinstance(a, A.DeleteLink):
            want = state.links.get(a.name, {}).get("mark")
            if aliases.get(a.name) != want:
                if notes is not None:
                    notes.append(f"{state.name}: left {a.name} alone: it does not carry "
                                 f"fangen's mark {want or 'fangen:' + state.name}")
                continue
        kept.append(a)
    return kept


def force_down(host, name: str, dry_run: bool = False, notes: list | None = None,
               purge: bool = False) -> list:
    """``down --force``: down from the state file when it can be read, then remove
    whatever still carries the fan's marks (see fangen.runtime.recover)."""
    from fangen.runtime import recover

    state_mod.check_name(name)
    with lock.held(host.root, f"down --force {name}"):
        done: list = []
        try:
            done = down(host, name, dry_run=dry_run, notes=notes, purge=purge)
        except state_mod.StateError as exc:
            if notes is not None:
                notes.append(f"{name}: state file not used: {exc}".split(";")[0])
                notes.append(f"{name}: net.ipv4.ip_forward left as it is (its earlier "
                             "value was recorded in the state file)")
        steps = recover.plan(host, name, purge=purge)
        if notes is not None:
            notes += [f"{name}: {step}" for step in steps if step.kind == "keep"]
        if not dry_run:
            recover.apply(host, name, steps)
        return done + steps


def status(host, fans: dict) -> list[dict]:
    """One row per configured or recorded fan, for ``fangen show``.

    A fan that is up but no longer carries traffic (its bridge lost the slice address or
    the overlay route, the tunnel went) is "broken", with the reasons in ``problems``.
    """
    from fangen.runtime import health
    from fangen.runtime.netlink import Netlink

    nl = Netlink(host.ipr)
    links = nl.links()
    routes = nl.routes(links)
    rows = []
    for name in sorted(set(fans) | set(state_mod.names_with_state(host.root))):
        fan = fans.get(name)
        try:
            st, corrupt = state_mod.load(host.root, name), False
        except state_mod.StateError:          # `fangen down --force NAME` clears it
            st, corrupt = None, True
        bridge = (fan.bridge if fan else "") or (st.bridge if st else name)
        underlay = (st.underlay.get("network") if st and st.underlay else None)
        up = bool(st and st.slice)
        stub = st is not None and st.is_stub()
        if stub:                              # down kept the bridge for its containers
            problems = [_kept_reason(name, kept, links) for kept in st.kept]
        else:
            problems = [reason for _, reason in health.problems(st, links, routes)] \
                if st is not None else []
        row = {
            "name": name,
            "bridge": bridge,
            "tunnel": (st.tunnel if st and st.tunnel else (fan.tunnel if fan else None)),
            "overlay": str(fan.overlay) if fan else (st.overlay if st else ""),
            "underlay": underlay or (fan.underlay.spec if fan else ""),
            "underlay_address": (st.underlay.get("address") if st and st.underlay else None),
            "underlay_interface": (st.underlay.get("ifname") if st and st.underlay else None),
            "slice": (st.slice if up else None),
            "gateway": (st.gateway if up else None),
            "bridge_address": (health.bridge_address(st) if up else None),
            "mtu": (st.mtu if up and st.mtu else None),
            "overlay6": str(fan.overlay6) if fan and fan.overlay6 is not None else None,
            "slice6": _slice6(fan, st.slice) if up and fan else None,
            "type": fan.type if fan else (st.type if st else ""),
            "datapath": (st.datapath if st and st.datapath else
                         (choose_datapath(fan, host.proc) if fan else "")),
            "state": "corrupt" if corrupt else _state_word(fan, None if stub else st,
                                                           problems, stub),
            "problems": problems,
        }
        rows.append(row)
    return rows


def _slice6(fan, slice_text: str) -> str | None:
    """A dual-stack fan's IPv6 slice on this host (from its IPv4 slice), or None."""
    from ipaddress import IPv4Network

    try:
        sl6 = fan.slice6_of(IPv4Network(slice_text))
    except ValueError:
        return None
    return str(sl6.network) if sl6 is not None else None


def _kept_reason(name: str, bridge: str, links: dict) -> str:
    ports = sorted(n for n, link in links.items() if link.master == bridge)
    if bridge not in links:
        return f"bridge {bridge} (kept by down) is gone; 'fangen down {name}' forgets it"
    return (f"bridge {bridge} kept by down for its ports ({', '.join(ports) or 'none now'}); "
            f"'fangen down --purge {name}' deletes it")


def _state_word(fan, st, problems, stub: bool = False) -> str:
    if stub and fan is None:
        return "removed"          # only the kept bridge is left
    if st is None:
        return "disabled" if fan is not None and not fan.enabled else "down"
    if fan is None:
        return "removed"          # up, but no longer configured: `fangen down` cleans it
    return "broken" if problems else "up"
