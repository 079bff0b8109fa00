"""The reference service in-process on port 0, plus one real `serve` subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from lowlatency_service._proto.lowlatency.v1 import latency_pb2, latency_pb2_grpc
from lowlatency_service.serve import (
    MAX_PAYLOAD_BYTES,
    MAX_WORK_ITERATIONS,
    SERVICE_NAME,
    RunningServer,
    _bind_address,
    start_server,
    work,
)

ECHO_METHOD = f"/{SERVICE_NAME}/Echo"
# The start_cli fixture (conftest.py): serve ARGS... -> (process, address).
StartCli = Callable[..., tuple[subprocess.Popen[str], str]]
# The installed console script, as users and playbooks run it (not `python -m`,
# under which cli.py is __main__ and its UsageError a different class).
CLI = [str(Path(sys.executable).with_name("lowlatency-service"))]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server("127.0.0.1", 0, "default")
    yield running
    running.stop(grace=None)


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as chan:
        yield chan


def echo(channel: grpc.Channel, **fields: object) -> latency_pb2.EchoReply:
    stub = latency_pb2_grpc.LatencyServiceStub(channel)
    return stub.Echo(latency_pb2.EchoRequest(**fields), timeout=10)


def rpc_error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def test_echo_returns_fields_and_one_hop(channel: grpc.Channel) -> None:
    reply = echo(channel, request_id=42, client_send_ns=123456789, payload=b"abc")
    assert (reply.request_id, reply.client_send_ns, reply.payload, reply.hops) == (
        42,
        123456789,
        b"abc",
        1,
    )


def test_work_is_deterministic(channel: grpc.Channel) -> None:
    # Pinned values: a change of the work function changes what benchmarks measure.
    assert work(7, 0) == 7
    assert work(7, 3) == 16723372171710603212
    first = echo(channel, request_id=7, work_iterations=1000)
    second = echo(channel, request_id=7, work_iterations=1000)
    assert first.work_result == second.work_result == work(7, 1000)
    assert echo(channel, request_id=8, work_iterations=1000).work_result != first.work_result


def test_payload_limit(channel: grpc.Channel) -> None:
    assert len(echo(channel, payload=b"x" * MAX_PAYLOAD_BYTES).payload) == MAX_PAYLOAD_BYTES
    error = rpc_error(lambda: echo(channel, payload=b"x" * (MAX_PAYLOAD_BYTES + 1)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "payload" in error.details()


def test_work_limit(channel: grpc.Channel) -> None:
    error = rpc_error(lambda: echo(channel, work_iterations=MAX_WORK_ITERATIONS + 1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_malformed_request_gets_a_status_and_the_server_survives(channel: grpc.Channel) -> None:
    raw = channel.unary_unary(ECHO_METHOD)  # no serializers: bytes go out as they are
    # Field 1 declared as a length-delimited field running past the end of the message.
    error = rpc_error(lambda: raw(b"\x0a\xff\xff\xff\x0f", timeout=10))
    assert error.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    assert echo(channel, request_id=1).request_id == 1


@pytest.mark.parametrize(
    "method", [f"/{SERVICE_NAME}/NoSuchMethod", "/no.such.Service/Echo", "/garbage"]
)
def test_unknown_method_is_unimplemented(channel: grpc.Channel, method: str) -> None:
    call = channel.unary_unary(method)
    assert rpc_error(lambda: call(b"", timeout=10)).code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_call_without_a_request_message_is_unimplemented(channel: grpc.Channel) -> None:
    # Half-closed at once: nothing to wait for, answered as grpcio answers a unary call.
    no_message = channel.stream_unary(ECHO_METHOD)
    with pytest.raises(grpc.RpcError) as error:
        no_message(iter(()), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "exactly one request message" in error.value.details()
    assert echo(channel, request_id=4).request_id == 4


def test_health_serving(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    error = rpc_error(lambda: stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_health_not_serving_during_shutdown_then_gone() -> None:
    running = start_server("127.0.0.1", 0, "default")
    with grpc.insecure_channel(running.address) as chan:
        stub = health_pb2_grpc.HealthStub(chan)
        running.enter_graceful_shutdown()
        for service in ("", SERVICE_NAME):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
        running.stop(grace=0.5)
        error = rpc_error(lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=2))
        assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {service.name for service in response.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names

    symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)
    (response,) = list(stub.ServerReflectionInfo(iter([symbol]), timeout=10))
    assert response.file_descriptor_response.file_descriptor_proto


def test_chain_of_three_counts_hops() -> None:
    last = start_server("127.0.0.1", 0, "default")
    middle = start_server("127.0.0.1", 0, "default", downstream=last.address)
    first = start_server("127.0.0.1", 0, "default", downstream=middle.address)
    try:
        with grpc.insecure_channel(first.address) as chan:
            reply = echo(chan, request_id=5, work_iterations=10, payload=b"p")
        assert (reply.hops, reply.request_id, reply.payload) == (3, 5, b"p")
        assert reply.work_result == work(5, 10)
    finally:
        for running in (first, middle, last):
            running.stop(grace=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_chain_with_downstream_down_is_unavailable() -> None:
    target = f"127.0.0.1:{free_port()}"
    running = start_server("127.0.0.1", 0, "default", downstream=target)
    try:
        with grpc.insecure_channel(running.address) as chan:
            error = rpc_error(lambda: echo(chan, request_id=1))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert target in error.details()
            # The server itself is fine: health still answers.
            health = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(grace=None)


def test_chain_with_a_downstream_that_is_no_latency_service_is_unavailable() -> None:
    other = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), other)
    target = f"127.0.0.1:{other.add_insecure_port('127.0.0.1:0')}"
    other.start()
    running = start_server("127.0.0.1", 0, "default", downstream=target)
    try:
        with grpc.insecure_channel(running.address) as chan:
            error = rpc_error(lambda: echo(chan, request_id=1))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert f"downstream {target}: UNIMPLEMENTED" in error.details()
    finally:
        running.stop(grace=None)
        other.stop(None)


def test_chain_passes_the_downstream_status_on() -> None:
    last = start_server("127.0.0.1", 0, "default", workers=1, max_concurrent_rpcs=1)
    first = start_server("127.0.0.1", 0, "default", downstream=last.address)
    try:
        with (
            grpc.insecure_channel(last.address) as direct,
            grpc.insecure_channel(first.address) as chained,
        ):
            echo(direct)  # connect first, so the slow call below starts at once
            busy = latency_pb2_grpc.LatencyServiceStub(direct).Echo.future(
                latency_pb2.EchoRequest(work_iterations=MAX_WORK_ITERATIONS), timeout=30
            )
            time.sleep(0.02)
            error = rpc_error(lambda: echo(chained))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"downstream {last.address}: RESOURCE_EXHAUSTED" in error.details()
            busy.result()
    finally:
        first.stop(grace=None)
        last.stop(grace=None)


def test_request_limit_gives_resource_exhausted() -> None:
    running = start_server("127.0.0.1", 0, "default", workers=1, max_concurrent_rpcs=1)
    try:
        with grpc.insecure_channel(running.address) as chan:
            stub = latency_pb2_grpc.LatencyServiceStub(chan)
            echo(chan)  # connect first, so the slow call below starts at once
            slow = stub.Echo.future(
                latency_pb2.EchoRequest(work_iterations=MAX_WORK_ITERATIONS), timeout=30
            )
            time.sleep(0.02)
            error = rpc_error(lambda: echo(chan))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert slow.result().work_result == work(0, MAX_WORK_ITERATIONS)
    finally:
        running.stop(grace=None)


def test_tuned_refuses_oversized_messages_in_grpc_core() -> None:
    running = start_server("127.0.0.1", 0, "tuned", workers=2)
    try:
        with grpc.insecure_channel(running.address) as chan:
            assert echo(chan, request_id=3).request_id == 3
            error = rpc_error(lambda: echo(chan, payload=b"x" * 8192))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        running.stop(grace=None)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.mark.parametrize("profile", ["default", "tuned"])  # tuned: warm-up must not count
def test_metrics_endpoint_serves_histogram_and_counters(profile: str) -> None:
    running = start_server("127.0.0.1", 0, profile, metrics_port=0)
    try:
        assert running.metrics_port not in (None, running.port)
        with grpc.insecure_channel(running.address) as chan:
            for request_id in range(3):
                echo(chan, request_id=request_id)
            rpc_error(lambda: echo(chan, payload=b"x" * (MAX_PAYLOAD_BYTES + 1)))
        text = scrape(running.metrics_port)
        assert 'lowlatency_server_handler_seconds_bucket{le="0.0001"}' in text
        assert "lowlatency_server_handler_seconds_count 4.0" in text
        assert 'lowlatency_server_requests_total{code="OK"} 3.0' in text
        assert 'lowlatency_server_requests_total{code="INVALID_ARGUMENT"} 1.0' in text
        assert 'lowlatency_server_errors_total{code="INVALID_ARGUMENT"} 1.0' in text
    finally:
        running.stop(grace=None)


def listening_ports_of_this_process() -> set[int]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A = TCP_LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_metrics_off_by_default_opens_only_the_grpc_port() -> None:
    before = listening_ports_of_this_process()
    running = start_server("127.0.0.1", 0, "default")
    try:
        assert running.metrics_port is None
        assert listening_ports_of_this_process() - before == {running.port}
    finally:
        running.stop(grace=None)


@pytest.mark.parametrize("profile_args", [["--profile", "default"], ["--profile", "tuned"]])
def test_sigterm_shuts_down_gracefully(profile_args: list[str], start_cli: StartCli) -> None:
    process, address = start_cli(*profile_args, "--cpus", "0", "--grace", "2")
    try:
        with open(f"/proc/{process.pid}/status", encoding="ascii") as status:
            assert "Cpus_allowed_list:\t0\n" in status.read()
        with grpc.insecure_channel(address) as chan:
            assert echo(chan, request_id=9).request_id == 9
            in_flight = latency_pb2_grpc.LatencyServiceStub(chan).Echo.future(
                latency_pb2.EchoRequest(work_iterations=MAX_WORK_ITERATIONS), timeout=30
            )
            time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            # Graceful: the request already running completes within the grace period.
            assert in_flight.result().work_result == work(0, MAX_WORK_ITERATIONS)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0, stderr
        assert "SIGTERM" in stderr
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize(
    ("cpus", "message"), [("0-x", "bad CPU list item"), ("4096", "beyond this host's CPUs")]
)
def test_cli_refuses_bad_cpus(cpus: str, message: str) -> None:
    result = subprocess.run(
        [*CLI, "serve", "--port", "0", "--cpus", cpus],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_unix_domain_socket(tmp_path: Path) -> None:
    path = tmp_path / "service.sock"
    running = start_server("127.0.0.1", 0, "default", uds=str(path))
    try:
        with grpc.insecure_channel(f"unix:{path}") as chan:
            assert echo(chan, request_id=11).hops == 1
    finally:
        running.stop(grace=None)


def test_ipv6_address_is_bracketed() -> None:
    assert _bind_address("::1", 50051) == "[::1]:50051"
    assert _bind_address("127.0.0.1", 0) == "127.0.0.1:0"


def test_busy_port_is_refused() -> None:
    running = start_server("127.0.0.1", 0, "tuned", workers=1)  # tuned: no SO_REUSEPORT
    try:
        with pytest.raises(OSError, match="cannot listen"):
            start_server("127.0.0.1", running.port, "tuned", workers=1)
    finally:
        running.stop(grace=None)
