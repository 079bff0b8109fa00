"""``lowlatency-service bench``: load a running service, report HDR percentiles, gate on them.

The client is half of every round trip, so the profile applies to it too.
``default`` is the plain grpcio client: a thread per slot, protobuf messages
built per request. ``tuned`` (after cli has pinned the process and turned
gRPC's newer engine off before ``import grpc``) sends preserialized request
bytes and does not parse replies, freezes the GC after warm-up, and keeps N
requests in flight as N outstanding futures driven by one client thread
rather than N threads, which contend for the GIL and wake each other
(docs/reference-service-performance.md, "Client model").

The verdict comes from gate.py; run() prints it as one line, writes it into
the JSON and returns its exit status (see EXIT_HELP in bench_args).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import grpc

from lowlatency_service import (
    gate,
    generic_call,
    loadgen,
    profiling,
    runtime,
    service_process,
    soak,
)
from lowlatency_service._proto.lowlatency.v1 import latency_pb2, latency_pb2_grpc
from lowlatency_service.bench_args import make_parents
from lowlatency_service.errors import UsageError
from lowlatency_service.generic_call import RawCall
from lowlatency_service.histogram import (
    Summary,
    new_histogram,
    summarize,
    write_intervals,
    write_log,
)
from lowlatency_service.rawtcp import split_target
from lowlatency_service.report import table

ECHO_METHOD = "/lowlatency.v1.LatencyService/Echo"
_PROGRESS_INTERVAL_S = 0.5
_CONNECTION_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class ReplyMismatch(Exception):
    """The reply does not belong to the request (a service bug, counted as an error)."""


class TargetUnreachable(Exception):
    """No connection to the target could be made; the message says why, in one line."""


def status_failure(code: grpc.StatusCode | None, details: str | None, peer: str) -> loadgen.Failure:
    """One line per failed call: status code, details, peer.

    UNAVAILABLE, and CANCELLED (this client never cancels, so the server or
    the connection did), may mean the target is gone: they start loadgen's
    loss watch, which only a second without any answer turns into a loss.
    """
    name = code.name if code is not None else "UNKNOWN"
    text = " ".join((details or "").split())
    return loadgen.Failure(name, f"{name}: {text} (peer {peer})", code in _CONNECTION_CODES)


def grpc_classify(peer: str) -> loadgen.Classify:
    """loadgen's Classify for blocking gRPC calls (failure path only)."""

    def classify(exc: BaseException) -> loadgen.Failure:
        if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
            return status_failure(exc.code(), exc.details(), peer)
        name = "REPLY_MISMATCH" if isinstance(exc, ReplyMismatch) else type(exc).__name__
        return loadgen.Failure(name, f"{name}: {' '.join(str(exc).split())} (peer {peer})")

    return classify


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


def raw_echo(args: argparse.Namespace) -> RawCall:
    """The tuned Echo: one preserialized request, request_id 1."""
    return RawCall(ECHO_METHOD, [_request(args, 1).SerializeToString()])


def _raw_method(channel: grpc.Channel, raw: RawCall) -> grpc.UnaryUnaryMultiCallable:
    """The method without (de)serializers: request and reply stay bytes.

    _registered_method=True is what the generated stubs pass: the method path
    is registered with the channel once instead of being looked up per call.
    A non-OK status still raises (or reaches the future's code()), so every
    reply's status is checked without parsing the reply.
    """
    return channel.unary_unary(raw.method, _registered_method=True)


def _slot_requests(raw: RawCall, slot: int) -> Iterator[bytes]:
    """The requests in turn, each slot starting at its own one (Echo: one request)."""
    start = slot % len(raw.requests)
    return itertools.cycle([*raw.requests[start:], *raw.requests[:start]])


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


def _raw_calls(channel: grpc.Channel, args: argparse.Namespace, raw: RawCall) -> list[loadgen.Call]:
    """The tuned and --call client: preserialized requests, reply bytes not parsed.

    Nothing is allocated per request on the Python side but gRPC's own
    objects; a failed call still raises, so errors are counted.
    """
    method = _raw_method(channel, raw)
    timeout = args.timeout
    metadata = raw.metadata

    def make(slot: int) -> loadgen.Call:
        requests = _slot_requests(raw, slot)

        def call() -> None:
            method(next(requests), timeout=timeout, metadata=metadata)

        return call

    return [make(slot) for slot in range(args.concurrency)]


