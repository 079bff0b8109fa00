"""Arguments of ``lowlatency-service bench`` (imported before grpc; must not import it).

Every malformed value is refused here, at parse time, so bad arguments exit
with status 2 before any connection is made.
"""

from __future__ import annotations

import argparse
import math

from lowlatency_service.rawtcp import split_target
from lowlatency_service.runtime import PROFILES

CLIENT_MODELS = ("auto", "threads", "futures")
# The service refuses larger payloads (proto/lowlatency/v1/latency.proto).
MAX_PAYLOAD_BYTES = 1024


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


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


def target(text: str) -> str:
    try:
        split_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        type=positive_int,
        default=1,
        metavar="N",
        help="requests in flight, one at a time per slot (default %(default)s)",
    )
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--requests", type=positive_int, metavar="N", help="measured requests")
    amount.add_argument("--duration", type=positive_float, metavar="S", help="seconds to measure")
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        default=1000,
        metavar="N",
        help="requests sent first and left out of the histogram (default %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=positive_float,
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
        type=positive_float,
        default=10.0,
        metavar="S",
        help="deadline of each request and of connecting (default %(default)s)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--hdr-log", metavar="FILE", help="write an HdrHistogram log (ns)")
    parser.add_argument("--plot", metavar="FILE.png", help="write a latency-by-percentile plot")
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
