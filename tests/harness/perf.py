"""iperf3 between two namespaces (the demo and bench/throughput.py)."""

from __future__ import annotations

import json
import os
import time

from .ns import HarnessError, Run, nsexec, sh


def _listening(ns: str, port: int) -> bool:
    out = sh("ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}", check=False).stdout
    return bool(out.strip())


def iperf3_end(run: Run, server_ns: str, server_addr: str, client_ns: str,
               seconds: float = 5, port: int = 5201, extra: tuple = ()) -> dict:
    """One iperf3 run (``extra``: client flags, e.g. UDP); the client's JSON ``end`` section."""
    log = os.path.join(run.workdir, f"iperf3-{server_ns}-{port}.log")
    srv = run.spawn(server_ns, ["iperf3", "-s", "-1", "-B", server_addr, "-p", str(port)],
                    log=log)
    try:
        deadline = time.monotonic() + 5
        while not _listening(server_ns, port):
            if time.monotonic() > deadline or srv.poll() is not None:
                raise HarnessError(f"iperf3 server in {server_ns} did not start; see {log}")
            time.sleep(0.02)
        res = nsexec(client_ns, "iperf3", "-c", server_addr, "-p", str(port), "-t", str(seconds),
                     "-J", *extra, check=False, timeout=seconds + 30)
        try:
            data = json.loads(res.stdout)
        except ValueError:
            raise HarnessError(f"iperf3: {res.stderr.strip() or res.stdout[:200]}") from None
        if "error" in data:
            raise HarnessError(f"iperf3: {data['error']}")
        return data.get("end", {})
    finally:
        run.stop(srv)


def iperf3(run: Run, server_ns: str, server_addr: str, client_ns: str, seconds: float = 5,
           port: int = 5201, extra: tuple = ()) -> float:
    """Gbit/s received by the server over ``seconds`` of one TCP stream."""
    end = iperf3_end(run, server_ns, server_addr, client_ns, seconds, port, extra)
    summary = end.get("sum_received") or end.get("sum_sent") or end.get("sum")
    if not summary:
        raise HarnessError("iperf3: no summary in its output")
    return summary["bits_per_second"] / 1e9
