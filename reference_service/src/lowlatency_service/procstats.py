"""The service's process figures (RSS, threads, CPU time), from /proc or its Prometheus metrics.

A soak reads them once per window: from ``/proc/PID`` when the service runs
on this machine, otherwise from the ``process_*`` metrics that
prometheus_client (and most other client libraries) export. Importable
before grpc.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_SCRAPE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ProcessSample:
    """One reading: RSS in bytes, CPU seconds so far (user + system), threads (None if unknown)."""

    rss_bytes: int
    cpu_s: float
    threads: int | None


class SampleError(Exception):
    """The figures could not be read (process gone, endpoint unreachable, metric missing)."""


def read_proc(pid: int) -> ProcessSample:
    """RSS, CPU time of all threads and thread count from /proc/PID/stat (one read)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            stat = handle.read()
    except OSError as exc:
        raise SampleError(f"/proc/{pid}/stat: {exc.strerror}") from None
    # Fields after the command name, which may itself hold spaces or ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return ProcessSample(
        rss_bytes=int(fields[21]) * _PAGE_BYTES,
        cpu_s=(utime + stime) / os.sysconf("SC_CLK_TCK"),
        threads=int(fields[17]),
    )


def parse_metrics(text: str) -> ProcessSample:
    """The process_* figures of a Prometheus text exposition.

    process_threads is exported by some client libraries (Go's and Rust's
    process collectors), not by prometheus_client: None when absent.
    """
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                values.setdefault(sample.name, sample.value)
    missing = [
        name
        for name in ("process_resident_memory_bytes", "process_cpu_seconds_total")
        if name not in values
    ]
    if missing:
        raise SampleError(f"no {' or '.join(missing)} in the metrics")
    threads = values.get("process_threads")
    return ProcessSample(
        rss_bytes=int(values["process_resident_memory_bytes"]),
        cpu_s=values["process_cpu_seconds_total"],
        threads=int(threads) if threads is not None else None,
    )


def read_metrics(url: str) -> ProcessSample:
    try:
        with urllib.request.urlopen(url, timeout=_SCRAPE_TIMEOUT_S) as response:
            text = response.read().decode("utf-8")
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise SampleError(f"{url}: {exc}") from None
    return parse_metrics(text)


Reader = Callable[[], ProcessSample]