def _future_submit(
    channel: grpc.Channel, args: argparse.Namespace, raw: RawCall | None
) -> Callable[[loadgen.Done], loadgen.Submit]:
    """loadgen.Outstanding's bind: method.future plus a preallocated done callback per slot."""
    metadata = None
    if raw is not None:
        method = _raw_method(channel, raw)
        metadata = raw.metadata
        requests: Sequence[Iterator[object]] = [
            _slot_requests(raw, slot) for slot in range(args.concurrency)
        ]
    else:
        method = latency_pb2_grpc.LatencyServiceStub(channel).Echo
        requests = [itertools.repeat(_request(args, slot + 1)) for slot in range(args.concurrency)]
    timeout = args.timeout
    peer = args.target

    def bind(done: loadgen.Done) -> loadgen.Submit:
        def completed(slot: int) -> Callable[[grpc.Future], None]:
            def callback(future: grpc.Future) -> None:
                code = future.code()
                if code is grpc.StatusCode.OK:
                    done(slot, None)
                else:
                    done(slot, status_failure(code, future.details(), peer))

            return callback

        # Built once: the callbacks are preallocated, as the requests are.
        callbacks = [completed(slot) for slot in range(args.concurrency)]

        def submit(slot: int) -> None:
            method.future(
                next(requests[slot]), timeout=timeout, metadata=metadata
            ).add_done_callback(callbacks[slot])

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
    channel: grpc.Channel,
    args: argparse.Namespace,
    raw: RawCall | None,
    plan: loadgen.Plan,
    progress: loadgen.Progress,
) -> loadgen.Outcome:
    """One load run; ``raw`` is the preserialized call, None for the plain protobuf Echo."""
    failures = (grpc.RpcError, ReplyMismatch)
    model = client_model(args)
    if model == "futures":
        return loadgen.Outstanding(plan, _future_submit(channel, args, raw), progress).run()
    calls = _raw_calls(channel, args, raw) if raw is not None else _protobuf_calls(channel, args)
    classify = grpc_classify(args.target)
    if plan.rate is not None:
        return loadgen.run_open_loop(calls, plan, failures, progress, classify)
    return loadgen.run_threads(calls, plan, failures, progress, classify)


def _refusal(target: str, timeout: float) -> str:
    """Why a plain TCP connection to the target fails, or that it does not (one line)."""
    try:
        socket.create_connection(split_target(target), timeout=min(timeout, 2.0)).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return "TCP connects, but no gRPC connection (is it a gRPC server?)"


def _connect(args: argparse.Namespace) -> grpc.Channel:
    """A ready channel, or TargetUnreachable once --timeout has passed without one.

    gRPC keeps retrying within the timeout, so a service that is still
    starting is waited for; the reason given is what a plain TCP connection
    to the target says.
    """
    options = [*runtime.channel_options(args.profile), *generic_call.tls_options(args)]
    credentials = generic_call.credentials(args)
    if credentials is None:
        channel = grpc.insecure_channel(args.target, options=options)
    else:
        channel = grpc.secure_channel(args.target, credentials, options=options)
    try:
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        reason = _refusal(args.target, args.timeout)
        raise TargetUnreachable(f"{reason} (no connection within {args.timeout:g} s)") from None
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


def _lost_dict(lost: loadgen.Lost, phase: str) -> dict[str, object]:
    return {
        "phase": phase,
        "after_s": lost.after_s,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(lost.at)),
        "in_flight": sum(lost.in_flight_by_code.values()),
        "in_flight_by_code": lost.in_flight_by_code,
        "refused": lost.refused,
        "refused_by_code": lost.refused_by_code,
    }


def _descriptor_source(args: argparse.Namespace) -> str | None:
    if not args.call:
        return None
    return "protoset" if args.protoset else "proto" if args.proto else "reflection"


def _tls_mode(args: argparse.Namespace) -> str:
    if args.tls_cert:
        return "mutual_tls"
    return "tls" if generic_call.credentials_wanted(args) else "plaintext"


def _result(
    args: argparse.Namespace,
    raw: RawCall | None,
    summary: Summary,
    outcome: loadgen.Outcome,
    cost: dict[str, float],
    *,
    verdict: gate.Verdict,
    phase: str,
    soak_keys: dict[str, object] | None = None,
) -> dict:
    """Everything bench's JSON holds (keys listed in bench_args.EXIT_HELP)."""
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
        payload_bytes=None if args.call else args.payload_bytes,
        work_iterations=None if args.call else args.work_iterations,
        call=args.call,
        descriptors=_descriptor_source(args),
        request_messages=len(raw.requests) if raw is not None else 1,
        metadata_keys=[key for key, _ in args.metadata or ()],
        tls=_tls_mode(args),
        duration_s=round(outcome.elapsed_s, 3),
        up_s=round(outcome.up_s, 3),
        first_error=outcome.first_error,
        target_lost=_lost_dict(outcome.lost, phase) if outcome.lost is not None else None,
        grpc_version=grpc.__version__,
        measures=[m.as_dict() for m in runtime.describe(args.profile)],
    )
    if outcome.uncorrected is not None:
        uncorrected = summarize(outcome.uncorrected, outcome.errors, outcome.up_s)
        result["uncorrected"] = uncorrected.to_dict()
    result.update(soak_keys or {})
    result["verdict"] = verdict.as_dict()
    return result


