"""``lowlatency-service bench``: load a running service, report HDR percentiles, gate on them.

The client is half of every round trip, so the profile applies to it too.
``default`` is the plain grpcio client: a thread per slot, protobuf messages
built per request. ``tuned`` (after cli has pinned the process and turned
gRPC's newer engine off before ``import grpc``) sends preserialized request
bytes and does not parse replies, freezes the GC after warm-up, and keeps N
requests in flight as N outstanding futures driven by one client thread
rather than N threads, which contend for the GIL and wake each other
(MEASUREMENTS.md: c64 p99.9 13 ms vs 28 ms).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence

import grpc

from lowlatency_service import loadgen, runtime
from lowlatency_service._proto.lowlatency.v1 import latency_pb2, latency_pb2_grpc
from lowlatency_service.errors import UsageError
from lowlatency_service.gate import Limits, breaches, failure_line
from lowlatency_service.histogram import Summary, summarize, write_log
from lowlatency_service.report import table

ECHO_METHOD = "/lowlatency.v1.LatencyService/Echo"
_PROGRESS_INTERVAL_S = 0.5


class ReplyMismatch(Exception):
    """The reply does not belong to the request (a service bug, counted as an error)."""


def client_model(args: argparse.Namespace) -> str:
    """threads or futures, resolving "auto" by profile and concurrency.

    At concurrency 1 a blocking call polls its own completion queue in the
    calling thread; a future needs gRPC's channel thread to hand the answer
    over (measured: 1.2 against 13 client context switches per request).
    The open loop sleeps between sends, so each slot has its own thread.
    """
    if args.rate is not None:
        return "threads"
    if args.client_model != "auto":
        return args.client_model
    return "futures" if args.profile == "tuned" and args.concurrency > 1 else "threads"


def _request(args: argparse.Namespace, request_id: int) -> latency_pb2.EchoRequest:
    return latency_pb2.EchoRequest(
        request_id=request_id,
        work_iterations=args.work_iterations,
        payload=b"\x5a" * args.payload_bytes,
    )


def _raw_echo(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:
    """Echo without (de)serializers: request and reply stay bytes.

    _registered_method=True is what the generated stubs pass: the method path
    is registered with the channel once instead of being looked up per call.
    """
    return channel.unary_unary(ECHO_METHOD, _registered_method=True)


def _protobuf_calls(channel: grpc.Channel, args: argparse.Namespace) -> list[loadgen.Call]:
    """The plain client: a new request message per call, the reply parsed and checked."""
    echo = latency_pb2_grpc.LatencyServiceStub(channel).Echo
    payload = b"\x5a" * args.payload_bytes
    timeout = args.timeout

    def make(slot: int) -> loadgen.Call:
        ids = itertools.count(slot << 32)

        def call() -> None:
            request_id = next(ids)
            reply = echo(
                latency_pb2.EchoRequest(
                    request_id=request_id,
                    client_send_ns=time.monotonic_ns(),
                    work_iterations=args.work_iterations,
                    payload=payload,
                ),
                timeout=timeout,
            )
            if reply.request_id != request_id:
                raise ReplyMismatch(f"reply to {reply.request_id}, sent {request_id}")

        return call

    return [make(slot) for slot in range(args.concurrency)]


def _raw_calls(channel: grpc.Channel, args: argparse.Namespace) -> list[loadgen.Call]:
    """The tuned client: one preserialized request per slot, reply bytes not parsed.

    Nothing is allocated per request on the Python side but gRPC's own
    objects; a failed call still raises, so errors are counted.
    """
    echo = _raw_echo(channel)
    timeout = args.timeout

    def make(slot: int) -> loadgen.Call:
        request = _request(args, slot + 1).SerializeToString()

        def call() -> None:
            echo(request, timeout=timeout)

        return call

    return [make(slot) for slot in range(args.concurrency)]


def _future_submit(
    channel: grpc.Channel, args: argparse.Namespace
) -> Callable[[loadgen.Done], loadgen.Submit]:
    """loadgen.Outstanding's bind: Echo.future plus a preallocated done callback per slot."""
    if args.profile == "tuned":
        echo = _raw_echo(channel)
        requests: Sequence[object] = [
            _request(args, slot + 1).SerializeToString() for slot in range(args.concurrency)
        ]
    else:
        echo = latency_pb2_grpc.LatencyServiceStub(channel).Echo
        requests = [_request(args, slot + 1) for slot in range(args.concurrency)]
    timeout = args.timeout

    def bind(done: loadgen.Done) -> loadgen.Submit:
        def completed(slot: int) -> Callable[[grpc.Future], None]:
            def callback(future: grpc.Future) -> None:
                code = future.code()
                done(slot, None if code is grpc.StatusCode.OK else f"{code}: {future.details()}")

            return callback

        # Built once: the callbacks are preallocated, as the requests are.
        callbacks = [completed(slot) for slot in range(args.concurrency)]

        def submit(slot: int) -> None:
            echo.future(requests[slot], timeout=timeout).add_done_callback(callbacks[slot])

        return submit

    return bind


class _ProgressLine:
    """Rewrites one stderr line twice a second while the load runs (terminals only)."""

    def __init__(self, progress: loadgen.Progress, label: str) -> None:
        self._progress = progress
        self._label = label
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> _ProgressLine:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()

    def _loop(self) -> None:
        while not self._stop.wait(_PROGRESS_INTERVAL_S):
            answered, failed = self._progress.completed()
            elapsed = time.monotonic() - self._started
            sys.stderr.write(
                f"\r\033[K{self._label}: {answered} answered, {failed} errors, "
                f"{answered / elapsed:.0f} req/s, {elapsed:.1f} s"
            )
            sys.stderr.flush()


