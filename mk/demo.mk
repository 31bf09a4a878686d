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

# The fan benchmarks (root, namespaces): throughput vs an L2 static VXLAN and a flannel-style
# routed VXLAN (7 rotated rounds, TCP and UDP small packets), kernel objects vs underlay size,
# convergence after a DHCP lease, and a quick scale run (10 and 50 hosts, no plot).  They print
# ratios and figures; nothing asserts on time.  `make bench-scale` is the full scale run
# (10..250 hosts, ~15 min on 2 cores) and rewrites docs/scale.png.
.PHONY: bench-fan bench-scale
bench-fan:
	$(PYTHON) bench/throughput.py --steps
	$(PYTHON) bench/objects.py
	$(PYTHON) bench/convergence.py
	$(PYTHON) bench/scale.py --sizes 10,50 --plot ''

bench-scale:
	$(PYTHON) bench/scale.py --sizes 10,50,200,250 --plot docs/scale.png
