"""The reference gRPC service: ``lowlatency.v1.LatencyService/Echo`` on a sync grpc server.

Python API (used by the tests and by ``compare``)::

    from lowlatency_service.serve import start_server

    running = start_server("127.0.0.1", 0, "tuned", cpus=[1], downstream=None,
                           metrics_port=None, max_concurrent_rpcs=256, read_timeout=1.0)
    running.port         # the bound TCP port (the real one when 0 was asked for)
    running.address      # "127.0.0.1:PORT", for grpc.insecure_channel()
    running.metrics_port # None unless metrics_port was given
    running.stop(grace=1.0)  # health NOT_SERVING, refuse new RPCs, let in-flight ones finish

Process-wide measures (CPU affinity, GRPC_EXPERIMENTS, memory lock) are not
applied here: they must precede ``import grpc`` and belong to
``runtime.apply_process_profile``, which ``lowlatency-service serve`` calls.
``start_server`` applies the rest of the profile: server options, worker
threads (sized from ``cpus``), and for ``tuned`` a self warm-up followed by
``runtime.after_warmup`` (gc freeze).

Behaviour: ``Echo`` runs ``work_iterations`` rounds of a 64-bit LCG seeded
with ``request_id`` (result in ``work_result``); a payload over 1 KiB or more
than ``MAX_WORK_ITERATIONS`` rounds is INVALID_ARGUMENT, and so is a body
that is no ``EchoRequest``: the handler receives the raw bytes and parses them
itself, because grpcio's own parse failure (INTERNAL) leaves its per-call
state behind (about 18 KB per call) and logs a traceback each time. Such
requests are logged as a count at most once per ``INVALID_LOG_INTERVAL_S``. In chain mode
(``downstream``) the request is forwarded over one long-lived channel before
the reply, ``hops`` counts the instances passed, and a downstream failure
returns the downstream's status (UNAVAILABLE when it cannot be reached).
More than ``max_concurrent_rpcs`` RPCs in flight are refused with
RESOURCE_EXHAUSTED; an Echo call stops counting when its handler returns,
before its reply is sent (``SlotExecutor``), so a client that never has more
than that many calls outstanding is never refused. Health (``grpc.health.v1``)
reports SERVING for "" and the service until shutdown begins, then
NOT_SERVING; reflection is on.

Clients that stop mid-request: grpcio gives a call a handler thread when
its HEADERS arrive (Echo is registered stream-unary so that the handler runs
then, see ``method_handlers``) and the thread waits for the request message.
The wait ends when the message is in, when the peer resets the stream or
connection, or at the read timeout (``runtime.READ_TIMEOUT_S``, ``--read-timeout``),
counted from the call's arrival: then ``ReadDeadlines`` cancels the call
(the peer gets grpc-status CANCELLED and RST_STREAM) and the thread is free.
A call that waited for its thread longer than that still gets
``QUEUED_READ_GRACE_S``. So peers that send HEADERS and nothing more delay
other calls by at most the read timeout plus that grace per queued silent
call and thread, however many there are below ``max_concurrent_rpcs``. A
connection that has not finished the HTTP/2 handshake is closed after
``runtime.HANDSHAKE_TIMEOUT_MS``. An honest client sends HEADERS and the
message together and never sees these limits.
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from types import FrameType
from typing import NoReturn, TypeVar
from wsgiref.simple_server import WSGIServer

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)

from lowlatency_service import runtime
from lowlatency_service._proto.lowlatency.v1 import latency_pb2, latency_pb2_grpc

log = logging.getLogger("lowlatency_service.serve")

SERVICE_NAME = latency_pb2.DESCRIPTOR.services_by_name["LatencyService"].full_name
MAX_PAYLOAD_BYTES = 1024
# About 0.1 s of handler time: a benchmark knob, not a way to occupy the server.
MAX_WORK_ITERATIONS = 1_000_000
WARMUP_REQUESTS = 500
# Requests that do not parse are counted and logged at most this often.
INVALID_LOG_INTERVAL_S = 60.0
DOWNSTREAM_CONNECT_TIMEOUT_S = 2.0
# A call that waited for a handler thread past its read timeout gets this long
# for its message (one already in gRPC core arrives within about 0.1 ms).
QUEUED_READ_GRACE_S = 0.01

_MASK64 = (1 << 64) - 1
_LCG_MULTIPLIER = 6364136223846793005  # Knuth's MMIX constants
_LCG_INCREMENT = 1442695040888963407

# Sub-millisecond resolution where the service lives, coarse above.
LATENCY_BUCKETS_S = (
    *(us / 1e6 for us in (10, 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750)),
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.1,
    1.0,
)


def work(seed: int, iterations: int) -> int:
    """The handler's deterministic work: `iterations` steps of a 64-bit LCG from `seed`."""
    value = seed
    for _ in range(iterations):
        value = (value * _LCG_MULTIPLIER + _LCG_INCREMENT) & _MASK64
    return value


