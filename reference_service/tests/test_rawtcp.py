"""The raw TCP floor: echo server, ping-pong client, its bench command."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from lowlatency_service import loadgen, rawtcp
from lowlatency_service.histogram import SCHEMA_KEYS, read_log


@pytest.fixture
def server() -> Iterator[rawtcp.EchoServer]:
    running = rawtcp.start_server("127.0.0.1", 0)
    yield running
    running.stop()


def test_echo_returns_what_was_sent(server: rawtcp.EchoServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"ping-pong")
        assert sock.recv(64) == b"ping-pong"


def test_ping_pong_with_nodelay_and_full_message(server: rawtcp.EchoServer) -> None:
    call = rawtcp.PingPong(f"127.0.0.1:{server.port}", payload_bytes=3000, timeout_s=5)
    try:
        assert call._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        for _ in range(20):
            call()
    finally:
        call.close()


def test_round_trips_counted_per_connection(server: rawtcp.EchoServer) -> None:
    target = f"127.0.0.1:{server.port}"
    calls = [rawtcp.PingPong(target, 64, 5) for _ in range(3)]
    try:
        outcome = loadgen.run_threads(calls, loadgen.Plan(3, requests=150), (OSError,))
    finally:
        for call in calls:
            call.close()
    assert outcome.histogram.get_total_count() == 150
    assert outcome.errors == 0


def test_stopped_server_is_a_lost_target(server: rawtcp.EchoServer) -> None:
    call = rawtcp.PingPong(f"127.0.0.1:{server.port}", 64, 5)
    call()
    server.stop()
    try:
        outcome = loadgen.run_threads([call], loadgen.Plan(1, requests=3), (OSError,))
    finally:
        call.close()
    # The first request was in flight when the connection closed; the rest failed after.
    assert outcome.lost is not None
    assert outcome.lost.in_flight_by_code == {"ConnectionError": 1}
    assert outcome.errors == 1
    assert outcome.lost.refused == 2
    assert outcome.histogram.get_total_count() == 0


def test_bench_command_writes_schema_and_log(server: rawtcp.EchoServer, tmp_path: Path) -> None:
    out, log = tmp_path / "raw.json", tmp_path / "raw.hlog"
    status = rawtcp.main(
        [
            *("bench", "--target", f"127.0.0.1:{server.port}", "--requests", "200"),
            *("--warmup", "20", "--concurrency", "2", "--json", str(out), "--hdr-log", str(log)),
        ]
    )
    assert status == 0
    result = json.loads(out.read_text())
    assert all(key in result for key in SCHEMA_KEYS)
    assert (result["requests"], result["errors"]) == (200, 0)
    assert read_log(str(log)).get_total_count() == 200


@pytest.mark.parametrize("target", ["host", "host:", ":80", "host:0", "host:x", "h:70000"])
def test_split_target_refuses_malformed(target: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        rawtcp.split_target(target)


def test_split_target_accepts_ipv6() -> None:
    assert rawtcp.split_target("[::1]:50051") == ("::1", 50051)
