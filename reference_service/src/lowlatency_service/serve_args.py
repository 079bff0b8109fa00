"""Arguments of ``lowlatency-service serve`` (imported before grpc; must not import it)."""

from __future__ import annotations

import argparse
import math

from lowlatency_service.runtime import PROFILES

DEFAULT_MAX_CONCURRENT_RPCS = 256
DEFAULT_GRACE_S = 5.0


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def _seconds(text: str) -> float:
    """A finite, non-negative number of seconds ("nan" and "inf" are floats, not durations)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port",
        type=_port,
        default=50051,
        help="TCP port, 0 = any free one (default %(default)s)",
    )
    parser.add_argument("--uds", metavar="PATH", help="also listen on this Unix domain socket")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="default",
        help="runtime profile (%(default)s)",
    )
    parser.add_argument(
        "--cpus", metavar="LIST", help="pin the process to this cpulist, e.g. 1 or 0-1,3"
    )
    parser.add_argument(
        "--workers", type=_positive_int, help="handler threads (default: from the profile)"
    )
    parser.add_argument(
        "--max-concurrent-rpcs",
        type=_positive_int,
        default=DEFAULT_MAX_CONCURRENT_RPCS,
        help="RPCs in flight before new ones get RESOURCE_EXHAUSTED (default %(default)s)",
    )
    parser.add_argument(
        "--read-timeout",
        type=_positive_seconds,
        metavar="S",
        help="seconds a call may wait for its request message, from its arrival, before it "
        "is cancelled (default: 5 with the default profile, 1 with tuned)",
    )
    parser.add_argument(
        "--downstream", metavar="HOST:PORT", help="chain mode: forward each request there first"
    )
    parser.add_argument(
        "--metrics-port", type=_port, help="serve Prometheus metrics on this port (default: off)"
    )
    parser.add_argument(
        "--metrics-host", default="127.0.0.1", help="metrics bind address (default %(default)s)"
    )
    parser.add_argument(
        "--grace",
        type=_seconds,
        default=DEFAULT_GRACE_S,
        help="seconds in-flight RPCs get to finish on SIGTERM/SIGINT (default %(default)s)",
    )
    parser.add_argument(
        "--drain",
        type=_seconds,
        default=0.0,
        help="seconds to report NOT_SERVING before refusing new RPCs (default %(default)s)",
    )
