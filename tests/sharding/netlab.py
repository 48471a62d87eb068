"""Hosts for the multi-host and network-fault tests: network namespaces on one bridge
in the root namespace.

`NetLab.create(tag)` makes a bridge and a free /24 for it; `lab.host(label)` adds a
namespace with one veth pair (the root end on the bridge, `eth0` inside) and an address.
The root namespace has an address on the bridge too, so clients there reach every host
directly, and the hosts reach each other through the bridge (no forwarding, no NAT).
Names carry the caller's tag (the pid), so parallel runs never clash.

`lab.close()` undoes everything, even after a half-made set-up: it kills what still
runs inside each namespace (only processes the test started can be there), deletes
the namespaces (which deletes their veth pairs) and the bridge. Every command is
bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from tests.serverproc import ServerProcess

CMD_TIMEOUT = 20.0


def in_ci() -> bool:
    """CI is set: a test that needs namespaces fails there instead of skipping."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass
class NsServer(ServerProcess):
    """A bitcask-server started inside a namespace (`prefix` is `ip netns exec NS`)."""

    prefix: list[str] = field(default_factory=list)

    def argv(self) -> list[str]:
        return [*self.prefix, *super().argv()]


class NetLabError(RuntimeError):
    """A namespace, veth or bridge could not be made (no root, no iproute2, no netns)."""


def _ip() -> str | None:
    return shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=CMD_TIMEOUT)
    if check and proc.returncode != 0:
        raise NetLabError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None if they probably can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root"
    if _ip() is None:
        return "no ip command (apt-get install iproute2)"
    return None


def _remove_stale(ip: str) -> None:
    """Delete the namespaces and bridges of earlier runs whose process is gone (a run
    killed outright cannot clean up after itself); never those of a live run."""
    listing = _run([ip, "netns", "list"], check=False).stdout
    links = _run([ip, "-o", "link", "show", "type", "bridge"], check=False).stdout
    stale = set()
    for m in re.finditer(r"^bitcask-mh-(\d+)-\S+", listing, re.M):
        if not _alive(int(m[1])):
            stale.add(m[1])
            _run([ip, "netns", "del", m[0]], check=False)
    for m in re.finditer(r"^\d+: bm(\d+)br[:@]", links, re.M):
        if m[1] in stale or not _alive(int(m[1])):
            _run([ip, "link", "del", f"bm{m[1]}br"], check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Host:
    """One namespace: `ns` (for `ip netns exec`), its address, its veth's root end."""

    label: str
    ns: str
    address: str
    veth: str

    @property
    def prefix(self) -> list[str]:
        """The argv prefix that runs a command inside this host."""
        return [_ip() or "ip", "netns", "exec", self.ns]


@dataclass
class NetLab:
    tag: str
    subnet: str  # "10.a.b." (a /24)
    bridge: str
    ip: str
    hosts: list[Host] = field(default_factory=list)

    @classmethod
    def create(cls, tag: str) -> NetLab:
        """A bridge with the root namespace's address `subnet.1/24` (a subnet nobody uses)."""
        why = unavailable()
        if why is not None:
            raise NetLabError(why)
        ip = _ip()
        assert ip is not None
        _remove_stale(ip)
        used = _run([ip, "-4", "-o", "addr"]).stdout + _run([ip, "-4", "route"]).stdout
        seed = int(tag) if tag.isdigit() else sum(tag.encode())
        subnet = ""
        for step in range(256):  # bounded: the first /24 in 10.200-249.x.x nobody uses
            n = (seed + step * 7919) % (50 * 256)
            candidate = f"10.{200 + n // 256}.{n % 256}."
            if candidate not in used:
                subnet = candidate
                break
        if not subnet:
            raise NetLabError("no free 10.x.y.0/24 subnet")
        lab = cls(tag=tag, subnet=subnet, bridge=f"bm{tag}br"[:15], ip=ip)
        try:
            _run([ip, "link", "add", lab.bridge, "type", "bridge"])
            _run([ip, "addr", "add", f"{subnet}1/24", "dev", lab.bridge])
            _run([ip, "link", "set", lab.bridge, "up"])
        except BaseException:
            lab.close()
            raise
        return lab

    def host(self, label: str) -> Host:
        """A new namespace on the bridge, at the next address (`subnet.2`, `.3`, ...)."""
        index = len(self.hosts)
        ns = f"bitcask-mh-{self.tag}-{label}"
        veth = f"bm{self.tag}h{index}"[:15]
        host = Host(label, ns, f"{self.subnet}{index + 2}", veth)
        ip = self.ip
        _run([ip, "netns", "add", ns])
        self.hosts.append(host)  # from here on close() removes it
        _run([ip, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        _run([ip, "link", "set", veth, "master", self.bridge])
        _run([ip, "link", "set", veth, "up"])
        inside = [ip, "netns", "exec", ns, ip]
        _run([*inside, "addr", "add", f"{host.address}/24", "dev", "eth0"])
        _run([*inside, "link", "set", "eth0", "up"])
        _run([*inside, "link", "set", "lo", "up"])
        return host

    @contextlib.contextmanager
    def slowed(self, host: Host, delay_ms: int) -> Iterator[str]:
        """Delay every packet to `host` by `delay_ms` (tc netem on its veth), or, where this
        kernel has no netem, drop every packet to it (its veth down); yields which."""
        netem = _run(
            ["tc", "qdisc", "add", "dev", host.veth, "root", "netem", "delay", f"{delay_ms}ms"],
            check=False,
        )
        if netem.returncode == 0:
            how = f"tc netem delay {delay_ms}ms on {host.veth}"
            undo = ["tc", "qdisc", "del", "dev", host.veth, "root"]
        else:
            how = f"no netem in this kernel ({netem.stderr.strip()}): {host.veth} down"
            _run([self.ip, "link", "set", host.veth, "down"])
            undo = [self.ip, "link", "set", host.veth, "up"]
        try:
            yield how
        finally:
            _run(undo, check=False)

    def close(self) -> None:
        """Kill what runs in the namespaces, delete them and the bridge; never raises."""
        for host in reversed(self.hosts):
            with contextlib.suppress(Exception):
                pids = _run([self.ip, "netns", "pids", host.ns], check=False).stdout.split()
                for pid in pids:
                    with contextlib.suppress(OSError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(Exception):
                _run([self.ip, "link", "del", host.veth], check=False)
            with contextlib.suppress(Exception):
                _run([self.ip, "netns", "del", host.ns], check=False)
        self.hosts.clear()
        with contextlib.suppress(Exception):
            _run([self.ip, "link", "del", self.bridge], check=False)
