# boot-check: build (or reuse) a Debian 12 guest image with systemd, netplan.io and
# the fangen .deb (boot/image.sh; cached in $(CACHE)/boot keyed by the package list,
# the .deb's hash and the guest files), boot three guests under qemu (TCG) on a DHCP
# underlay inside a network namespace, and check the fan at boot, on netplan apply,
# with broken fan.d files, plus systemd-analyze timings (docs/BOOT.md).  Needs root.
# Fresh machine: ~10-15 min (debootstrap, the .deb, the boots); warm: a few minutes.
.PHONY: boot-check boot-image
CHECK_TARGETS += boot-check

boot-check:
	FANGEN_CACHE=$(CACHE) $(PYTHON) boot/check.py

boot-image:
	FANGEN_CACHE=$(CACHE) boot/image.sh
