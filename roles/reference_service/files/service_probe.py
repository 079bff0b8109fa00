"""Wait until the reference service answers its gRPC health check.

Run with the service's own virtual environment (it has grpcio and the health
stubs). Prints one JSON object: ``status`` (the health status or the last
error), ``waited_s`` and, with ``--pid``, ``listening``: the TCP addresses
that process listens on (from /proc), so the caller can check that it binds
only where it was told to. Exit status 1 when it is not SERVING in time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


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
            # State 0A is LISTEN.
            if fields[3] == "0A" and fields[9] in inodes:
                found.append(decode(fields[1], family))
    return sorted(set(found))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT")
    parser.add_argument("--service", default="", help="service name to ask about ('' = the server)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--pid", type=int)
    args = parser.parse_args()
    started = time.monotonic()
    status = "not checked"
    with grpc.insecure_channel(args.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=2.0)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as error:
                status = f"{error.code().name}: {error.details()}"
            if status == "SERVING" or time.monotonic() - started > args.timeout:
                break
            time.sleep(0.5)
    waited = round(time.monotonic() - started, 2)
    result = {"status": status, "waited_s": waited, "target": args.target}
    if args.pid:
        result["listening"] = listening(args.pid)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
