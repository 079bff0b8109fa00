"""Which local process serves a target: ``--service-pid``, or the listener on its port.

bench reads the service process (to profile it, or to read its figures from
``/proc/PID``) only when the service runs on this host. Without
``--service-pid`` the process is the one holding the listening TCP socket of
the target's port, found through ``/proc/net/tcp{,6}`` and the sockets in
``/proc/PID/fd``, and only when the target's address is one of this host's
(a remote service on the same port number is not confused with a local one).
Every lookup that finds nothing says why, in one line.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

from lowlatency_service.rawtcp import split_target

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


@dataclass(frozen=True)
class Found:
    """The service's pid, or None and the reason none was found."""

    pid: int | None
    reason: str | None = None
    how: str | None = None  # "--service-pid" or "listener"


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} writes it: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(swapped)


def listening_inodes(port: int, proc: str = "/proc") -> dict[int, str]:
    """Socket inode -> local address of every TCP socket listening on ``port``."""
    found: dict[int, str] = {}
    for table in ("net/tcp", "net/tcp6"):
        try:
            with open(os.path.join(proc, table), encoding="ascii") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, port_hex = fields[1].partition(":")
            if fields[3] == _LISTEN and int(port_hex, 16) == port:
                found[int(fields[9])] = str(_address(address))
    return found


def owners(inodes: set[int], proc: str = "/proc") -> list[int]:
    """The pids whose open files include one of these sockets (those this user may read)."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    pids = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        fd_dir = os.path.join(proc, entry, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        if any(_link(os.path.join(fd_dir, fd)) in wanted for fd in fds):
            pids.append(int(entry))
    return sorted(pids)


def _link(path: str) -> str | None:
    """Where a /proc/PID/fd entry points; None once it is closed (listdir's own fd is)."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def is_local_address(host: str) -> bool:
    """Whether ``host`` names an address of this host (binding to it succeeds)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, kind, _, _, address in infos:
        try:
            with socket.socket(family, kind) as probe:
                probe.bind((address[0], 0))
        except OSError:
            continue
        return True
    return False


def find(target: str, given: int | None, proc: str = "/proc") -> Found:
    """The service process of ``target``: ``given`` if it exists, else the port's listener."""
    if given is not None:
        if not os.path.isdir(os.path.join(proc, str(given))):
            return Found(None, f"--service-pid {given}: no such process")
        return Found(given, how="--service-pid")
    host, port = split_target(target)
    if not is_local_address(host):
        return Found(None, f"{host} is not an address of this host; give --service-pid")
    inodes = listening_inodes(port, proc)
    if not inodes:
        return Found(None, f"no local socket listens on port {port}; give --service-pid")
    pids = owners(set(inodes), proc)
    if len(pids) != 1:
        held = f"processes {', '.join(map(str, pids))} hold" if pids else "no process we read holds"
        return Found(None, f"{held} the listener on port {port}; give --service-pid")
    return Found(pids[0], how="listener")
