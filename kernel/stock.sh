#!/bin/bash
# Fetch Debian's stock kernel (the package linux-image-amd64 depends on) without
# installing it, and build a small initramfs that loads the modules the test
# guest needs (9p root, veth, bridge, ipip, vxlan, tc bpf) and then switches
# to the host's root filesystem over 9p.  Prints "VMLINUZ INITRD MODULES_DIR";
# with fangen.modules=MODULES_DIR on the kernel command line,
# kernel/guest-init.sh points the kernel's modprobe at that directory, so
# module autoloading works in the guest (the rest of the modules, softdeps).
#
# Cache: ${FANGEN_KERNEL_CACHE:-/var/cache/fangen/kernel}/stock-<package>-<version>-<key>/
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${FANGEN_KERNEL_CACHE:-/var/cache/fangen/kernel}
MODULES=(virtio_pci 9pnet_virtio 9p veth bridge ipip vxlan cls_bpf sch_ingress af_packet)

log() { echo "kernel/stock.sh: $*" >&2; }

# the host's tools: boot-check runs this before kernel-check's kernel/deps.sh, so on a
# fresh machine nothing else has installed them yet
"$HERE/../scripts/need-packages.sh" kernel/stock.sh kmod cpio

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$pkg" ] || { log "cannot resolve linux-image-amd64 (apt-get update?)"; exit 1; }
ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
key=$( { cat "$0"; echo "${MODULES[*]}"; } | sha256sum | cut -c1-8)
DIR=$CACHE/stock-$pkg-$ver-$key
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9

if [ ! -f "$DIR/done" ]; then
	rm -rf "$DIR/root" "$DIR/initramfs" "$DIR"/*.deb
	log "downloading $pkg $ver"
	(cd "$DIR" && apt-get download "$pkg=$ver" >&2 2>/dev/null ||
		{ apt-get update >&2 && apt-get download "$pkg=$ver" >&2; })
	dpkg-deb -x "$DIR"/*.deb "$DIR/root"
	kver=$(basename "$(ls -d "$DIR"/root/lib/modules/*)")
	log "building the initramfs for $kver"
	depmod -b "$DIR/root" "$kver"
	stage=$DIR/initramfs
	mkdir -p "$stage"/{bin,dev,proc,sys,newroot,modules}
	cp /bin/busybox "$stage/bin/busybox"
	/usr/bin/python3 - "$DIR/root/lib/modules/$kver" "$stage/modules" "${MODULES[@]}" <<'EOF'
import lzma, os, shutil, sys
moddir, dest, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
builtin = {os.path.basename(l.strip()).split(".")[0]
           for l in open(os.path.join(moddir, "modules.builtin"))}
deps = {}
for line in open(os.path.join(moddir, "modules.dep")):
    path, _, rest = line.partition(":")
    deps[path] = rest.split()
byname = {os.path.basename(p).split(".")[0].replace("-", "_"): p for p in deps}
order, seen = [], set()
def visit(path):
    if path in seen:
        return
    seen.add(path)
    for d in deps[path]:
        visit(d)
    order.append(path)
for name in wanted:
    key = name.replace("-", "_")
    if key in byname:
        visit(byname[key])
    elif key not in {b.replace("-", "_") for b in builtin}:
        sys.exit(f"module {name} neither built in nor in modules.dep")
with open(os.path.join(dest, "order"), "w") as f:
    for path in order:
        base = os.path.basename(path)
        src = os.path.join(moddir, path)
        out = base[:-3] if base.endswith(".xz") else base
        if base.endswith(".xz"):
            with lzma.open(src) as i, open(os.path.join(dest, out), "wb") as o:
                shutil.copyfileobj(i, o)
        else:
            shutil.copy(src, os.path.join(dest, out))
        f.write(out + "\n")
EOF
	cat > "$stage/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do
	insmod "/modules/$m" || echo "initramfs: insmod $m failed"
done
init=/sbin/init
for arg in $(cat /proc/cmdline); do
	case "$arg" in init=*) init=${arg#init=} ;; esac
done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro root /newroot ||
	{ echo "initramfs: cannot mount the 9p root"; poweroff -f; }
umount /proc /sys
umount /dev
exec switch_root /newroot "$init"
EOF
	chmod +x "$stage/init"
	(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1 > "$DIR/initrd.tmp")
	mv "$DIR/initrd.tmp" "$DIR/initrd.img"
	cp "$DIR/root/boot/vmlinuz-$kver" "$DIR/vmlinuz"
	rm -f "$DIR"/*.deb
	touch "$DIR/done"
fi
echo "$DIR/vmlinuz $DIR/initrd.img $DIR/root/lib/modules"
