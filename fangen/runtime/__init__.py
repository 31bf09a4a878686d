"""The runtime: plan, then apply.

``underlay`` finds (and follows) the underlay address, ``observe`` reads what the
kernel holds now (as ``view`` types), ``plan`` computes the ``actions`` as data
(pure), ``execute`` carries them out through small handles (``netlink``, ``nft``,
``dnsmasq``, ``dbus``) and lets each action record itself in ``state`` (pure
bookkeeping), so that ``down`` removes exactly what was made.  ``control`` wires
this together for the CLI; ``follow`` is the small long-running loop of ``fangen
run``, ``reconcile`` the work its children do.  Nothing here is a module-level singleton:
every handle (an IPRoute bound to a namespace, a D-Bus connection, a root
directory) is passed in.
"""
