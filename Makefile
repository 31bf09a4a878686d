# fangen: top-level targets.  Fragments in mk/*.mk add kernel-check, deb-check, boot-check.
PYTHON ?= /usr/bin/python3
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: all test test-unit setup demo bench
all: test

setup:
	./scripts/setup.sh

test:
	$(PYTHON) -m pytest -q tests

test-unit:
	$(PYTHON) -m pytest -q tests/unit tests/golden

bench:
	$(PYTHON) bench/generator.py

-include mk/*.mk
