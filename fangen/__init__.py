"""fangen: Fan networking for netplan and systemd-networkd."""

__version__ = "0.1.0"
