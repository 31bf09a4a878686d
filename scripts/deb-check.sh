#!/bin/bash
# deb-check: build the fangen .deb, lint it, install it into a throwaway
# Debian 12 root and run it there.  Called by `make deb-check` (mk/deb.mk).
#
#   1. install the build tools and Build-Depends with apt-get (only what is missing);
#   2. copy the tree to $CACHE/deb-build/src and run `dpkg-buildpackage -us -uc -b`
#      there: nothing is built inside the checkout; the .deb ends in
#      $CACHE/deb-build/out/ (printed at the end; the boot check reuses it);
#   3. lintian on the .changes: any error fails, warnings are counted;
#   4. a minbase bookworm root made with debootstrap, with the package's
#      dependencies already in it, cached as $CACHE/debroot-<key>, the key a hash
#      of the suite, the mirror and the dependency list; each run works on an
#      overlay (or a copy) of it, so the cache stays clean;
#   5. in that root: apt-get install ./fangen_*.deb, fangen --help, validate and
#      generate of every example, the generator, the installed files, then purge.
#
#   scripts/deb-check.sh --build-only   steps 1-2 only; the last line printed is the
#   .deb's path (the boot check, boot/image.sh, builds the package this way).
#
# Needs root.  Mounts (overlay, /proc, /dev) are undone on every exit path.
# Environment: FANGEN_CACHE (default /var/cache/fangen), FANGEN_DEBIAN_MIRROR
# (default http://deb.debian.org/debian), FANGEN_DEB_SUITE (default bookworm).

set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${FANGEN_CACHE:-/var/cache/fangen}
MIRROR=${FANGEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${FANGEN_DEB_SUITE:-bookworm}
WORK=$CACHE/deb-build
OUT=$WORK/out
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
# Debian's tools and Debian's python3 only (a pyenv or venv python first on PATH
# would build against the wrong interpreter).
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV PYTHONDONTWRITEBYTECODE

BUILD_ONLY=0
case "${1:-}" in
--build-only) BUILD_ONLY=1 ;;
"") ;;
*) echo "usage: $0 [--build-only]" >&2; exit 2 ;;
esac

