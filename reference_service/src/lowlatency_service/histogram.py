"""Latency histograms: recording in nanoseconds, the percentile summary and its JSON form.

Every request goes into an HdrHistogram (3 significant digits, so any
reported value is within 0.1% of the recorded one); the summary reads the
percentiles from it and never from a sample.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader, HistogramLogWriter

LOWEST_NS = 1
# A minute: far beyond any timeout the benchmark uses, so nothing is clipped.
HIGHEST_NS = 60_000_000_000
SIGNIFICANT_DIGITS = 3
NS_PER_US = 1000.0

# Keys of the JSON that every later benchmark play reads; renaming one breaks them.
SCHEMA_KEYS = (
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "requests",
    "errors",
    "throughput_rps",
)


def new_histogram() -> HdrHistogram:
    """An empty histogram of latencies in nanoseconds."""
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)


def record_ns(histogram: HdrHistogram, value_ns: int) -> None:
    """Record one latency; a clock that went nowhere still counts as the lowest value."""
    histogram.record_value(min(max(value_ns, LOWEST_NS), HIGHEST_NS))


def merge(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    """One histogram holding the counts of all of them."""
    total = new_histogram()
    for histogram in histograms:
        total.add(histogram)
    return total


@dataclass(frozen=True)
class Summary:
    """What a benchmark run reports; field names are the JSON keys."""

    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    requests: int
    errors: int
    throughput_rps: float

    @property
    def tail_ratio(self) -> float:
        """p99.9 over p50, the tail criterion (0 when nothing was measured)."""
        return self.p999_us / self.p50_us if self.p50_us else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize(histogram: HdrHistogram, errors: int, elapsed_s: float) -> Summary:
    """The percentile summary of a run that took elapsed_s seconds."""

    def us(percentile: float) -> float:
        if not histogram.get_total_count():
            return 0.0
        return round(histogram.get_value_at_percentile(percentile) / NS_PER_US, 1)

    count = histogram.get_total_count()
    return Summary(
        p50_us=us(50.0),
        p90_us=us(90.0),
        p99_us=us(99.0),
        p999_us=us(99.9),
        max_us=round(histogram.get_max_value() / NS_PER_US, 1) if count else 0.0,
        requests=count,
        errors=errors,
        throughput_rps=round(count / elapsed_s, 1) if elapsed_s > 0 else 0.0,
    )


def write_log(histogram: HdrHistogram, path: str, start_s: float, end_s: float, tag: str) -> None:
    """Write the run as a standard HdrHistogram interval log (values in ns), one interval.

    HistogramLogAnalyzer and hdr-plot read it; the max column is in ms, as
    those tools expect of nanosecond histograms.
    """
    histogram.set_start_time_stamp(int(start_s * 1000))
    histogram.set_end_time_stamp(int(end_s * 1000))
    write_intervals([histogram], path, start_s, tag)


def write_intervals(intervals: Iterable[HdrHistogram], path: str, start_s: float, tag: str) -> None:
    """Write histograms stamped with their start and end (ms since the epoch) as one log.

    ``start_s`` (seconds since the epoch) is the log's StartTime and BaseTime:
    interval time stamps are relative to it.
    """
    start_ms = int(start_s * 1000)
    with open(path, "w", encoding="utf-8") as handle:
        writer = HistogramLogWriter(handle)
        writer.output_comment(f"[Logged with lowlatency-service bench, {tag}, values in ns]")
        writer.output_log_format_version()
        # The library's output_start_time() is broken in hdrhistogram 0.10; same line by hand.
        # StartTime and BaseTime must be the same instant, or readers skip the interval
        # as starting before the log did.
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_ms / 1000))
        writer.output_comment(f"[StartTime: {start_ms / 1000:.3f} (seconds since epoch), {stamp}]")
        # Interval time stamps relative to the start, as the Java HdrHistogram logs them.
        writer.output_base_time(start_ms)
        writer.base_time = start_ms
        writer.output_legend()
        for histogram in intervals:
            writer.output_interval_histogram(histogram)


def read_log(path: str) -> HdrHistogram:
    """All intervals of an HdrHistogram log added into one histogram."""
    total = new_histogram()
    reader = HistogramLogReader(path, total)
    try:
        while reader.add_next_interval_histogram() is not None:
            pass
    finally:
        reader.close()
    return total
