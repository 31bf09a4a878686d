"""up, down and show for one host: load state, observe, plan, execute, verify."""

from __future__ import annotations

from dataclasses import dataclass

from fangen.config.model import Fan
from fangen.errors import ConfigError, FangenError
from fangen.runtime import observe as observe_mod
from fangen.runtime import plan as P
from fangen.runtime import state as state_mod
from fangen.runtime import underlay as underlay_mod
from fangen.runtime.execute import execute
from fangen.runtime.host import choose_datapath


class NotCarrying(FangenError):
    """up finished but the fan does not look ready."""


def load_fans(root: str) -> tuple[dict, list, object]:
    """({name: Fan} of valid fans, diagnostics of errors, report); raises
    fangen.config.check.Frozen when a fan.d file is broken (fan.d(5), SAFETY)."""
    from fangen import hostnames
    from fangen.config.check import load_checked, require_unfrozen

    report, result, _ = load_checked(root, hostnames.collect(root, hostnames.live_wanted(root)))
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


def plan_for(host, fan: Fan, resolved: underlay_mod.Resolved) -> tuple[P.Target, list]:
    state = state_mod.load(host.root, fan.name)
    target = P.Target(fan, resolved, choose_datapath(fan, host.proc), host.root, host.systemd)
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
    target, actions = plan_for(host, fan, resolved)
    if not dry_run:
        state = state_mod.load(host.root, fan.name) or state_mod.State(fan.name)
        execute(actions, host, state)
        verify(host, target)
    return UpResult(fan, target, actions)


def verify(host, t: P.Target) -> None:
    """The fan carries traffic: devices up and addressed, datapath, nft, dnsmasq."""
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
    if t.external and set(obs.tc.get(t.tunnel, {})) != {"ingress", "egress"}:
        problems.append(f"the fan programs are not attached to {t.tunnel}")
    from fangen.render import nft as render_nft
    if render_nft.table_name(fan.name) not in obs.nft_tables:
        problems.append("the nft table is missing")
    if fan.dhcp and not obs.dnsmasq_running:
        problems.append("dnsmasq is not running")
    if problems:
        raise NotCarrying(f"{fan.name}: not ready: " + "; ".join(problems))


def down(host, name: str, dry_run: bool = False) -> list:
    """Remove what fangen made for ``name``; [] when it was not up."""
    state = state_mod.load(host.root, name)
    if state is None:
        return []
    others = [n for n in state_mod.names_with_state(host.root) if n != name]
    obs = observe_mod.observe(host, name, state.bridge or name, state.tunnel or f"{name}-tun",
                              state)
    actions = P.plan_down(state, obs, last_fan=not others)
    if dry_run:
        return actions
    if others and state.sysctls:
        heir = state_mod.load(host.root, others[0])
        if heir is not None:            # the last fan down puts the sysctls back
            for key, value in state.sysctls.items():
                heir.sysctls.setdefault(key, value)
            state_mod.save(host.root, heir)
    execute(actions, host, state)
    return actions


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
        st = state_mod.load(host.root, name)
        bridge = (fan.bridge if fan else "") or (st.bridge if st else name)
        underlay = (st.underlay.get("network") if st and st.underlay else None)
        up = bool(st and st.slice)
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
            "type": fan.type if fan else (st.type if st else ""),
            "datapath": (st.datapath if st and st.datapath else
                         (choose_datapath(fan, host.proc) if fan else "")),
            "state": _state_word(fan, st, problems),
            "problems": problems,
        }
        rows.append(row)
    return rows


def _state_word(fan, st, problems) -> str:
    if st is None:
        return "disabled" if fan is not None and not fan.enabled else "down"
    if fan is None:
        return "removed"          # up, but no longer configured: `fangen down` cleans it
    return "broken" if problems else "up"
