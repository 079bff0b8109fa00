"""Raw TCP ping-pong over loopback: the floor under any RPC round trip on this machine.

The server echoes whatever arrives; the client sends a fixed-size message
and waits for all of it to come back. Both set TCP_NODELAY, as gRPC does,
so a small message leaves at once. Python socket calls on both ends make it
the floor for a Python service: what is left when there is no HTTP/2, no
protobuf and no gRPC threads.

``python -m lowlatency_service.rawtcp serve|bench`` runs either side in its
own process (pinned with --cpus), which is how ``compare`` measures it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from lowlatency_service import loadgen
from lowlatency_service.histogram import summarize, write_log
from lowlatency_service.report import table

_CHUNK = 65536


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _echo(conn: socket.socket) -> None:
    with conn:
        recv_into = conn.recv_into
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        try:
            while True:
                size = recv_into(buffer)
                if not size:
                    return
                conn.sendall(view[:size])
        except OSError:
            return


@dataclass
class EchoServer:
    """A running echo server; ``stop()`` closes the listener and every connection."""

    listener: socket.socket
    port: int
    connections: list[socket.socket] = field(default_factory=list)

    def serve_forever(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            _nodelay(conn)
            self.connections.append(conn)
            threading.Thread(target=_echo, args=(conn,), name="echo", daemon=True).start()

    def stop(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        for sock in [self.listener, *self.connections]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def start_server(host: str = "127.0.0.1", port: int = 0) -> EchoServer:
    """Listen on host:port (0 = any free port) and serve in a background thread."""
    listener = socket.create_server((host, port), backlog=128)
    server = EchoServer(listener, listener.getsockname()[1])
    threading.Thread(target=server.serve_forever, name="echo-accept", daemon=True).start()
    return server


def split_target(target: str) -> tuple[str, int]:
    """'HOST:PORT' or '[V6]:PORT' -> (host, port); ValueError when malformed."""
    host, sep, port_text = target.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"expected HOST:PORT, got {target!r}")
    return host, int(port_text)


class PingPong:
    """One client connection; calling it does one round trip of a preallocated message."""

    def __init__(self, target: str, payload_bytes: int, timeout_s: float) -> None:
        self._sock = socket.create_connection(split_target(target), timeout=timeout_s)
        _nodelay(self._sock)
        self._message = os.urandom(max(payload_bytes, 1))
        self._buffer = bytearray(len(self._message))
        self._view = memoryview(self._buffer)

    def __call__(self) -> None:
        self._sock.sendall(self._message)
        got = 0
        want = len(self._buffer)
        while got < want:
            size = self._sock.recv_into(self._view[got:])
            if not size:
                raise ConnectionError("server closed the connection")
            got += size

    def close(self) -> None:
        self._sock.close()


def _pin(cpus: str | None) -> None:
    if cpus is not None:
        from lowlatency_service.runtime import resolve_cpus  # noqa: PLC0415

        os.sched_setaffinity(0, resolve_cpus(cpus) or [])


def _serve(args: argparse.Namespace) -> int:
    _pin(args.cpus)
    server = start_server(args.host, args.port)
    print(f"raw tcp echo listening on {args.host}:{server.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _bench(args: argparse.Namespace) -> int:
    _pin(args.cpus)
    calls = [
        PingPong(args.target, args.payload_bytes, args.timeout) for _ in range(args.concurrency)
    ]
    failures = (OSError,)
    try:
        if args.warmup:
            loadgen.run_threads(
                calls, loadgen.Plan(args.concurrency, requests=args.warmup), failures
            )
        outcome = loadgen.run_threads(
            calls, loadgen.Plan(args.concurrency, requests=args.requests), failures
        )
    finally:
        for call in calls:
            call.close()
    summary = summarize(outcome.histogram, outcome.errors, outcome.elapsed_s)
    print(table([(f"raw tcp c{args.concurrency}", summary)]))
    if args.json:
        result = dict(summary.to_dict(), target=args.target, concurrency=args.concurrency)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    if args.hdr_log:
        end = outcome.started_at + outcome.elapsed_s
        write_log(outcome.histogram, args.hdr_log, outcome.started_at, end, "raw tcp")
    return 1 if outcome.errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lowlatency_service.rawtcp", description=__doc__
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the echo server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--cpus", metavar="LIST")
    bench = sub.add_parser("bench", help="time round trips against an echo server")
    bench.add_argument("--target", required=True, metavar="HOST:PORT")
    bench.add_argument("--concurrency", type=int, default=1)
    bench.add_argument("--requests", type=int, default=20000)
    bench.add_argument("--warmup", type=int, default=1000)
    bench.add_argument("--payload-bytes", type=int, default=64)
    bench.add_argument("--timeout", type=float, default=10.0)
    bench.add_argument("--cpus", metavar="LIST")
    bench.add_argument("--json", metavar="FILE")
    bench.add_argument("--hdr-log", metavar="FILE")
    args = parser.parse_args(argv)
    from lowlatency_service.errors import UsageError  # noqa: PLC0415

    try:
        return _serve(args) if args.command == "serve" else _bench(args)
    except UsageError as exc:
        parser.error(str(exc))  # exits 2


if __name__ == "__main__":
    sys.exit(main())
