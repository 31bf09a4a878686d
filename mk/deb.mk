# deb-check: build the Debian package outside the checkout, run lintian (0 errors),
# install it into a throwaway bookworm root (debootstrap, cached in
# $(CACHE)/debroot-<key>) and run fangen there; purge it again.  Needs root and apt
# access to Debian's archive.  The .deb is left in $(CACHE)/deb-build/out/ for the
# boot check.  About 1-2 minutes on a fresh machine, ~15 s warm.
.PHONY: deb-check
CHECK_TARGETS += deb-check

deb-check:
	FANGEN_CACHE=$(CACHE) ./scripts/deb-check.sh
