#!/bin/bash
# Build (or reuse) the boot check's guest image: a Debian 12 root with systemd as
# PID 1, systemd-networkd, netplan.io, dnsmasq-base, nftables and the fangen .deb
# built from this tree, booting Debian's stock kernel.  Prints three lines:
#
#   ROOT_IMAGE   raw ext4 image (guests boot copy-on-write qcow2 overlays of it)
#   VMLINUZ      Debian's stock kernel (kernel/stock.sh fetches it)
#   INITRD       an initramfs made by initramfs-tools inside the image
#
# Two cache levels under $FANGEN_CACHE/boot (default /var/cache/fangen/boot):
#   base-<key>   the debootstrap tree; key = suite, mirror, package list, BASE_RECIPE
#   image-<key>  root.img, vmlinuz, initrd.img; key = base key, the .deb's sha256,
#                the stock kernel, the files under boot/guest/ and this script
# The .deb comes from `scripts/deb-check.sh --build-only` (FANGEN_BOOT_DEB=FILE
# uses a given one).  Needs root; no loop devices (mkfs.ext4 -d), no mounts except
# /proc, /sys, /dev of the chroot while the image is prepared (undone on exit).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${FANGEN_CACHE:-/var/cache/fangen}
BOOT_CACHE=$CACHE/boot
MIRROR=${FANGEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${FANGEN_DEB_SUITE:-bookworm}
BASE_RECIPE=1          # bump when the way the base tree is made changes
IMAGE_SIZE=2G
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV

# What a Debian host running fangen on netplan has, plus busybox-static (the guest's
# "containers" use its udhcpc) and initramfs-tools (the guest's initramfs).
PACKAGES="systemd systemd-sysv udev dbus kmod procps netplan.io dnsmasq-base nftables
iproute2 python3 python3-yaml python3-jsonschema python3-pyroute2
python3-dbus busybox-static initramfs-tools"

log() { echo "boot/image.sh: $*" >&2; }
die() { echo "boot/image.sh: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
# the host's tools (only what is missing)
"$REPO/scripts/need-packages.sh" boot/image.sh debootstrap e2fsprogs qemu-system-x86 dnsmasq-base
mkdir -p "$BOOT_CACHE"
exec 8>"$BOOT_CACHE/.lock"
flock 8

# -- the package --------------------------------------------------------------------
DEB=${FANGEN_BOOT_DEB:-}
if [ -z "$DEB" ]; then
	log "building the .deb (scripts/deb-check.sh --build-only)"
	FANGEN_CACHE=$CACHE "$REPO/scripts/deb-check.sh" --build-only >"$BOOT_CACHE/deb-build.log" 2>&1 ||
		{ tail -n 40 "$BOOT_CACHE/deb-build.log" >&2; die "building the .deb failed"; }
	DEB=$(tail -n 1 "$BOOT_CACHE/deb-build.log")
fi
[ -f "$DEB" ] || die "no .deb at '$DEB'"
DEB_SHA=$(sha256sum "$DEB" | cut -c1-64)
# The package's own dependencies join the list (first alternative, no versions).
DEPS=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' \
	-e 's/:any//' -e 's/[[:space:]]//g' | grep -v '^$' || true)
PKGLIST=$(printf '%s\n' $PACKAGES $DEPS | sort -u | tr '\n' ' ')

# -- the stock kernel (kernel/stock.sh: the kernel harness's copy) ------------------------
read -r VMLINUZ _ < <("$REPO/kernel/stock.sh")
KDIR=$(dirname "$VMLINUZ")
KVER=$(basename "$(ls -d "$KDIR"/root/lib/modules/*)")

# -- level 1: debootstrap tree ----------------------------------------------------------
BASE_KEY=$(printf '%s\n' "$BASE_RECIPE" "$SUITE" "$MIRROR" $PKGLIST | sha256sum | cut -c1-16)
BASE=$BOOT_CACHE/base-$BASE_KEY
if [ ! -f "$BASE/.fangen-boot-base" ]; then
	log "debootstrap $SUITE into $BASE ($PKGLIST)"
	rm -rf "$BASE" "$BASE.tmp"
	start=$(date +%s)
	debootstrap --variant=minbase --include="$(echo $PKGLIST | tr ' ' ',')" \
		"$SUITE" "$BASE.tmp" "$MIRROR" >"$BOOT_CACHE/debootstrap.log" 2>&1 ||
		{ tail -n 30 "$BOOT_CACHE/debootstrap.log" >&2; rm -rf "$BASE.tmp"; die "debootstrap failed"; }
	chroot "$BASE.tmp" apt-get clean
	touch "$BASE.tmp/.fangen-boot-base"
	mv "$BASE.tmp" "$BASE"
	log "debootstrap took $(($(date +%s) - start)) s"
	for old in "$BOOT_CACHE"/base-*; do
		[ "$old" = "$BASE" ] || rm -rf "$old"
	done
fi

# -- level 2: the image -------------------------------------------------------------------
IMAGE_KEY=$( {
	echo "$BASE_KEY $DEB_SHA $KVER $VMLINUZ $IMAGE_SIZE"
	cat "$0"
	find "$HERE/guest" -type f | sort | xargs cat
	find "$HERE/guest" -type f | sort
	cat "$REPO/tests/harness/udhcpc.sh"
} | sha256sum | cut -c1-16)
IMG=$BOOT_CACHE/image-$IMAGE_KEY
if [ -f "$IMG/done" ]; then
	log "cached image $IMG"
	printf '%s\n' "$IMG/root.img" "$IMG/vmlinuz" "$IMG/initrd.img"
	exit 0
fi

log "preparing the image $IMG (fangen $(dpkg-deb -f "$DEB" Version), kernel $KVER)"
rm -rf "$IMG" "$IMG.tmp"
mkdir -p "$IMG.tmp"
TREE=$IMG.tmp/tree
MOUNTS=()
cleanup() {
	local i
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true
	done
	MOUNTS=()
}
trap 'cleanup; rm -rf "$IMG.tmp"' EXIT
trap 'exit 130' INT TERM
cp -a "$BASE" "$TREE"
rm -f "$TREE/.fangen-boot-base"
mount -t proc proc "$TREE/proc" && MOUNTS+=("$TREE/proc")
mount -t sysfs sysfs "$TREE/sys" && MOUNTS+=("$TREE/sys")
mount --bind /dev "$TREE/dev" && MOUNTS+=("$TREE/dev")
in_root() { chroot "$TREE" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

# The stock kernel's modules and config (mkinitramfs wants both).
mkdir -p "$TREE/lib/modules" "$TREE/boot"
cp -a "$KDIR/root/lib/modules/$KVER" "$TREE/lib/modules/"
cp "$KDIR"/root/boot/config-"$KVER" "$KDIR"/root/boot/System.map-"$KVER" "$TREE/boot/"
in_root depmod "$KVER"

# fangen, as a user installs it (its dependencies are in the base already).
cp "$DEB" "$TREE/tmp/"
printf '#!/bin/sh\nexit 101\n' >"$TREE/usr/sbin/policy-rc.d"
chmod 755 "$TREE/usr/sbin/policy-rc.d"
in_root dpkg -i "/tmp/$(basename "$DEB")" >"$IMG.tmp/dpkg.log" 2>&1 ||
	{ cat "$IMG.tmp/dpkg.log" >&2; die "dpkg -i fangen failed"; }
rm -f "$TREE/usr/sbin/policy-rc.d" "$TREE/tmp/$(basename "$DEB")"

# The guest's files: netplan, the container script and unit, the scenario, the
# initramfs hook that applies the role given on the kernel command line.
cp -a "$HERE/guest/." "$TREE/"
install -m 755 "$REPO/tests/harness/udhcpc.sh" "$TREE/usr/local/lib/fangen-boot/udhcpc.sh"
chown -R root:root "$TREE/etc/netplan" "$TREE/usr/local" "$TREE/etc/systemd/system" \
	"$TREE/etc/initramfs-tools"
chmod 600 "$TREE"/etc/netplan/*.yaml
find "$TREE/usr/local/share/fangen-boot" -name '*.yaml' -exec chmod 600 {} +
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$TREE/etc/fstab"
echo fangen-guest >"$TREE/etc/hostname"
: >"$TREE/etc/machine-id"               # written per guest by the initramfs hook
in_root passwd -d root >/dev/null
in_root systemctl enable systemd-networkd.service fangen-boot-container.service \
	fangen-boot-scenario.service >/dev/null 2>&1
# network-online.target as on a host using networkd (netplan's generator links the same):
# boot/check.py reports when it is reached, with and without fans
in_root systemctl enable systemd-networkd-wait-online.service >/dev/null 2>&1
# initramfs-tools: only what this guest's disk needs
printf 'MODULES=list\nCOMPRESS=gzip\n' >"$TREE/etc/initramfs-tools/conf.d/fangen-boot.conf"
printf 'virtio_pci\nvirtio_blk\next4\n' >"$TREE/etc/initramfs-tools/modules"
in_root mkinitramfs -o /boot/initrd.img-"$KVER" "$KVER" >"$IMG.tmp/mkinitramfs.log" 2>&1 ||
	{ cat "$IMG.tmp/mkinitramfs.log" >&2; die "mkinitramfs failed"; }
cp "$TREE/boot/initrd.img-$KVER" "$IMG.tmp/initrd.img"
cp "$VMLINUZ" "$IMG.tmp/vmlinuz"
cleanup

log "mkfs.ext4 -d ($IMAGE_SIZE)"
mkfs.ext4 -q -F -L fangen-root -d "$TREE" "$IMG.tmp/root.img" "$IMAGE_SIZE" ||
	die "mkfs.ext4 failed"
rm -rf "$TREE"
touch "$IMG.tmp/done"
mv "$IMG.tmp" "$IMG"
trap - EXIT
for old in "$BOOT_CACHE"/image-*; do
	[ "$old" = "$IMG" ] || rm -rf "$old"
done
printf '%s\n' "$IMG/root.img" "$IMG/vmlinuz" "$IMG/initrd.img"
