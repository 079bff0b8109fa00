"""Arguments of ``lowlatency-service bench`` (imported before grpc; must not import it).

Every malformed value is refused here, at parse time, so bad arguments exit
with status 2 before any connection is made.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

from lowlatency_service.rawtcp import split_target
from lowlatency_service.runtime import PROFILES

CLIENT_MODELS = ("auto", "threads", "futures")
# The service refuses larger payloads (proto/lowlatency/v1/latency.proto).
MAX_PAYLOAD_BYTES = 1024
# One thread (or outstanding call) per slot: beyond this the client measures itself.
MAX_CONCURRENCY = 4096
# A slower open loop leaves each slot idle for minutes; a faster one no Python client keeps.
MIN_RATE, MAX_RATE = 1.0, 1_000_000.0
MAX_DURATION_S = 86_400.0
# Shorter soak windows hold too few requests for a p99.9 at the rates a Python client keeps.
MIN_WINDOW_S = 0.1
# histogram.HIGHEST_NS: a longer deadline would record latencies the histogram clips.
MAX_TIMEOUT_S = 60.0
PROFILERS = ("auto", "py-spy", "perf")
MAX_PROFILE_SECONDS = 600

EXIT_HELP = """\
exit status (the verdict, also written to --json as "verdict"):
  0  passed: no limit breached and no request failed
  1  breached: a --max-* limit exceeded, or any request failed
  2  usage error: a bad flag or value, refused before any connection
  3  unreachable (no connection could be made) or target lost: after a
     connection failure (UNAVAILABLE) no request succeeded for 1 s; the load
     stops, what was measured until then is reported and written

target lost: requests sent before the first connection failure and failing
are "in flight", those sent after it were refused by the client unsent.
Throughput (req/s) counts only the time the target was up. One second is
far above any reconnect on a healthy host, and far below a run's length.

JSON keys (--json):
  p50_us p90_us p99_us p999_us max_us  latency percentiles (us)
  requests            requests answered OK and measured
  errors              requests sent that failed (also those in flight at a loss)
  throughput_rps      requests / up_s
  tail_ratio          p999_us / p50_us
  client_cpu_us_per_request, client_context_switches_per_request
  target profile cpus concurrency client_model mode rate warmup
  payload_bytes work_iterations   the run's settings (Echo only; null with --call)
  call                null for Echo, else package.Service/Method
  descriptors         where --call's types came from: reflection, protoset or proto
  request_messages    distinct requests sent in turn (--data-file lines)
  metadata_keys       the --metadata keys sent (values are not written)
  tls                 plaintext, tls or mutual_tls
  duration_s          length of the measured run; up_s: the part with the target up
  first_error         one line: status code, details, peer (null without errors)
  target_lost         null, or phase, after_s, at (UTC), in_flight,
                      in_flight_by_code, refused, refused_by_code
  uncorrected         open loop only: the same figures from the actual send time
  grpc_version, measures   grpc version, the profile's measures and their status
  verdict             passed, exit_code, outcome (passed|breached|unreachable|
                      target_lost), breaches [{figure, value, limit}],
                      errors_by_code {CODE: count}, message
  profiling           --profile-on-failure only: status (recorded|skipped|
                      failed), reason, profiler, pid, seconds, samples,
                      svg, raw, folded (paths), top_frames, load
  An unreachable target writes only target, profile and verdict.

  With --window (a soak), also:
  window_s            the window length (s)
  windows             one entry per window: index, start_s, end_s (s from the
                      run's start), the run's keys p50_us ... errors,
                      throughput_rps for that window, and the service's
                      rss_mb (MiB, at the window's end), threads (null when
                      not known) and cpu_s (CPU seconds used in the window)
  soak                window_p999_us (the worst window), p999_drift and
                      drift_windows (how many first and last windows it
                      compares), rss_start_mb, rss_end_mb, rss_growth_mb,
                      rss_slope_mb_per_h, process_source (proc, metrics or
                      null), pid, metrics_url, process_error
  --hdr-log then holds one interval per window.
"""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def int_up_to(high: int, name: str) -> Callable[[str], int]:
    """A whole number from 1 to ``high``; ``name`` is argparse's word for a non-number."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, not {value}")
        return value

    parse.__name__ = name
    return parse


concurrency = int_up_to(MAX_CONCURRENCY, "concurrency")


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def payload_bytes(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_PAYLOAD_BYTES:
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_PAYLOAD_BYTES}, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """A finite number in [low, high]; the message names the bounds."""

    def parse(text: str) -> float:
        value = float(text)
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(
                f"must be a number from {low:g} to {high:g}, not {text}"
            )
        return value

    return parse


def output_path(text: str) -> str:
    """A file bench or compare can create or replace: refused before any load otherwise.

    Missing directories are created when the file is written, so the nearest
    existing one must be a writable directory.
    """
    path = os.path.abspath(text)
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{text} is a directory")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text} is not writable")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{text}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: directory {parent} is not writable")
    return text


