"""The service under faults: garbage bodies, a taken port, vanished and silent clients, the
RPC limit.

Real ``serve`` subprocesses where the profile's process-level measures matter
(the tuned profile runs gRPC's older I/O path, set before ``import grpc``);
in-process servers elsewhere. The whole module runs in about 30 s.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
from lowlatency_service import cli
from lowlatency_service._proto.lowlatency.v1 import latency_pb2, latency_pb2_grpc
from lowlatency_service.serve import SERVICE_NAME, start_server

ECHO_METHOD = f"/{SERVICE_NAME}/Echo"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# The start_cli fixture (conftest.py): serve ARGS... -> (process, address).
StartCli = Callable[..., tuple[subprocess.Popen[str], str]]
CLI = [str(Path(sys.executable).with_name("lowlatency-service"))]
# Field 1 declared as a length-delimited field running past the end of the body.
GARBAGE = b"\x0a\xff\xff\xff\x0f"


def stop_cli(process: subprocess.Popen[str]) -> str:
    """SIGTERM, wait, and return what serve wrote to stderr."""
    process.terminate()
    _, stderr = process.communicate(timeout=20)
    return stderr


@pytest.fixture(params=["default", "tuned"])
def served(
    request: pytest.FixtureRequest, start_cli: StartCli
) -> tuple[subprocess.Popen[str], str]:
    return start_cli("--profile", request.param, "--grace", "0")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def send_garbage(address: str, count: int) -> set[tuple[grpc.StatusCode, str]]:
    """`count` unparsable Echo bodies, 8 in flight; returns the distinct (code, details)."""
    outcomes: set[tuple[grpc.StatusCode, str]] = set()
    with grpc.insecure_channel(address) as channel:
        raw = channel.unary_unary(ECHO_METHOD)  # no serializer: the bytes go out as they are
        for start in range(0, count, 8):
            calls = [raw.future(GARBAGE, timeout=10) for _ in range(min(8, count - start))]
            for call in calls:
                error = call.exception()
                assert isinstance(error, grpc.Call)
                outcomes.add((error.code(), error.details() or ""))
    return outcomes


def test_unparsable_requests_cost_nothing_after_their_reply(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    process, address = served
    send_garbage(address, 1_000)  # warm-up: pools, caches, the first log line
    before = rss_kib(process.pid)
    outcomes = send_garbage(address, 5_000)
    grown = rss_kib(process.pid) - before
    (code, details), *others = sorted(outcomes)
    assert not others, outcomes
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"request body ({len(GARBAGE)} bytes) is not a lowlatency.v1.EchoRequest" in details
    # grpcio's own parse failure kept ~18 KB per call (90 MB here).
    assert grown < 4 * 1024, f"RSS grew {grown} KiB over 5,000 unparsable requests"
    with grpc.insecure_channel(address) as channel:
        echo = latency_pb2_grpc.LatencyServiceStub(channel).Echo
        assert echo(latency_pb2.EchoRequest(request_id=5), timeout=10).request_id == 5
    stderr = stop_cli(process)
    assert "Traceback" not in stderr
    assert stderr.count("unparsable body") == 1, stderr  # a count, not a line per request
    assert len(stderr) < 4096, stderr


def test_second_serve_on_a_taken_port_exits_2() -> None:
    first = start_server("127.0.0.1", 0, "default")
    try:
        result = subprocess.run(
            [*CLI, "serve", "--port", str(first.port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        first.stop(grace=None)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {first.port} is in use" in lines[0]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--grace", "nan"),
        ("--grace", "inf"),
        ("--grace", "-1"),
        ("--drain", "nan"),
        ("--drain", "inf"),
        ("--drain", "soon"),
        ("--port", "65536"),
        ("--workers", "0"),
        ("--max-concurrent-rpcs", "1.5"),
        ("--read-timeout", "0"),
        ("--read-timeout", "nan"),
        ("--read-timeout", "-1"),
    ],
)
def test_bad_serve_flags_are_refused_with_one_line(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", flag, value])
    assert info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert flag in errors[0]
    assert value in errors[0] or (value == "65536" and "65536" in errors[0])


def vanish(host: str, port: int, clients: int) -> None:
    """`clients` HTTP/2 connections send HEADERS for Echo and 4 of the 9 bytes of a DATA
    frame header, then reset their TCP connection (SO_LINGER 0)."""
    sockets = []
    for _ in range(clients):
        sock = socket.create_connection((host, port), timeout=5)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="ascii"))
        conn.initiate_connection()
        conn.send_headers(
            conn.get_next_available_stream_id(),
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", ECHO_METHOD),
                (":authority", f"{host}:{port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        data_header_start = (14).to_bytes(3, "big") + b"\x00"  # length 14, type DATA
        sock.sendall(conn.data_to_send() + data_header_start)
        sockets.append(sock)
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def stall_after_vanished_clients(address: str, watch_s: float = 3.0) -> float | None:
    """The probe: 300 vanished clients, then an Echo with a 1 s deadline every 0.5 s.

    Returns when (s after the burst) the last failed call was sent, None if none failed.
    """
    host, port = address.rsplit(":", 1)
    with grpc.insecure_channel(address) as channel:
        echo = latency_pb2_grpc.LatencyServiceStub(channel).Echo
        echo(latency_pb2.EchoRequest(), timeout=10)  # connected before the burst
        vanish(host, int(port), 300)
        burst_end = time.monotonic()
        calls = []
        while (sent := time.monotonic() - burst_end) < watch_s:
            calls.append((sent, echo.future(latency_pb2.EchoRequest(request_id=1), timeout=1)))
            time.sleep(0.5)
        failed = [sent for sent, call in calls if call.exception() is not None]
    return max(failed, default=None)


def test_vanished_clients_do_not_stall_the_server(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    _, address = served
    last_failure = stall_after_vanished_clients(address)
    # A call sent 1 s after the burst or later must succeed.
    assert last_failure is None or last_failure < 1.0, (
        f"a call sent at +{last_failure:.1f} s failed"
    )


def silent_peer(
    host: str, port: int, method: str = ECHO_METHOD
) -> tuple[socket.socket, h2.connection.H2Connection]:
    """An HTTP/2 connection with one call that sends HEADERS and nothing more: no
    message, no END_STREAM, no grpc-timeout."""
    sock = socket.create_connection((host, port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="ascii"))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", f"{host}:{port}"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )
    sock.sendall(conn.data_to_send())
    return sock, conn


def how_the_call_ended(sock: socket.socket, conn: h2.connection.H2Connection) -> str | None:
    """The grpc-status the server sent on stream 1, "reset" or "closed", None if nothing."""
    sock.settimeout(5)
    while True:
        try:
            data = sock.recv(65536)
        except (TimeoutError, ConnectionError):
            return None
        if not data:
            return "closed"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.TrailersReceived | h2.events.ResponseReceived):
                status = dict(event.headers).get("grpc-status")
                if status is not None:
                    return status
            if isinstance(event, h2.events.StreamReset):
                return "reset"
            if isinstance(event, h2.events.ConnectionTerminated):
                return "closed"


@pytest.mark.parametrize(
    "serve_args",
    [
        # The tuned profile's own read timeout (1 s); 2 handler threads as on a 2-CPU host.
        ("--profile", "tuned", "--workers", "2"),
        ("--profile", "default", "--workers", "2", "--read-timeout", "0.5"),
    ],
)
def test_calls_that_send_only_headers_do_not_hold_the_server(
    serve_args: tuple[str, ...], start_cli: StartCli
) -> None:
    process, address = start_cli(*serve_args, "--grace", "0")
    host, port = address.rsplit(":", 1)
    with grpc.insecure_channel(address) as channel:
        echo = latency_pb2_grpc.LatencyServiceStub(channel).Echo
        echo(latency_pb2.EchoRequest(), timeout=10)  # connected before the silent peers
        # Four times the handler threads: grpcio gives each call a thread at its
        # HEADERS and, without a bound, the thread waits there for good.
        peers = [silent_peer(host, int(port)) for _ in range(6)]
        peers += [silent_peer(host, int(port), HEALTH_CHECK) for _ in range(2)]
        sent = time.monotonic()
        reply = echo(latency_pb2.EchoRequest(request_id=3), timeout=3)
        took = time.monotonic() - sent
    assert reply.request_id == 3
    # Read timeout, then 6 queued silent calls at 10 ms each on 2 threads.
    assert took < 1.5, f"an honest call took {took:.2f} s behind 8 silent peers"
    endings = [how_the_call_ended(*peer) for peer in peers]
    for sock, _ in peers:
        sock.close()
    assert endings == ["1"] * len(peers), endings  # grpc-status 1: CANCELLED
    stderr = stop_cli(process)
    assert "Traceback" not in stderr, stderr


def test_a_late_message_is_answered_within_the_read_timeout_and_cancelled_after_it() -> None:
    running = start_server("127.0.0.1", 0, "default", read_timeout=0.5)
    try:
        request = latency_pb2.EchoRequest(request_id=8).SerializeToString()
        message = b"\0" + len(request).to_bytes(4, "big") + request
        slow, too_slow = (silent_peer("127.0.0.1", running.port) for _ in range(2))
        opened = time.monotonic()
        # Half the read timeout after the HEADERS, then half of it past the timeout.
        for (sock, conn), after_headers in ((slow, 0.25), (too_slow, 0.75)):
            time.sleep(max(0.0, opened + after_headers - time.monotonic()))
            conn.send_data(1, message, end_stream=True)
            sock.sendall(conn.data_to_send())
        assert how_the_call_ended(*slow) == "0"
        assert how_the_call_ended(*too_slow) == "1"  # CANCELLED
        for sock, _ in (slow, too_slow):
            sock.close()
    finally:
        running.stop(grace=None)


def closed_loop_refusals(address: str, clients: int, requests: int) -> int:
    """`clients` threads each send their next Echo as soon as the previous reply is in."""
    refused = 0
    lock = threading.Lock()
    per_client = requests // clients

    def client() -> None:
        nonlocal refused
        request = latency_pb2.EchoRequest(work_iterations=2_000)
        for _ in range(per_client):
            try:
                echo(request, timeout=10)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                with lock:
                    refused += 1

    with grpc.insecure_channel(address) as channel:
        echo = latency_pb2_grpc.LatencyServiceStub(channel).Echo
        echo(latency_pb2.EchoRequest(), timeout=10)
        with futures.ThreadPoolExecutor(clients) as pool:
            for done in [pool.submit(client) for _ in range(clients)]:
                done.result()
    return refused


def test_concurrency_limit_refuses_only_beyond_it() -> None:
    limit = 4
    running = start_server("127.0.0.1", 0, "default", max_concurrent_rpcs=limit)
    try:
        assert closed_loop_refusals(running.address, limit, 3_000) == 0
        assert closed_loop_refusals(running.address, limit + 1, 3_000) > 0
    finally:
        running.stop(grace=None)
