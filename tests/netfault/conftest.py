"""Fixtures for the network-fault tests: a bitcask-server in its own network namespace
(tests/sharding/netlab.py), reached from the root namespace over a veth pair, and a
silent partition between them (the veth set down: no FIN, no RST, packets just stop).

Without root or iproute2 the tests skip naming the reason (apt-get install iproute2);
under CI=true they fail instead. Each test makes and removes its own namespace.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess
from tests.sharding.netlab import Host, NetLab, NetLabError, NsServer, in_ci

PORT, HTTP_PORT = 7379, 7380  # inside a namespace every port is free


@dataclass
class Net:
    """One lab: `host(label)` adds a namespace; `cut`/`heal` partition it silently."""

    lab: NetLab
    tc: str

    def host(self, label: str) -> Host:
        return self.lab.host(label)

    def cut(self, host: Host) -> None:
        """Partition `host` from everything else: its veth down, nothing sent either way.

        The neighbour entries of both ends are pinned first, as for a partition
        further away: otherwise ARP fails after a few seconds and the kernel reports
        local send errors (EHOSTUNREACH), which a remote partition never gives and
        which keep TCP keepalive from counting its probes."""
        run, ip = subprocess.run, self.lab.ip
        inside = run([*host.prefix, "cat", "/sys/class/net/eth0/address"], capture_output=True,
                     text=True, timeout=20, check=True).stdout.strip()  # fmt: skip
        bridge = Path(f"/sys/class/net/{self.lab.bridge}/address").read_text().strip()
        run([ip, "neigh", "replace", host.address, "lladdr", inside, "dev", self.lab.bridge,
             "nud", "permanent"], check=True, timeout=20)  # fmt: skip
        run([*host.prefix, ip, "neigh", "replace", f"{self.lab.subnet}1", "lladdr", bridge,
             "dev", "eth0", "nud", "permanent"], check=True, timeout=20)  # fmt: skip
        run([ip, "link", "set", host.veth, "down"], check=True, timeout=20)

    def heal(self, host: Host, port: int = PORT) -> None:
        """End the partition; return once a connection to `port` on `host` goes through
        (the bridge port takes a moment to forward again: a SYN lost then costs the
        kernel's 1 s retransmission, longer than these tests' timeouts)."""
        subprocess.run([self.lab.ip, "link", "set", host.veth, "up"], check=True, timeout=20)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                socket.create_connection((host.address, port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise

    def throttle(self, host: Host, rate: str) -> None:
        """Limit what `host` sends (its eth0) to `rate` (tc tbf: in every kernel that
        has traffic control; netem is often missing)."""
        tc = [*host.prefix, self.tc, "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate,
              "burst", "32kbit", "latency", "400ms"]  # fmt: skip
        done = subprocess.run(tc, capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            reason = f"tc tbf unavailable: {done.stderr.strip()} (iproute2, sch_tbf)"
            if in_ci():
                pytest.fail(f"CI=true: {reason}")
            pytest.skip(reason)

    def lossy(self, host: Host, percent: float) -> None:
        """Drop `percent` % of the packets both ways between `host` and the rest, at
        random. Built from what kernels without netem still have: an htb root whose
        class 1:20 ends in a pfifo of length 0 (it drops all it gets), and a classic
        BPF classifier sending a packet there when the kernel's random number
        (SKF_AD_RANDOM) is below the share."""
        below = int(percent / 100 * 2**32)
        # ld rand; jgt below -> no match (default class); else -> class 1:20
        bytecode = f"4,32 0 0 {2**32 - 4096 + 56},37 1 0 {below},6 0 0 {0x10020},6 0 0 0"
        for where, dev in (([], host.veth), (host.prefix, "eth0")):
            for cmd in (
                ["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10"],
                ["class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
                 "rate", "10gbit", "quantum", "60000"],
                ["class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb",
                 "rate", "10gbit", "quantum", "60000"],
                ["qdisc", "add", "dev", dev, "parent", "1:20", "handle", "20:", "pfifo",
                 "limit", "0"],
                ["filter", "add", "dev", dev, "parent", "1:", "protocol", "all", "prio", "1",
                 "bpf", "bytecode", bytecode],
            ):  # fmt: skip
                done = subprocess.run([*where, self.tc, *cmd], capture_output=True, text=True,
                                      timeout=20)  # fmt: skip
                if done.returncode != 0:
                    reason = (
                        f"tc {cmd[0]} {cmd[-1]}: {done.stderr.strip()} (iproute2, htb, cls_bpf)"
                    )
                    if in_ci():
                        pytest.fail(f"CI=true: {reason}")
                    pytest.skip(reason)

    def dropped(self, host: Host) -> int:
        """Packets `lossy` dropped so far, both ways."""
        total = 0
        for where, dev in (([], host.veth), (host.prefix, "eth0")):
            out = subprocess.run([*where, self.tc, "-s", "class", "show", "dev", dev,
                                  "classid", "1:20"], capture_output=True, text=True,
                                 timeout=20, check=True).stdout  # fmt: skip
            total += sum(int(n) for n in re.findall(r"dropped (\d+)", out))
        return total

    @contextlib.contextmanager
    def partitioned(self, host: Host) -> Iterator[None]:
        self.cut(host)
        try:
            yield
        finally:
            self.heal(host)


@pytest.fixture
def net() -> Iterator[Net]:
    try:
        lab = NetLab.create(str(os.getpid()))
    except NetLabError as exc:
        reason = f"network namespaces unavailable: {exc} (needs root and iproute2)"
        if in_ci():
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    try:
        tc = shutil.which("tc") or shutil.which("tc", path="/usr/sbin:/sbin") or "tc"
        yield Net(lab, tc)
    finally:
        lab.close()


@pytest.fixture
def ns_server(net: Net, tmp_path: Path) -> Iterator[Callable[..., tuple[NsServer, Host]]]:
    """`ns_server(*flags)`: a server in a new namespace, its ports 7379/7380 there."""
    started: list[NsServer] = []

    def start(*flags: str, label: str = "srv") -> tuple[NsServer, Host]:
        host = net.host(label)
        data = tmp_path / label
        data.mkdir()
        srv = NsServer(data=data, host=host.address, port=PORT, http_port=HTTP_PORT,
                       prefix=host.prefix, extra=list(flags))  # fmt: skip
        started.append(srv)
        srv.start()
        return srv, host

    yield start
    for srv in started:
        srv.kill()


_METRIC = """
import sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
print([l for l in body.splitlines() if l.startswith(sys.argv[2] + " ")][0].split()[1])
"""


def metric(srv: ServerProcess, host: Host, name: str) -> float:
    """A gauge of the server's /metrics, read from inside its namespace (so it answers
    while the namespace is cut off)."""
    url = f"http://{srv.host}:{srv.http_port}/metrics"
    out = subprocess.run([*host.prefix, sys.executable, "-c", _METRIC, url, name],
                         capture_output=True, text=True, timeout=20, check=True)  # fmt: skip
    return float(out.stdout)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.1)
