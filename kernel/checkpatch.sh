#!/bin/bash
# Run the kernel's scripts/checkpatch.pl --strict (from the cached, patched
# linux-source-6.1 tree) over kernel/patches/*.patch.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
tree=$("$HERE/build.sh" --tree)
rc=0
for p in "$HERE"/patches/*.patch; do
	echo "== $(basename "$p")"
	(cd "$tree" && ./scripts/checkpatch.pl --strict "$p") || rc=1
done
exit $rc