def _check(args: argparse.Namespace) -> None:
    """Argument combinations argparse cannot refuse by itself (exit status 2)."""
    if args.rate is not None and args.client_model == "futures":
        raise UsageError("--client-model futures is closed loop only; --rate uses threads")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'lowlatency-service[plot]'")
    if not args.call:
        given = [
            flag
            for flag, value in (
                ("--protoset", args.protoset),
                ("--proto", args.proto),
                ("--data", args.data),
                ("--data-file", args.data_file),
                ("--metadata", args.metadata),
            )
            if value
        ]
        if given:
            raise UsageError(f"{', '.join(given)} need --call (Echo builds its own request)")
    if args.import_path and not args.proto:
        raise UsageError("--import-path is where --proto's imports are found; give --proto")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("mutual TLS needs both --tls-cert and --tls-key")
    if args.profile_on_failure and not args.json:
        raise UsageError("--profile-on-failure writes its files next to --json; give --json")
    soak.check(args)


def _measure(
    channel: grpc.Channel,
    args: argparse.Namespace,
    raw: RawCall | None,
    label: str,
    sampler: soak.Sampler | None = None,
) -> tuple[loadgen.Outcome, dict[str, float], str]:
    """Warm up, apply the after-warm-up measures, then the measured run and its client cost.

    The last item is the phase the outcome is from: "measured", or "warm-up"
    when the target was lost during the warm-up (then nothing was measured).
    A soak's sampler splits the measured run into its windows.
    """
    progress = loadgen.Progress()
    if args.warmup:
        warmup = loadgen.Plan(args.concurrency, requests=args.warmup, rate=args.rate)
        outcome = _load(channel, args, raw, warmup, progress)
        if outcome.lost is not None:
            outcome.histogram = new_histogram()
            outcome.uncorrected = None
            return outcome, {}, "warm-up"
    runtime.after_warmup(args.profile)
    plan = loadgen.Plan(args.concurrency, args.requests, args.duration, args.rate)
    progress = loadgen.Progress(sampler.windows if sampler is not None else None)
    before = resource.getrusage(resource.RUSAGE_SELF)
    with sampler or contextlib.nullcontext():
        if sys.stderr.isatty():
            with _ProgressLine(progress, label):
                outcome = _load(channel, args, raw, plan, progress)
        else:
            outcome = _load(channel, args, raw, plan, progress)
    cost = client_cost(before, outcome.histogram.get_total_count() + outcome.errors)
    return outcome, cost, "measured"


