"""Arguments of ``lowlatency-service compare`` (imported before grpc; must not import it)."""

from __future__ import annotations

import argparse

from lowlatency_service.bench_args import (
    non_negative_int,
    output_path,
    payload_bytes,
    positive_int,
)


def concurrency_list(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,16, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers like 1,16, got {text!r}")
    return sorted(set(values))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--requests",
        type=positive_int,
        default=20000,
        metavar="N",
        help="measured requests per case and run (default %(default)s)",
    )
    parser.add_argument(
        "--runs",
        type=positive_int,
        default=3,
        metavar="N",
        help="alternating runs; medians are reported (default %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        default=2000,
        metavar="N",
        help="warm-up requests of each run, not measured (default %(default)s)",
    )
    parser.add_argument(
        "--concurrency-list",
        type=concurrency_list,
        default=[1, 16],
        metavar="N,N",
        help="concurrency levels to run (default 1,16)",
    )
    parser.add_argument(
        "--payload-bytes",
        type=payload_bytes,
        metavar="N",
        help="request payload size in bytes (default 64; 1024 with --allocator)",
    )
    parser.add_argument(
        "--json", type=output_path, metavar="FILE", help="write every run and the medians as JSON"
    )
    parser.add_argument(
        "--plot", type=output_path, metavar="FILE.png", help="write a latency-by-percentile plot"
    )
    parser.add_argument(
        "--cpus-server",
        metavar="LIST",
        help="CPUs of the tuned and raw TCP servers; above concurrency 1 they get the "
        "client's too (default: the first CPU available)",
    )
    parser.add_argument(
        "--cpus-client",
        metavar="LIST",
        help="CPUs of their clients at concurrency 1 with the idle-state latency held at 0 "
        "and above concurrency 1; otherwise they share the server's (default: the second "
        "CPU available, else the first)",
    )
    parser.add_argument(
        "--allocator",
        action="store_true",
        help="instead of default/tuned/raw: the tuned service under system malloc, jemalloc "
        "and mimalloc (LD_PRELOAD, checked in /proc/PID/maps), 1 KiB payload; an absent "
        "library's cases are skipped with the reason",
    )
    parser.add_argument(
        "--no-cpu-dma-latency",
        action="store_true",
        help="leave out the cases with /dev/cpu_dma_latency held at 0",
    )