say() { printf '\n== deb-check: %s\n' "$*"; }
die() { printf 'deb-check: FAIL: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }
START=$(now)

[ "$(id -u)" = 0 ] || die "needs root (apt-get, debootstrap, chroot, mount)"

# -- 1. tools and build dependencies -------------------------------------------------------
TOOLS="dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools
python3-pytest python3-yaml python3-jsonschema lintian debootstrap"
# shellcheck disable=SC2086
"$REPO/scripts/need-packages.sh" deb-check $TOOLS
cd "$REPO"
dpkg-checkbuilddeps debian/control || die "build dependencies not satisfied"

# -- 2. build in a copy of the tree -----------------------------------------------------
VERSION=$(dpkg-parsechangelog -l debian/changelog -S Version)
UPSTREAM=${VERSION%-*}
SRC=$WORK/src/fangen-$UPSTREAM
say "building fangen $VERSION in $SRC"
rm -rf "$WORK/src" "$OUT"
mkdir -p "$SRC" "$OUT"
tar -C "$REPO" --exclude=./.git --exclude=./.venv\* --exclude=.pytest_cache \
	--exclude=__pycache__ --exclude=\*.pyc --exclude=./build --exclude=./dist \
	--exclude=\*.egg-info --exclude=./debian/fangen --exclude=./debian/.debhelper \
	-cf - . | tar -C "$SRC" -xf -
(cd "$SRC" && dpkg-buildpackage -us -uc -b) >"$WORK/build.log" 2>&1 ||
	{ tail -n 60 "$WORK/build.log"; die "dpkg-buildpackage failed (log: $WORK/build.log)"; }
grep -E '^[0-9]+ passed|passed|failed|skipped' "$WORK/build.log" | tail -n 3 || true
mv "$WORK"/src/fangen_"$VERSION"_* "$OUT"/
DEB=$(ls "$OUT"/fangen_"$VERSION"_all.deb)
CHANGES=$(ls "$OUT"/fangen_"$VERSION"_*.changes)
rm -rf "$WORK/src"
echo "built $DEB"
if [ $BUILD_ONLY = 1 ]; then
	echo "$DEB"
	exit 0
fi

# -- 3. lintian -------------------------------------------------------------------------
say "lintian"
lintian --info --display-info --pedantic "$CHANGES" >"$WORK/lintian.log" 2>&1 || true
cat "$WORK/lintian.log"
errors=$(grep -c '^E: ' "$WORK/lintian.log" || true)
warnings=$(grep -c '^W: ' "$WORK/lintian.log" || true)
others=$(grep -c '^[IPX]: ' "$WORK/lintian.log" || true)
echo "lintian: $errors errors, $warnings warnings, $others info/pedantic/experimental tags"
[ "$errors" = 0 ] || die "lintian reported $errors errors"

# -- 4. the throwaway root ---------------------------------------------------------------
# Dependencies of the .deb, first alternative of each, without versions or :any.
DEPS=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' \
	-e 's/:any//' -e 's/[[:space:]]//g' | grep -v '^$' | sort -u | tr '\n' ' ')
KEY=$(printf '%s\n' "$SUITE" "$MIRROR" minbase $DEPS | sha256sum | cut -c1-16)
BASE=$CACHE/debroot-$KEY
if [ ! -e "$BASE/.deb-check-root" ]; then
	say "debootstrap $SUITE (minbase + ${DEPS% }) into $BASE"
	rm -rf "$BASE" "$BASE.tmp"
	debootstrap --variant=minbase --include="$(echo $DEPS | tr ' ' ',')" \
		"$SUITE" "$BASE.tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
		{ tail -n 30 "$WORK/debootstrap.log"; rm -rf "$BASE.tmp"; die "debootstrap failed"; }
	chroot "$BASE.tmp" apt-get clean
	touch "$BASE.tmp/.deb-check-root"
	mv "$BASE.tmp" "$BASE"
	# Roots this script made for another dependency list are of no more use
	# (only those carrying its marker: other checks may keep roots here too).
	for old in "$CACHE"/debroot-*; do
		[ "$old" != "$BASE" ] && [ -e "$old/.deb-check-root" ] && rm -rf "$old"
	done
else
	say "reusing $BASE"
fi

RUN=$WORK/root
ROOT=$RUN/merged
MOUNTS=()
cleanup() {
	local i
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true
	done
	MOUNTS=()
	rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup
mkdir -p "$RUN/upper" "$RUN/work" "$ROOT"
if mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$RUN/upper,workdir=$RUN/work" \
	"$ROOT" 2>/dev/null; then
	MOUNTS+=("$ROOT")
else
	echo "overlayfs not available: copying the root"
	cp -a "$BASE/." "$ROOT/"
fi
mount -t proc proc "$ROOT/proc" && MOUNTS+=("$ROOT/proc")
mount --bind /dev "$ROOT/dev" && MOUNTS+=("$ROOT/dev")
mount --bind /dev/pts "$ROOT/dev/pts" && MOUNTS+=("$ROOT/dev/pts")
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
cp "$DEB" "$ROOT/tmp/"
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

# -- 5. install and run -------------------------------------------------------------------
say "apt-get install ./$(basename "$DEB") in the throwaway root"
in_root apt-get install -y --no-install-recommends "/tmp/$(basename "$DEB")" ||
	{ in_root apt-get update && in_root apt-get install -y --no-install-recommends \
		"/tmp/$(basename "$DEB")"; } || die "the package does not install"

say "running fangen in the throwaway root"
in_root /bin/sh -euxc '
	test -x /usr/sbin/fangen
	test -x /usr/lib/systemd/system-generators/fangen
	head -n1 /usr/lib/systemd/system-generators/fangen | grep -Eqx "#!/usr/bin/python3 -I ?-S|#!/usr/bin/python3 -IS"
	for unit in fangen.service fangen@.service \
	            fangen-dnsmasq@.service fangen-apply.service; do
		test -f /usr/lib/systemd/system/$unit
	done
	test -f /usr/lib/udev/rules.d/90-fangen.rules
	test -f /usr/share/man/man8/fangen.8.gz
	test -f /usr/share/man/man5/fan.d.5.gz
	test -f /usr/share/man/man8/fangen-generator.8.gz
	python3 -c "import json; json.load(open(\"/usr/share/fangen/schema.json\"))"
	test -f /usr/share/doc/fangen/examples/docker/host-172.16.3.4/daemon.json
	test -f /usr/share/doc/fangen/examples/docker-ipip/host-172.16.3.4/daemon.json
	test -f /usr/share/doc/fangen/examples/lxd/profile.yaml
	fangen --help
	fangen --version
	for cmd in validate generate map up down show apply run docker doctor; do
		fangen $cmd --help >/dev/null
	done
	for example in $(find /usr/share/doc/fangen/examples -name "*.yaml" ! -name profile.yaml | sort); do
		name=$(basename "$example" .yaml)
		root=/tmp/fanroot/$name
		install -D -m 600 "$example" "$root/etc/netplan/fan.d/$name.yaml"
		fangen validate --root-dir "$root"
		fangen generate --root-dir "$root"
		ls "$root/run/systemd/network/" | grep -q "^10-fangen-"
	done
	fangen map 100.66.200.5 --fan rack --root-dir /tmp/fanroot/small-underlay |
		grep -q "owned by underlay host 10.224.220.11"
	mkdir -p /tmp/gen
	# run as systemd runs it: through its #! line, not as "python3 FILE"
	/usr/lib/systemd/system-generators/fangen --root-dir /tmp/fanroot/vxlan /tmp/gen
	/usr/lib/systemd/system-generators/fangen /tmp/gen-empty
	test ! -e /tmp/gen-empty/multi-user.target.wants
	test -L /tmp/gen/multi-user.target.wants/fangen.service
	test "$(ls /tmp/gen)" = multi-user.target.wants    # nothing in front of the network
	test ! -e /usr/lib/systemd/system/fangen-generate.service
	getent passwd dnsmasq >/dev/null
'
say "purging the package"
in_root apt-get purge -y fangen || die "the package does not purge cleanly"
in_root sh -c '! test -e /usr/sbin/fangen && ! test -e /usr/share/doc/fangen'

cleanup
say "OK in $(($(now) - START)) s: $DEB (lintian: $errors errors, $warnings warnings)"
