# fangen: top-level targets.  Fragments in mk/*.mk add their own targets
# (demo, kernel-check, deb-check, boot-check) and append to CHECK_TARGETS.
PYTHON ?= /usr/bin/python3
PYTEST = $(PYTHON) -m pytest -q -p no:cacheprovider
CACHE ?= /var/cache/fangen
# tests/kernel runs inside the VM (make kernel-check), not on the host
HOST_TESTS = tests --ignore=tests/kernel

.PHONY: all check test test-unit test-pypi setup bench
all: test

CHECK_TARGETS := test test-pypi
-include mk/*.mk

# The README's test command: everything CI runs.
check: $(CHECK_TARGETS)

setup:
	./scripts/setup.sh

# Debian 12's packaged libraries (what the .deb runs on); root tests included.
test:
	$(PYTEST) $(HOST_TESTS)

test-unit:
	$(PYTEST) tests/unit tests/golden

# The pure tests, and as root the namespace (pyroute2) tests, against the newest PyPI
# releases of our dependencies, in a venv (scripts/test-pypi.sh).
test-pypi:
	./scripts/test-pypi.sh

bench:
	$(PYTHON) bench/generator.py