def make_parents(*paths: str | None) -> None:
    """Create the missing directories of output paths that output_path accepted."""
    for path in paths:
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def target(text: str) -> str:
    try:
        split_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def method_path(text: str) -> str:
    """package.Service/Method (a leading slash, as in gRPC's own paths, is dropped)."""
    path = text[1:] if text.startswith("/") else text
    service, _, method = path.partition("/")
    if not (service and method) or "/" in method or " " in path:
        raise argparse.ArgumentTypeError(f"must be package.Service/Method, not {text!r}")
    return path


def metadata_pair(text: str) -> tuple[str, str]:
    """key=value of a request header; gRPC wants lower-case keys, -bin ones carry bytes."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be key=value, not {text!r}")
    if key != key.lower() or key.startswith(":") or key.endswith("-bin"):
        raise argparse.ArgumentTypeError(
            f"key {key!r} must be lower case, without a leading ':' or a '-bin' suffix"
        )
    return key, value


def input_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text} is not a file")
    return text


def input_dir(text: str) -> str:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is not a directory")
    return text


def service_pid(text: str) -> int:
    value = positive_int(text)
    if not os.path.isdir(f"/proc/{value}"):
        raise argparse.ArgumentTypeError(f"no process {value} on this host")
    return value


def _add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    profile = parser.add_argument_group(
        "profile when the gate fails (the profiler, not the load, reads the service)"
    )
    profile.add_argument(
        "--service-pid",
        type=service_pid,
        metavar="PID",
        help="the service's process on this host (default: the local process listening "
        "on the target's port)",
    )
    profile.add_argument(
        "--profile-on-failure",
        action="store_true",
        help="on a breach (exit 1), repeat the load for --profile-seconds while a sampling "
        "profiler records the service; a flame graph SVG and the raw profile are written "
        "next to --json (needs --json; the exit status stays 1)",
    )
    profile.add_argument(
        "--profile-seconds",
        type=int_up_to(MAX_PROFILE_SECONDS, "profile_seconds"),
        default=5,
        metavar="S",
        help="length of the profiled load (default %(default)s)",
    )
    profile.add_argument(
        "--profiler",
        choices=PROFILERS,
        default="auto",
        help="auto = py-spy for a Python service, perf record -g for any other "
        "(default %(default)s)",
    )


def metrics_url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, not {text!r}")
    return text


def _add_soak_arguments(parser: argparse.ArgumentParser) -> None:
    soak = parser.add_argument_group(
        "soak (with --duration): one histogram per window, the service's process figures "
        "per window; open loop (--rate) recommended, so that stalls are not hidden"
    )
    soak.add_argument(
        "--window",
        type=bounded_float(MIN_WINDOW_S, MAX_DURATION_S),
        metavar="S",
        help="split the measured run into windows of S seconds",
    )
    soak.add_argument(
        "--metrics-url",
        type=metrics_url,
        metavar="URL",
        help="read the service's RSS, threads and CPU from its Prometheus metrics "
        "(process_* metrics) instead of /proc of --service-pid or of the local listener",
    )


def _add_call_arguments(parser: argparse.ArgumentParser) -> None:
    call = parser.add_argument_group(
        "any unary method (without --call: lowlatency.v1.LatencyService/Echo)"
    )
    call.add_argument(
        "--call",
        type=method_path,
        metavar="PKG.SERVICE/METHOD",
        help="the method to load; its types from the server's reflection unless "
        "--protoset or --proto is given",
    )
    descriptors = call.add_mutually_exclusive_group()
    descriptors.add_argument(
        "--protoset",
        type=input_file,
        metavar="FILE",
        help="FileDescriptorSet (protoc --include_imports --descriptor_set_out=FILE)",
    )
    descriptors.add_argument(
        "--proto",
        type=input_file,
        action="append",
        metavar="FILE",
        help=".proto file, compiled in process (needs grpcio-tools; repeatable)",
    )
    call.add_argument(
        "--import-path",
        type=input_dir,
        action="append",
        metavar="DIR",
        help="where --proto's imports are found (repeatable)",
    )
    data = call.add_mutually_exclusive_group()
    data.add_argument("--data", metavar="JSON", help="the request as JSON (default {})")
    data.add_argument(
        "--data-file",
        type=input_file,
        metavar="FILE",
        help="one JSON request per line, sent in turn",
    )
    call.add_argument(
        "--metadata",
        type=metadata_pair,
        action="append",
        metavar="KEY=VALUE",
        help="request header sent with every request (repeatable)",
    )
    tls = parser.add_argument_group("TLS (the default is plaintext)")
    tls.add_argument("--tls", action="store_true", help="TLS, server checked against system roots")
    tls.add_argument(
        "--tls-ca", type=input_file, metavar="FILE", help="TLS, server checked against this CA"
    )
    tls.add_argument(
        "--tls-cert", type=input_file, metavar="FILE", help="client certificate (mutual TLS)"
    )
    tls.add_argument("--tls-key", type=input_file, metavar="FILE", help="key of --tls-cert")
    tls.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name the server's certificate must carry, when not the target's host",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXIT_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--target", type=target, required=True, metavar="HOST:PORT", help="service to load"
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="default",
        help="client runtime profile, the same measures as the server's (default %(default)s)",
    )
    parser.add_argument("--cpus", metavar="LIST", help="pin the client to this cpulist, e.g. 1")
    parser.add_argument(
        "--concurrency",
        type=concurrency,
        default=1,
        metavar="N",
        help="requests in flight, one at a time per slot (default %(default)s)",
    )
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--requests", type=positive_int, metavar="N", help="measured requests")
    amount.add_argument(
        "--duration",
        type=bounded_float(0.001, MAX_DURATION_S),
        metavar="S",
        help="seconds to measure",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        default=1000,
        metavar="N",
        help="requests sent first and left out of the histogram (default %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=bounded_float(MIN_RATE, MAX_RATE),
        metavar="R",
        help="open loop: R requests/s in total at a constant rate, latency measured from "
        "the intended send time (coordinated omission corrected, as wrk2 does)",
    )
    parser.add_argument(
        "--payload-bytes",
        type=payload_bytes,
        default=64,
        metavar="N",
        help="request payload size in bytes (default %(default)s)",
    )
    parser.add_argument(
        "--work-iterations",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="rounds of server-side work per request (default %(default)s)",
    )
    parser.add_argument(
        "--client-model",
        choices=CLIENT_MODELS,
        default="auto",
        help="closed loop: a thread per slot, or N outstanding futures driven by one "
        "client thread; auto = threads for default, futures for tuned at "
        "concurrency > 1 (default %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=bounded_float(0.001, MAX_TIMEOUT_S),
        default=10.0,
        metavar="S",
        help="deadline of each request and of connecting (default %(default)s)",
    )
    parser.add_argument(
        "--json", type=output_path, metavar="FILE", help="write the figures and the verdict as JSON"
    )
    parser.add_argument(
        "--hdr-log", type=output_path, metavar="FILE", help="write an HdrHistogram log (ns)"
    )
    parser.add_argument(
        "--plot", type=output_path, metavar="FILE.png", help="write a latency-by-percentile plot"
    )
    _add_call_arguments(parser)
    _add_profile_arguments(parser)
    _add_soak_arguments(parser)
    gate = parser.add_argument_group("gate (exit status 1 when a limit is breached)")
    gate.add_argument("--max-p50-us", type=positive_float, metavar="X", help="limit of p50 (us)")
    gate.add_argument("--max-p99-us", type=positive_float, metavar="X", help="limit of p99 (us)")
    gate.add_argument("--max-p999-us", type=positive_float, metavar="X", help="limit of p99.9 (us)")
    gate.add_argument(
        "--max-tail-ratio",
        type=positive_float,
        metavar="X",
        help="limit of p99.9 / p50; any request error fails the gate too",
    )
    gate.add_argument(
        "--max-window-p999-us",
        type=positive_float,
        metavar="X",
        help="soak: limit of every window's p99.9 (us)",
    )
    gate.add_argument(
        "--max-p999-drift",
        type=positive_float,
        metavar="X",
        help="soak: limit of mean p99.9 of the last tenth of the windows over the first "
        "tenth (at least one window each), e.g. 1.2",
    )
    gate.add_argument(
        "--max-rss-growth-mb",
        type=positive_float,
        metavar="X",
        help="soak: limit of the service's RSS growth from the run's start to its end (MiB)",
    )
