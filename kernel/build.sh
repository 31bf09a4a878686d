#!/bin/bash
# Build the fan test kernel: Debian's linux-source-6.1 + kernel/patches/*.patch
# + a trimmed config (tinyconfig + kernel/config.fragment), cached by key.
#
#   kernel/build.sh            build (or reuse) and print the bzImage path
#   kernel/build.sh --key      print the cache key only
#   kernel/build.sh --tree     build (or reuse) and print the source tree path
#
# Cache: ${FANGEN_KERNEL_CACHE:-/var/cache/fangen/kernel}/<key>/ with
#   src/       the extracted, patched and built tree (reused for rebuilds)
#   bzImage    the result, config (the .config), build.log, done (stamp)
# key = sha256 of the patches, the config fragment, this recipe's version and
# the linux-source-6.1 package version.  Progress goes to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${FANGEN_KERNEL_CACHE:-/var/cache/fangen/kernel}
SRC_PKG=linux-source-6.1
SRC_TAR=/usr/src/linux-source-6.1.tar.xz
RECIPE=3	# bump when the way the tree is built changes
JOBS=${JOBS:-$(nproc)}

log() { echo "kernel/build.sh: $*" >&2; }

src_version() {
	dpkg-query -W -f='${Version}' "$SRC_PKG" 2>/dev/null || echo unknown
}

cache_key() {
	{
		echo "recipe $RECIPE"
		echo "source $SRC_PKG $(src_version)"
		for p in "$HERE"/patches/*.patch; do
			[ -e "$p" ] || continue
			echo "patch $(basename "$p")"
			cat "$p"
		done
		echo "config"
		cat "$HERE/config.fragment"
	} | sha256sum | cut -c1-16
}

mode=image
case "${1:-}" in
--key) cache_key; exit 0 ;;
--tree) mode=tree ;;
"") ;;
*) echo "usage: $0 [--key|--tree]" >&2; exit 2 ;;
esac

[ -r "$SRC_TAR" ] || { log "$SRC_TAR missing (apt-get install $SRC_PKG)"; exit 1; }

KEY=$(cache_key)
DIR=$CACHE/$KEY
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9

if [ -f "$DIR/done" ] && [ -f "$DIR/bzImage" ]; then
	log "cached kernel $KEY"
	if [ $mode = tree ]; then echo "$DIR/src"; else echo "$DIR/bzImage"; fi
	exit 0
fi

start=$(date +%s)
if [ ! -f "$DIR/src/.fangen-patched" ]; then
	log "extracting $SRC_TAR ($SRC_PKG $(src_version)) into $DIR"
	rm -rf "$DIR/src" "$DIR/src.tmp"
	mkdir -p "$DIR/src.tmp"
	tar -xJf "$SRC_TAR" -C "$DIR/src.tmp" --strip-components=1
	for p in "$HERE"/patches/*.patch; do
		[ -e "$p" ] || continue
		log "applying $(basename "$p")"
		patch -d "$DIR/src.tmp" -p1 --batch --forward --quiet < "$p"
	done
	touch "$DIR/src.tmp/.fangen-patched"
	mv "$DIR/src.tmp" "$DIR/src"
fi

cd "$DIR/src"
log "configuring (tinyconfig + config.fragment)"
make -s tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$HERE/config.fragment" >/dev/null 2>&1
make -s olddefconfig >/dev/null 2>&1
missing=0
while read -r line; do
	case "$line" in
	CONFIG_*=*)
		grep -qx "$line" .config || { log "config: $line did not stick"; missing=1; } ;;
	"# CONFIG_"*" is not set")
		opt=${line#\# }; opt=${opt%% *}
		! grep -q "^$opt=" .config || { log "config: $opt still set"; missing=1; } ;;
	esac
done < "$HERE/config.fragment"
[ $missing = 0 ] || exit 1

log "make -j$JOBS bzImage (log: $DIR/build.log)"
if ! make -j"$JOBS" bzImage > "$DIR/build.log" 2>&1; then
	tail -40 "$DIR/build.log" >&2
	log "build failed"
	exit 1
fi
if grep -E "warning:" "$DIR/build.log" | grep -E "ipip|ip_tunnel|vxlan|if_tunnel" >&2; then
	log "compiler warnings in fan code (see above)"
	exit 1
fi
cp arch/x86/boot/bzImage "$DIR/bzImage.tmp"
mv "$DIR/bzImage.tmp" "$DIR/bzImage"
cp .config "$DIR/config"
end=$(date +%s)
echo "$((end - start))" > "$DIR/build-seconds"
touch "$DIR/done"
log "built $KEY in $((end - start)) s"
if [ $mode = tree ]; then echo "$DIR/src"; else echo "$DIR/bzImage"; fi