def _load(
    channel: grpc.Channel, args: argparse.Namespace, plan: loadgen.Plan, progress: loadgen.Progress
) -> loadgen.Outcome:
    failures = (grpc.RpcError, ReplyMismatch)
    model = client_model(args)
    if model == "futures":
        return loadgen.Outstanding(plan, _future_submit(channel, args), progress).run()
    make_calls = _raw_calls if args.profile == "tuned" else _protobuf_calls
    calls = make_calls(channel, args)
    if plan.rate is not None:
        return loadgen.run_open_loop(calls, plan, failures, progress)
    return loadgen.run_threads(calls, plan, failures, progress)


def _connect(args: argparse.Namespace) -> grpc.Channel:
    channel = grpc.insecure_channel(args.target, options=runtime.channel_options(args.profile))
    try:
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        raise ConnectionError(f"{args.target} not reachable within {args.timeout:g} s") from None
    return channel


def client_cost(before: resource.struct_rusage, requests: int) -> dict[str, float]:
    """CPU time and context switches of this process per request since `before`.

    Less sensitive to other load on the machine than latency, so it shows
    what a client-side measure saves even on a noisy host.
    """
    after = resource.getrusage(resource.RUSAGE_SELF)
    count = max(requests, 1)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    switches = (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw)
    return {
        "client_cpu_us_per_request": round(cpu_s * 1e6 / count, 1),
        "client_context_switches_per_request": round(switches / count, 2),
    }


def _result(
    args: argparse.Namespace, summary: Summary, outcome: loadgen.Outcome, cost: dict[str, float]
) -> dict:
    result: dict[str, object] = dict(summary.to_dict())
    result.update(cost)
    result.update(
        tail_ratio=round(summary.tail_ratio, 3),
        target=args.target,
        profile=args.profile,
        cpus=args.cpus,
        concurrency=args.concurrency,
        client_model=client_model(args),
        mode="open" if args.rate is not None else "closed",
        rate=args.rate,
        warmup=args.warmup,
        payload_bytes=args.payload_bytes,
        work_iterations=args.work_iterations,
        duration_s=round(outcome.elapsed_s, 3),
        first_error=outcome.first_error,
        grpc_version=grpc.__version__,
        measures=[m.as_dict() for m in runtime.describe(args.profile)],
    )
    if outcome.uncorrected is not None:
        uncorrected = summarize(outcome.uncorrected, outcome.errors, outcome.elapsed_s)
        result["uncorrected"] = uncorrected.to_dict()
    return result


def _check(args: argparse.Namespace) -> None:
    """Argument combinations argparse cannot refuse by itself (exit status 2)."""
    if args.rate is not None and args.client_model == "futures":
        raise UsageError("--client-model futures is closed loop only; --rate uses threads")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'lowlatency-service[plot]'")


def _measure(
    channel: grpc.Channel, args: argparse.Namespace, label: str
) -> tuple[loadgen.Outcome, dict[str, float]]:
    """Warm up, apply the after-warm-up measures, then the measured run and its client cost."""
    progress = loadgen.Progress()
    if args.warmup:
        warmup = loadgen.Plan(args.concurrency, requests=args.warmup, rate=args.rate)
        _load(channel, args, warmup, progress)
    runtime.after_warmup(args.profile)
    plan = loadgen.Plan(args.concurrency, args.requests, args.duration, args.rate)
    before = resource.getrusage(resource.RUSAGE_SELF)
    if sys.stderr.isatty():
        with _ProgressLine(progress, label):
            outcome = _load(channel, args, plan, progress)
    else:
        outcome = _load(channel, args, plan, progress)
    return outcome, client_cost(before, outcome.histogram.get_total_count() + outcome.errors)


def _write_files(
    args: argparse.Namespace,
    summary: Summary,
    outcome: loadgen.Outcome,
    cost: dict[str, float],
    *,
    label: str,
    title: str,
) -> None:
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(_result(args, summary, outcome, cost), handle, indent=2)
            handle.write("\n")
    if args.hdr_log:
        end = outcome.started_at + outcome.elapsed_s
        write_log(outcome.histogram, args.hdr_log, outcome.started_at, end, label)
    if args.plot:
        from lowlatency_service.plot import plot_percentiles  # noqa: PLC0415  # needs matplotlib

        curves = {label: outcome.histogram}
        if outcome.uncorrected is not None:
            curves[label + " uncorrected"] = outcome.uncorrected
        plot_percentiles(curves, args.plot, title)


def run(args: argparse.Namespace) -> int:
    _check(args)
    try:
        channel = _connect(args)
    except ConnectionError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    label = f"{args.profile} c{args.concurrency}"
    with channel:
        outcome, cost = _measure(channel, args, label)

    summary = summarize(outcome.histogram, outcome.errors, outcome.elapsed_s)
    mode = f"open loop {args.rate:g} req/s" if args.rate is not None else "closed loop"
    print(f"{args.target}  {mode}  {summary.requests} requests in {outcome.elapsed_s:.2f} s")
    rows = [(label, summary)]
    if outcome.uncorrected is not None:
        uncorrected = summarize(outcome.uncorrected, outcome.errors, outcome.elapsed_s)
        rows.append((label + " uncorrected", uncorrected))
    print(table(rows))
    if outcome.first_error:
        print(f"first error: {outcome.first_error}", file=sys.stderr)
    _write_files(args, summary, outcome, cost, label=label, title=f"{args.target} {mode}")

    limits = Limits(args.max_p50_us, args.max_p99_us, args.max_p999_us, args.max_tail_ratio)
    found = breaches(summary, limits)
    if found:
        print(failure_line(found), file=sys.stderr)
        return 1
    return 0
