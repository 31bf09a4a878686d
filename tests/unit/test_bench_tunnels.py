"""bench/tunnels.py's programs and bench/throughput.py's step report.

The program tests load into the kernel with bpf(2) and need root; CI runs them as
root.  The report test is pure."""

from __future__ import annotations

import os

import pytest

from bench import throughput, tunnels
from fangen.datapath import bpf

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="bpf(2) needs root")
FRAME = bytes(12) + b"\x08\x00" + bytes(50)


@needs_root
def test_mark_program_marks_every_packet_and_passes_it():
    fd = bpf.prog_load(bpf.assemble(tunnels.mark_program()), name="t_nc_mark")
    try:
        for mark in (0, 7):
            res = bpf.prog_test_run(fd, FRAME, mark=mark)
            assert (res.retval, res.mark) == (bpf.TC_ACT_OK, 1)
    finally:
        os.close(fd)


@needs_root
def test_encap_program_encapsulates_ipv4_and_keys_the_rest():
    fd = bpf.prog_load(bpf.assemble(tunnels.encap_program(
        4245, 4793, "172.16.1.2", "172.16.2.3", 1, "172.16.0.0/16")), name="t_encap")
    try:
        frame = bytes(12) + b"\x08\x00" + bytes([0x45]) + bytes(49)
        res = bpf.prog_test_run(fd, frame)
        assert res.retval == bpf.TC_ACT_REDIRECT and len(res.data) == len(frame) + 50
        assert res.data[14 + 12:14 + 20] == bytes([172, 16, 1, 2, 172, 16, 2, 3])
        assert res.data[14 + 22:14 + 24] == (4793).to_bytes(2, "big")
        res = bpf.prog_test_run(fd, bytes(12) + b"\x08\x06" + bytes(50))  # ARP: the key
        assert res.retval == bpf.TC_ACT_OK and len(res.data) == 64
    finally:
        os.close(fd)


@needs_root
def test_ipip_encap_program_loads():
    # what it writes needs a real IPIP device (a test run hands the program an
    # Ethernet frame): bench/ipip.py's ipipbpf path carries traffic or the bench stops
    fd = bpf.prog_load(bpf.assemble(tunnels.encap_program(
        0, 0, "172.16.1.2", "172.16.2.3", 1, "172.16.0.0/16", ipip=True)), name="t_ipip_encap")
    os.close(fd)


@needs_root
def test_static_key_program_loads_and_passes():
    fd = bpf.prog_load(bpf.assemble(tunnels.static_key_program(4243, "172.16.2.3")),
                       name="t_static_key")
    os.close(fd)


def test_steps_split_the_gap_between_static_tunnel_and_fan(capsys):
    results = {"gbps": {"fan": [8.0, 9.0], "l2": [10.0, 10.0], "l2nc": [9.5, 9.5],
                        "l2md": [9.0, 9.0], "routed": [9.0, 9.0], "l2bpf": [8.5, 8.5],
                        "l2bpfs": [9.6, 9.6], "fanmd": [8.0, 8.0],
                        "fan-kernel": [9.8, 9.6]}}
    throughput.report_steps(results, "gbps")
    out = capsys.readouterr().out.strip().splitlines()
    lines = {line.split()[0] + " " + line.split()[2]: line for line in out[1:]}
    assert "0.950x" in lines["l2nc l2"]                 # 9.5 / 10
    assert "0.947x" in lines["l2md l2nc"]               # 9.0 / 9.5
    assert "0.850x" in lines["l2bpf l2"]                # 8.5 / 10
    assert "0.960x" in lines["l2bpfs l2"]               # 9.6 / 10
    assert "0.885x" in lines["l2bpf l2bpfs"]            # 8.5 / 9.6: the metadata receive
    assert "0.885x" in lines["fan l2bpfs"]              # median 8.5 / 9.6
    assert "0.941x" in lines["fanmd l2bpf"]             # 8.0 / 8.5
    assert "1.062x" in lines["fan fanmd"]               # median 8.5 / 8.0: the plain device
    assert "0.944x" in lines["fan l2md"]                # median 8.5 / 9.0
    assert "0.850x" in lines["fan l2"]
    assert "0.970x" in lines["fan-kernel l2"]           # the kernel datapath, median 9.7
    assert len(out) == 1 + len(throughput.STEPS)


def test_steps_without_a_kernel_fan_leave_its_line_out(capsys):
    results = {"gbps": {"fan": [8.0], "l2": [10.0], "l2nc": [9.5], "l2md": [9.0]}}
    throughput.report_steps(results, "gbps")
    out = capsys.readouterr().out
    assert "fan / l2md" in out and "fan-kernel" not in out


def test_steps_leave_out_paths_not_measured(capsys):
    results = {"kpps": {"fan": [50.0], "l2": [60.0]}}
    throughput.report_steps(results, "kpps")
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[1].split()[:3] == ["fan", "/", "l2"]


def test_thread_report_folds_numbered_kernel_threads():
    from bench import cycles
    text = ("    40.00%   400  iperf3          [k] tcp_sendmsg\n"
            "     3.00%    30  ksoftirqd/0     [k] dst_destroy\n"
            "     1.00%    10  ksoftirqd/1     [k] dst_destroy\n"
            "     2.00%    20  swapper         [k] pv_native_safe_halt\n"
            "# a comment line\n")
    assert cycles.parse_threads(text) == {("iperf3", "tcp_sendmsg"): 400,
                                          ("ksoftirqd/N", "dst_destroy"): 40,
                                          ("swapper", "pv_native_safe_halt"): 20}
