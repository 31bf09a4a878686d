"""What container engines (Docker, podman, LXD) need from a fan on this host.

:mod:`fangen.engines.common` is engine-neutral and pure: from a fan and this host's
slice it computes the network an engine attaches containers to (subnet, address
range, gateway, MTU, addresses to keep out).  One module per engine turns that into
the engine's own settings, e.g. :mod:`fangen.engines.docker`.
"""