def _write_json(path: str, result: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")


def _write_files(
    args: argparse.Namespace,
    result: dict,
    outcome: loadgen.Outcome,
    *,
    label: str,
    title: str,
    soaked: tuple[soak.WindowSet, soak.SoakResult] | None = None,
) -> None:
    """The JSON, the HdrHistogram log (one interval per soak window) and the plots."""
    make_parents(args.json, args.hdr_log, args.plot)
    if args.json:
        _write_json(args.json, result)
    if args.hdr_log:
        if soaked is not None:
            window_set = soaked[0]
            write_intervals(window_set.histograms(), args.hdr_log, window_set.started_at, label)
        else:
            end = outcome.started_at + outcome.up_s
            write_log(outcome.histogram, args.hdr_log, outcome.started_at, end, label)
    if args.plot:
        from lowlatency_service import plot  # noqa: PLC0415  # needs matplotlib

        curves = {label: outcome.histogram}
        if outcome.uncorrected is not None:
            curves[label + " uncorrected"] = outcome.uncorrected
        plot.plot_percentiles(curves, args.plot, title)
        if soaked is not None:
            plot.plot_windows(soaked[1].windows, plot.windows_path(args.plot), title)


def _profiled_load(args: argparse.Namespace, raw: RawCall | None) -> profiling.Load:
    """The measured run's load again, for a duration, on a new channel (nothing measured)."""

    def load(seconds: float) -> dict[str, object]:
        try:
            channel = _connect(args)
        except TargetUnreachable as exc:
            return {"error": str(exc)}
        with channel:
            plan = loadgen.Plan(args.concurrency, duration_s=seconds, rate=args.rate)
            outcome = _load(channel, args, raw, plan, loadgen.Progress())
        return {
            "requests": outcome.histogram.get_total_count(),
            "errors": outcome.errors,
            "duration_s": round(outcome.elapsed_s, 3),
        }

    return load


def _profile(args: argparse.Namespace, raw: RawCall | None) -> dict[str, object]:
    found = service_process.find(args.target, args.service_pid)
    load = _profiled_load(args, raw)
    profile = profiling.capture(found, args.profiler, args.profile_seconds, args.json, load)
    print(profile.line(), file=sys.stderr)
    return profile.as_dict()


def _unreachable(args: argparse.Namespace, reason: str) -> int:
    """One line naming the target, the JSON with the verdict only; exit 3."""
    verdict = gate.unreachable(args.target, reason)
    print(f"bench: {verdict.message}", file=sys.stderr)
    if args.json:
        make_parents(args.json)
        _write_json(
            args.json,
            {"target": args.target, "profile": args.profile, "verdict": verdict.as_dict()},
        )
    return verdict.exit_code


def _loss_lines(outcome: loadgen.Outcome, phase: str) -> tuple[str, list[str]]:
    """The verdict's one-line reason and the printed report of a lost target."""
    lost = outcome.lost
    assert lost is not None
    at = time.strftime("%H:%M:%S", time.gmtime(lost.at))
    reason = (
        f"target lost {lost.after_s:.3f} s into the {phase} run ({at} UTC): no successful "
        f"reply for {loadgen.LOST_AFTER_S:g} s after a connection failure"
    )
    in_flight = sum(lost.in_flight_by_code.values())
    lines = [
        reason,
        f"  answered OK: {outcome.histogram.get_total_count()}",
        f"  in flight when it was lost: {in_flight}"
        + (f" ({gate.codes_text(lost.in_flight_by_code)})" if in_flight else ""),
        f"  refused before sending: {lost.refused}"
        + (f" ({gate.codes_text(lost.refused_by_code)})" if lost.refused else ""),
        f"  throughput over the {outcome.up_s:.2f} s the target was up",
    ]
    return reason, lines


def run(args: argparse.Namespace) -> int:
    _check(args)
    pool = generic_call.local_pool(args) if args.call else None
    try:
        channel = _connect(args)
    except TargetUnreachable as exc:
        return _unreachable(args, str(exc))
    label = f"{args.profile} c{args.concurrency}"
    with channel:
        if args.call:
            raw: RawCall | None = generic_call.resolve(channel, args, pool)
        else:
            raw = raw_echo(args) if args.profile == "tuned" else None
        sampler = None
        if args.window is not None:
            source = soak.process_source(args)
            sampler = soak.Sampler(soak.WindowSet(args.window, args.duration), source.read)
        outcome, cost, phase = _measure(channel, args, raw, label, sampler)

    summary = summarize(outcome.histogram, outcome.errors, outcome.up_s)
    mode = f"open loop {args.rate:g} req/s" if args.rate is not None else "closed loop"
    called = f"{args.target}/{args.call}" if args.call else args.target
    print(f"{called}  {mode}  {summary.requests} requests in {outcome.elapsed_s:.2f} s")
    rows = [(label, summary)]
    if outcome.uncorrected is not None:
        uncorrected = summarize(outcome.uncorrected, outcome.errors, outcome.up_s)
        rows.append((label + " uncorrected", uncorrected))
    print(table(rows))
    if outcome.errors_by_code:
        print(f"errors by code: {gate.codes_text(outcome.errors_by_code)}")
    lost = None
    if outcome.lost is not None:
        lost, lines = _loss_lines(outcome, phase)
        print("\n".join(lines))
    if outcome.first_error:
        print(f"first error: {outcome.first_error}", file=sys.stderr)
    soaked, soak_keys = None, None
    if sampler is not None and sampler.windows.started.is_set():
        soaked = (sampler.windows, soak.finish(sampler))
        print("\n".join(soak.report_lines(soaked[1], source)))
        if sampler.error:
            print(f"service process figures: {sampler.error}", file=sys.stderr)
        soak_keys = soak.json_keys(sampler.windows, soaked[1], source, sampler.error)

    limits = gate.Limits(
        args.max_p50_us,
        args.max_p99_us,
        args.max_p999_us,
        args.max_tail_ratio,
        args.max_window_p999_us,
        args.max_p999_drift,
        args.max_rss_growth_mb,
    )
    figures = soaked[1].figures if soaked is not None else None
    verdict = gate.judge(summary, limits, outcome.errors_by_code, lost, figures)
    result = _result(
        args, raw, summary, outcome, cost, verdict=verdict, phase=phase, soak_keys=soak_keys
    )
    if args.profile_on_failure:
        result["profiling"] = (
            _profile(args, raw)
            if verdict.outcome == "breached"
            else profiling.Profile("skipped", f"the gate's outcome is {verdict.outcome}").as_dict()
        )
    title = f"{args.target} {mode}"
    _write_files(args, result, outcome, label=label, title=title, soaked=soaked)
    print(verdict.message, file=sys.stderr)
    return verdict.exit_code
