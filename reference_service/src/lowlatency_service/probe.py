"""``lowlatency-service probe``: wait until a service answers its gRPC health check.

Prints one JSON object: ``status`` (the health status or the last error),
``waited_s``, ``target`` and, with ``--pid``, ``listening``: the TCP addresses
that process listens on (from /proc), so the caller can check that it binds
only where it was told to. Exit status 0 when SERVING, 1 when not in time.
grpc is imported in run() only: cli.py imports this module to build its parser.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

# State 0A of /proc/net/tcp is LISTEN.
_LISTEN = "0A"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, help="HOST:PORT of the service")
    parser.add_argument("--service", default="", help="service name to ask about ('' = the server)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    parser.add_argument("--pid", type=int, help="also list what this PID listens on")


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def decode(address: str, family: int) -> str:
    """HOST:PORT of a /proc/net/tcp{,6} address column."""
    host_hex, port_hex = address.split(":")
    raw = bytes.fromhex(host_hex)
    if family == socket.AF_INET:
        host = socket.inet_ntop(family, raw[::-1])
    else:
        # /proc/net/tcp6 holds the address as four host-order 32-bit words.
        words = struct.unpack(">4I", raw)
        host = socket.inet_ntop(family, b"".join(struct.pack("<I", w) for w in words))
        # A dual-stack socket bound to an IPv4 address shows it IPv4-mapped.
        host = host[7:] if host.startswith("::ffff:") and "." in host else "[" + host + "]"
    return f"{host}:{int(port_hex, 16)}"


def listening(pid: int) -> list[str]:
    inodes = socket_inodes(pid)
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            with open(f"/proc/{pid}/net/{table}", encoding="ascii") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == _LISTEN and fields[9] in inodes:
                found.append(decode(fields[1], family))
    return sorted(set(found))


def wait_serving(target: str, service: str, timeout: float) -> str:
    """The health status once SERVING, else the last status or error after timeout seconds."""
    import grpc  # noqa: PLC0415  # cli.py imports this module before the profile is applied
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    started = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2.0)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as error:
                status = f"{error.code().name}: {error.details()}"
            if status == "SERVING" or time.monotonic() - started > timeout:
                return status
            time.sleep(0.5)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    status = wait_serving(args.target, args.service, args.timeout)
    result: dict[str, object] = {
        "status": status,
        "waited_s": round(time.monotonic() - started, 2),
        "target": args.target,
    }
    if args.pid:
        result["listening"] = listening(args.pid)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0 if status == "SERVING" else 1
