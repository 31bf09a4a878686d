# make demo: install what is needed (scripts/setup.sh), then build three fan hosts with two
# containers each in network namespaces, show addresses, a ping matrix and one throughput
# figure, and clean everything up (also on Ctrl-C or failure).
.PHONY: demo demo-only harness-cleanup

demo: setup
	$(PYTHON) scripts/demo.py

demo-only:
	$(PYTHON) scripts/demo.py

harness-cleanup:
	$(PYTHON) -m tests.harness cleanup

# The fan benchmarks (root, namespaces): throughput vs plain VXLAN and bare underlay,
# kernel objects vs underlay size, convergence after a DHCP lease.  They print ratios.
.PHONY: bench-fan
bench-fan:
	$(PYTHON) bench/throughput.py
	$(PYTHON) bench/objects.py
	$(PYTHON) bench/convergence.py
