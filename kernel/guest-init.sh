#!/bin/sh
# PID 1 of the test guest (see kernel/boot.sh): the root filesystem is the
# host's, read-only over 9p.  Mount the basics, run OUT/cmd, record its exit
# code in OUT/rc and power off (qemu runs with -no-reboot).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 FANGEN_VM_OUT=/tmp/out
BB=/bin/busybox

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
for d in /tmp /run /var/tmp; do
	mount -t tmpfs -o mode=1777 tmpfs "$d"
done
mkdir -p /run/netns /tmp/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 fangenout /tmp/out
# the working directory, at its own path again (a checkout under /tmp is hidden above)
wd=$(cat /tmp/out/wd 2>/dev/null)
if [ -n "$wd" ] && [ "$wd" != / ]; then
	mkdir -p "$wd" 2>/dev/null
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro fangenwd "$wd" ||
		echo "guest: cannot mount the working directory $wd"
fi
hostname fangen-vm 2>/dev/null || true
# A kernel whose modules are not installed on the host (kernel/stock.sh):
# fangen.modules=DIR/lib/modules holds them; make module autoloading use it.
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	fangen.modules=*)
		dir=${arg#fangen.modules=}
		if [ ! -d "/lib/modules/$(uname -r)" ] && [ -d "$dir/$(uname -r)" ]; then
			printf '#!/bin/sh\nexec /sbin/modprobe -d %s "$@"\n' "${dir%/lib/modules}" \
				> /run/fangen-modprobe
			chmod 755 /run/fangen-modprobe
			echo /run/fangen-modprobe > /proc/sys/kernel/modprobe
		fi ;;
	esac
done
ip link set lo up

echo "guest: $(uname -r), running $(cat /tmp/out/cmd | tail -1)"
(
	sh /tmp/out/cmd
	echo $? > /tmp/out/rc.tmp
) 2>&1 | tee /tmp/out/output
rc=$(cat /tmp/out/rc.tmp 2>/dev/null || echo 125)
mv /tmp/out/rc.tmp /tmp/out/rc 2>/dev/null
sync
echo "guest: exit $rc"
$BB reboot -f
sleep 5
echo o > /proc/sysrq-trigger 2>/dev/null