class Metrics:
    """Prometheus metrics of one server, in their own registry (several servers per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_* (RSS, CPU seconds, open files): what bench --metrics-url reads per soak window.
        ProcessCollector(registry=self.registry)
        self.latency = Histogram(
            "lowlatency_server_handler_seconds",
            "Time spent in the Echo handler, including the downstream call in chain mode",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.requests = Counter(
            "lowlatency_server_requests",
            "Echo requests handled, by gRPC status code",
            ["code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "lowlatency_server_errors",
            "Echo requests answered with an error, by gRPC status code",
            ["code"],
            registry=self.registry,
        )
        # Resolved once: a labels() lookup per request is avoidable work.
        self._ok = self.requests.labels(grpc.StatusCode.OK.name)

    def ok(self, seconds: float) -> None:
        self.latency.observe(seconds)
        self._ok.inc()

    def error(self, seconds: float, code: grpc.StatusCode) -> None:
        self.latency.observe(seconds)
        self.requests.labels(code.name).inc()
        self.errors.labels(code.name).inc()


def downstream_status(code: grpc.StatusCode) -> grpc.StatusCode:
    """The status to answer with when the downstream call failed with `code`.

    A connection failure already arrives as UNAVAILABLE, and the downstream's
    own answers (deadline, limit, ...) are passed on. UNIMPLEMENTED would tell
    the caller that *this* method does not exist, when the fault is a
    downstream that is not a LatencyService: UNAVAILABLE instead.
    """
    return grpc.StatusCode.UNAVAILABLE if code == grpc.StatusCode.UNIMPLEMENTED else code


class InvalidRequestLog:
    """Counts requests whose body does not parse; logs the count, never each request.

    The first one is logged at once, later ones as one line per
    ``interval`` s, so a flood of garbage costs a few log lines, not a
    traceback per request.
    """

    def __init__(self, interval: float = INVALID_LOG_INTERVAL_S) -> None:
        self._interval = interval
        self._lock = threading.Lock()  # error path only
        self._pending = 0
        self._next_log = 0.0

    def count(self, problem: str) -> None:
        with self._lock:
            self._pending += 1
            now = time.monotonic()
            if now < self._next_log:
                return
            pending, self._pending = self._pending, 0
            self._next_log = now + self._interval
        log.warning(
            "%d request(s) with an unparsable body answered INVALID_ARGUMENT (latest: %s); "
            "next count in %.0f s at the earliest",
            pending,
            problem,
            self._interval,
        )


_slot = threading.local()
_T = TypeVar("_T")


class SlotExecutor(futures.ThreadPoolExecutor):
    """The handler pool, with an RPC's concurrency slot freed when its handler returns.

    grpcio counts an RPC against ``maximum_concurrent_rpcs`` until the
    future that ``submit`` returns is done. A plain pool finishes that future
    only after the reply is sent and the worker thread gets the GIL back, so a
    closed-loop client's next request can find its previous call still
    counted and be refused within the limit. Here ``submit`` returns a
    separate future that :func:`release_slot` (called by the Echo handler
    just before it returns) or else the end of the task finishes.
    """

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN002, ANN003, ANN201
        slot: futures.Future[None] = futures.Future()

        arrived = time.monotonic()

        def run() -> None:
            _slot.future = slot
            _slot.arrived = arrived
            try:
                fn(*args, **kwargs)
            finally:
                _slot.future = None
                if not slot.done():
                    slot.set_result(None)

        super().submit(run)
        return slot


class ReadDeadlines:
    """Reads a call's one request message within the read timeout, or cancels the call.

    One watchdog thread for the server. It sleeps until the earliest
    deadline of the calls waiting for their message, and without any such
    call until one is added, so the request path pays two dict operations
    under an uncontended lock and no wake-up of its own.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._cond = threading.Condition(threading.Lock())
        self._waiting: dict[grpc.ServicerContext, float] = {}
        self._wakes_at = math.inf  # when the watchdog wakes next; -inf while it runs
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="read-deadline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def read(self, requests: Iterator[_T], context: grpc.ServicerContext, method: str) -> _T:
        """The call's request message; ends the RPC (raises) when the call was cancelled, by
        the peer or here because the message did not come in time.

        The deadline counts from the call's arrival, the wait for a thread
        included; a call that got its thread later than that still gets
        ``QUEUED_READ_GRACE_S``, time enough for a message that is already
        in, so a queue of calls that send nothing drains in that step per
        call and thread instead of holding each thread for the full timeout.
        A call half-closed without a message gets UNIMPLEMENTED, as from
        grpcio's unary path.
        """
        now = time.monotonic()
        arrived = getattr(_slot, "arrived", now)
        self.add(context, max(arrived + self.timeout, now + QUEUED_READ_GRACE_S))
        try:
            request = next(requests, None)
        except grpc.RpcError:  # the peer reset the stream
            request = None
        if request is not None:
            self.discard(context)
            return request
        release_slot()
        if not self.discard(context) or not context.is_active():
            # Cancelled: the peer has its status and reset already; aborting only ends
            # the handler without grpcio logging it as an application error.
            context.abort(grpc.StatusCode.CANCELLED, f"no {method} request message in time")
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"{method} requires exactly one request message"
        )

    def bounded(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """`handler` with its one request read by :meth:`read`: unary-unary becomes
        stream-unary, unary-stream stream-stream; others are returned as they are."""
        if handler.request_streaming:
            return handler
        if not handler.response_streaming:
            unary = handler.unary_unary

            def call(requests: Iterator[object], context: grpc.ServicerContext) -> object:
                return unary(self.read(requests, context, method), context)

            return grpc.stream_unary_rpc_method_handler(
                call, handler.request_deserializer, handler.response_serializer
            )
        streaming = handler.unary_stream

        def stream(requests: Iterator[object], context: grpc.ServicerContext) -> Iterator[object]:
            yield from streaming(self.read(requests, context, method), context)

        return grpc.stream_stream_rpc_method_handler(
            stream, handler.request_deserializer, handler.response_serializer
        )

    def add_to_server(
        self, add: Callable[[object, object], None], servicer: object, server: grpc.Server
    ) -> None:
        """Register a servicer through its generated ``add_*_to_server`` function, with
        each method's request read within the read timeout (:meth:`bounded`)."""
        reads = self

        class Registrar:
            def add_generic_rpc_handlers(self, _handlers: object) -> None:
                pass  # the same handlers come to add_registered_method_handlers

            def add_registered_method_handlers(
                self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
            ) -> None:
                bounded = {
                    name: reads.bounded(handler, f"{service}/{name}")
                    for name, handler in handlers.items()
                }
                server.add_generic_rpc_handlers(
                    (grpc.method_handlers_generic_handler(service, bounded),)
                )
                server.add_registered_method_handlers(service, bounded)

        add(servicer, Registrar())

    def add(self, context: grpc.ServicerContext, deadline: float) -> None:
        with self._cond:
            self._waiting[context] = deadline
            if deadline < self._wakes_at:
                self._cond.notify()

    def discard(self, context: grpc.ServicerContext) -> bool:
        """Stop watching `context`; False when the watchdog has already cancelled it."""
        with self._cond:
            return self._waiting.pop(context, None) is not None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                self._wakes_at = -math.inf
                now = time.monotonic()
                for context, deadline in list(self._waiting.items()):
                    if deadline <= now:
                        del self._waiting[context]
                        context.cancel()  # RST_STREAM CANCELLED to the peer; frees the thread
                self._wakes_at = min(self._waiting.values(), default=math.inf)
                self._cond.wait(None if self._wakes_at == math.inf else self._wakes_at - now)


def release_slot() -> None:
    """Free the calling handler's concurrency slot (see SlotExecutor); idempotent."""
    slot = getattr(_slot, "future", None)
    if slot is not None and not slot.done():
        slot.set_result(None)


class LatencyServicer:
    """Echo with deterministic work on the raw request bytes; no logging or locking on the
    request path."""

    def __init__(
        self,
        downstream_target: str | None,
        channel: grpc.Channel | None,
        requests: ReadDeadlines,
    ) -> None:
        self._requests = requests
        self._downstream_target = downstream_target
        self._downstream = (
            latency_pb2_grpc.LatencyServiceStub(channel).Echo if channel is not None else None
        )
        self.metrics: Metrics | None = None  # set after warm-up so it does not count
        self.invalid = InvalidRequestLog()

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """The service's methods, bytes in and bytes out (no grpcio (de)serializers).

        Echo is unary on the wire but registered as stream-unary: grpcio then
        calls the handler when the call gets its thread, before the request
        message is in, so the handler can bound the wait (``ReadDeadlines``). A unary
        handler is called only once the message is in, and the thread waits
        inside grpcio without a bound.
        """
        return {"Echo": grpc.stream_unary_rpc_method_handler(self.Echo)}

    def _fail(
        self, context: grpc.ServicerContext, start: float, code: grpc.StatusCode, details: str
    ) -> NoReturn:
        if self.metrics is not None:
            self.metrics.error(time.perf_counter() - start, code)
        release_slot()
        context.abort(code, details)  # raises, ending the RPC with this status

    def Echo(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        start = time.perf_counter()
        body = self._requests.read(requests, context, "Echo")
        try:
            request = latency_pb2.EchoRequest.FromString(body)
        except DecodeError as exc:
            problem = f"request body ({len(body)} bytes) is not a lowlatency.v1.EchoRequest: {exc}"
            self.invalid.count(problem)
            self._fail(context, start, grpc.StatusCode.INVALID_ARGUMENT, problem)
        if len(request.payload) > MAX_PAYLOAD_BYTES:
            self._fail(
                context,
                start,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"payload is {len(request.payload)} bytes, at most {MAX_PAYLOAD_BYTES} allowed",
            )
        if request.work_iterations > MAX_WORK_ITERATIONS:
            self._fail(
                context,
                start,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"work_iterations is {request.work_iterations}, at most {MAX_WORK_ITERATIONS}",
            )
        result = work(request.request_id, request.work_iterations)
        hops = 1
        if self._downstream is not None:
            try:
                hops += self._downstream(request, timeout=context.time_remaining()).hops
            except grpc.RpcError as exc:
                self._fail(
                    context,
                    start,
                    downstream_status(exc.code()),
                    f"downstream {self._downstream_target}: {exc.code().name}: {exc.details()}",
                )
        reply = latency_pb2.EchoReply(
            request_id=request.request_id,
            client_send_ns=request.client_send_ns,
            work_result=result,
            hops=hops,
            payload=request.payload,
        ).SerializeToString()
        if self.metrics is not None:
            self.metrics.ok(time.perf_counter() - start)
        release_slot()
        return reply


@dataclass
class RunningServer:
    """A started server; see the module docstring."""

    server: grpc.Server
    health: health.HealthServicer
    port: int
    address: str
    profile: str
    workers: int
    read_timeout: float
    metrics_port: int | None = None
    uds: str | None = None
    _downstream_channel: grpc.Channel | None = None
    _metrics_httpd: WSGIServer | None = None
    _executor: SlotExecutor | None = None
    _deadlines: ReadDeadlines | None = None
    _stopped: bool = field(default=False, init=False)

    def enter_graceful_shutdown(self) -> None:
        """Report NOT_SERVING on every health service name; RPCs still served."""
        self.health.enter_graceful_shutdown()

    def stop(self, grace: float | None = 5.0) -> None:
        """NOT_SERVING, refuse new RPCs, wait up to `grace` s for in-flight ones, free all."""
        if self._stopped:
            return
        self._stopped = True
        self.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self._downstream_channel is not None:
            self._downstream_channel.close()
        if self._metrics_httpd is not None:
            self._metrics_httpd.shutdown()
            self._metrics_httpd.server_close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        if self._deadlines is not None:
            self._deadlines.close()


def _bind_address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def port_in_use(host: str, port: int) -> bool:
    """Whether another socket listens on host:port (a plain bind gets EADDRINUSE).

    Asked before grpcio binds, because grpcio says no more than "Failed to
    bind" and gRPC core logs an error line of its own. The probe sets no
    SO_REUSEPORT, like the server; SO_REUSEADDR so TIME_WAIT does not count.
    """
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _connect_downstream(target: str, profile: str) -> grpc.Channel:
    """One long-lived channel, connected now so the first request does not pay for it."""
    channel = grpc.insecure_channel(target, options=runtime.channel_options(profile))
    try:
        grpc.channel_ready_future(channel).result(timeout=DOWNSTREAM_CONNECT_TIMEOUT_S)
    except grpc.FutureTimeoutError:
        log.warning(
            "downstream %s not reachable yet; requests fail with UNAVAILABLE until it is", target
        )
    return channel


def _warm_up(address: str, profile: str) -> None:
    """Run the request path a few hundred times (imports, caches, allocator pools)."""
    request = latency_pb2.EchoRequest(payload=b"\0" * 64, work_iterations=10)
    with grpc.insecure_channel(address, options=runtime.channel_options(profile)) as channel:
        echo = latency_pb2_grpc.LatencyServiceStub(channel).Echo
        for request_id in range(WARMUP_REQUESTS):
            request.request_id = request_id
            try:
                echo(request, timeout=DOWNSTREAM_CONNECT_TIMEOUT_S)
            except grpc.RpcError:
                return  # e.g. the downstream is down: nothing more to warm


def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    profile: str = "default",
    *,
    cpus: list[int] | None = None,
    workers: int | None = None,
    downstream: str | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    max_concurrent_rpcs: int | None = 256,
    uds: str | None = None,
    read_timeout: float | None = None,
) -> RunningServer:
    """Start serving and return once the server is warm and SERVING (see module docstring)."""
    if profile not in runtime.PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    if workers is None:
        workers = runtime.worker_threads(profile, cpus, blocking_calls=downstream is not None)
    channel = _connect_downstream(downstream, profile) if downstream else None
    if read_timeout is None:
        read_timeout = runtime.read_timeout(profile)
    deadlines = ReadDeadlines(read_timeout)
    servicer = LatencyServicer(downstream, channel, deadlines)
    health_servicer = health.HealthServicer()
    executor = SlotExecutor(max_workers=workers, thread_name_prefix="echo")
    server = grpc.server(
        executor,
        options=runtime.server_options(profile),
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    handlers = servicer.method_handlers()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
    deadlines.add_to_server(health_pb2_grpc.add_HealthServicer_to_server, health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    bind = _bind_address(host, port)
    if port and port_in_use(host, port):
        if channel is not None:
            channel.close()
        raise OSError(f"cannot listen on {bind}: port {port} is in use")
    try:
        bound = server.add_insecure_port(bind)
        if uds is not None:
            server.add_insecure_port(f"unix:{uds}")
    except RuntimeError as exc:  # grpcio raises here when the bind fails
        if channel is not None:
            channel.close()
        where = bind if uds is None else f"{bind} or unix:{uds}"
        raise OSError(f"cannot listen on {where}") from exc
    address = _bind_address(host, bound)
    server.start()
    deadlines.start()

    if profile == "tuned":
        _warm_up(address, profile)
        runtime.after_warmup(profile)
    running = RunningServer(
        server=server,
        health=health_servicer,
        port=bound,
        address=address,
        profile=profile,
        workers=workers,
        read_timeout=read_timeout,
        uds=uds,
        _downstream_channel=channel,
        _executor=executor,
        _deadlines=deadlines,
    )
    if metrics_port is not None:
        metrics = Metrics()
        httpd, _ = start_http_server(metrics_port, metrics_host, registry=metrics.registry)
        running.metrics_port = httpd.server_port
        running._metrics_httpd = httpd
        servicer.metrics = metrics
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return running


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cpus = runtime.resolve_cpus(args.cpus)
    try:
        running = start_server(
            args.host,
            args.port,
            args.profile,
            cpus=cpus,
            workers=args.workers,
            downstream=args.downstream,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            max_concurrent_rpcs=args.max_concurrent_rpcs,
            uds=args.uds,
            read_timeout=args.read_timeout,
        )
    except OSError as exc:
        # One line, no usage text: the arguments were fine, the port is not.
        print(f"lowlatency-service serve: {exc}", file=sys.stderr, flush=True)
        return 2

    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: shutting down (grace %.1f s)", signal.Signals(signum).name, args.grace)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    for measure in runtime.describe(args.profile):
        log.info("tuned measure %s: %s [%s]", measure.name, measure.summary, measure.status)
    extras = [
        f"profile={args.profile}",
        f"workers={running.workers}",
        f"read-timeout={running.read_timeout:g}s",
    ]
    if cpus is not None:
        extras.append(f"cpus={runtime.format_cpulist(cpus)}")
    if args.downstream:
        extras.append(f"downstream={args.downstream}")
    if running.metrics_port is not None:
        extras.append(f"metrics={_bind_address(args.metrics_host, running.metrics_port)}")
    if args.uds:
        extras.append(f"uds={args.uds}")
    print(f"lowlatency-service listening on {running.address} {' '.join(extras)}", flush=True)

    stop_requested.wait()
    running.enter_graceful_shutdown()
    if args.drain:
        time.sleep(args.drain)
    running.stop(args.grace)
    log.info("stopped")
    return 0
