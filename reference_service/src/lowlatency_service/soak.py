"""Soak windows: one HdrHistogram per window, and the service's process figures per window.

A request belongs to the window in which it completed (its answer, or its
failure); latencies are the run's own (from the intended send time in the
open loop). Each load slot records into its own histogram of the current
window and hands it over when its next completion falls in a later window,
so slots never share a histogram and the hot path takes no lock. The
sampler thread, which wakes at every window's end to read the service's
process figures, also folds the handed-over histograms into one compressed
histogram per window: memory stays bounded over an hours-long soak.

Drift compares the mean p99.9 of the last windows with that of the first:
a tenth of the windows that have requests, at least one window on each side.
"""

from __future__ import annotations

import argparse
import functools
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from lowlatency_service import service_process
from lowlatency_service.errors import UsageError
from lowlatency_service.gate import WindowFigures
from lowlatency_service.histogram import Summary, new_histogram, record_ns, summarize
from lowlatency_service.procstats import (
    ProcessSample,
    Reader,
    SampleError,
    read_metrics,
    read_proc,
)

MIB = 1024 * 1024
# The share of windows compared at each end for the drift, at least one.
DRIFT_SHARE = 0.1
# Beyond this the windows' summaries outgrow the JSON any reader wants to load.
MAX_WINDOWS = 100_000


class WindowSet:
    """The windows of one measured run of ``duration_s``; the last one may be shorter."""

    def __init__(self, window_s: float, duration_s: float) -> None:
        self.window_s = window_s
        self.duration_s = duration_s
        self.count = max(1, math.ceil(duration_s / window_s - 1e-9))
        self._window_ns = round(window_s * 1e9)
        self.started_ns = 0
        self.started_at = 0.0
        self.started = threading.Event()
        self.errors = [0] * self.count
        self._handed: deque[tuple[int, HdrHistogram]] = deque()
        self._encoded: dict[int, bytes] = {}
        self._recorders: list[WindowRecorder] = []

    def start(self, started_ns: int, started_at: float) -> None:
        """Called by the load loop as its measured run starts (perf_counter_ns, epoch seconds)."""
        self.started_ns = started_ns
        self.started_at = started_at
        self.started.set()

    def index(self, at_ns: int) -> int:
        """The window of an instant; answers after the last window's end count in it."""
        return min(max((at_ns - self.started_ns) // self._window_ns, 0), self.count - 1)

    def bounds(self, index: int) -> tuple[float, float]:
        """Start and end of a window, seconds from the run's start."""
        return index * self.window_s, min((index + 1) * self.window_s, self.duration_s)

    def recorder(self) -> WindowRecorder:
        recorder = WindowRecorder(self)
        self._recorders.append(recorder)
        return recorder

    def failed(self, at_ns: int) -> None:
        """Count a failed request (called under the load's failure lock)."""
        self.errors[self.index(at_ns)] += 1

    def hand_over(self, index: int, histogram: HdrHistogram) -> None:
        self._handed.append((index, histogram))

    def compact(self) -> None:
        """Fold handed-over histograms into one compressed histogram per window."""
        while self._handed:
            index, histogram = self._handed.popleft()
            encoded = self._encoded.get(index)
            if encoded is not None:
                histogram.decode_and_add(encoded)
            self._encoded[index] = histogram.encode()

    def histograms(self) -> Iterator[HdrHistogram]:
        """Each window's histogram in turn, stamped with its start and end (ms since the epoch).

        Only after the run: the recorders' current windows are handed over first.
        """
        for recorder in self._recorders:
            recorder.flush()
        self.compact()
        for index in range(self.count):
            encoded = self._encoded.get(index)
            histogram = new_histogram()
            if encoded is not None:
                histogram.decode_and_add(encoded)
            start_s, end_s = self.bounds(index)
            histogram.set_start_time_stamp(int((self.started_at + start_s) * 1000))
            histogram.set_end_time_stamp(int((self.started_at + end_s) * 1000))
            yield histogram


class WindowRecorder:
    """One slot's histogram of its current window (used by that slot's thread only)."""

    __slots__ = ("_index", "_owner", "histogram")

    def __init__(self, owner: WindowSet) -> None:
        self._owner = owner
        self._index = 0
        self.histogram = new_histogram()

    def record(self, at_ns: int, value_ns: int) -> None:
        index = self._owner.index(at_ns)
        if index != self._index:
            self.flush()
            self._index = index
        record_ns(self.histogram, value_ns)

    def flush(self) -> None:
        if self.histogram.get_total_count():
            self._owner.hand_over(self._index, self.histogram)
            self.histogram = new_histogram()


class Sampler:
    """Reads the service's process figures at the start and at each window's end.

    A run that ends early (target lost) gets its current window's figures
    at the run's end. Without a reader it only compacts the windows.
    """

    def __init__(self, windows: WindowSet, read: Reader | None) -> None:
        self.windows = windows
        self._read = read
        self._stop = threading.Event()
        self.baseline: ProcessSample | None = None
        self.samples: list[ProcessSample | None] = [None] * windows.count
        self.error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> ProcessSample | None:
        if self._read is None:
            return None
        try:
            return self._read()
        except SampleError as exc:
            if self.error is None:
                self.error = str(exc)
            return None

    def _loop(self) -> None:
        windows = self.windows
        while not windows.started.wait(0.05):
            if self._stop.is_set():
                return
        self.baseline = self._sample()
        for index in range(windows.count):
            end_ns = windows.started_ns + round(windows.bounds(index)[1] * 1e9)
            wait_s = (end_ns - time.perf_counter_ns()) / 1e9
            stopped = self._stop.wait(wait_s) if wait_s > 0 else self._stop.is_set()
            self.samples[index] = self._sample()
            windows.compact()
            if stopped:
                return


@dataclass(frozen=True)
class Window:
    """One window's figures: the run's summary keys plus the service's process figures."""

    index: int
    start_s: float
    end_s: float
    summary: Summary
    rss_mb: float | None
    threads: int | None
    cpu_s: float | None

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            **self.summary.to_dict(),
            "rss_mb": self.rss_mb,
            "threads": self.threads,
            "cpu_s": self.cpu_s,
        }


def _mib(sample: ProcessSample | None) -> float | None:
    return round(sample.rss_bytes / MIB, 2) if sample is not None else None


def windows_of(
    window_set: WindowSet,
    histograms: Iterable[HdrHistogram],
    baseline: ProcessSample | None,
    samples: Sequence[ProcessSample | None],
) -> list[Window]:
    """Summaries of the windows; CPU is the service's CPU seconds within each window."""
    result = []
    previous = baseline
    for index, histogram in enumerate(histograms):
        start_s, end_s = window_set.bounds(index)
        sample = samples[index]
        cpu_s = None
        if sample is not None and previous is not None:
            cpu_s = round(sample.cpu_s - previous.cpu_s, 3)
        result.append(
            Window(
                index=index,
                start_s=start_s,
                end_s=end_s,
                summary=summarize(histogram, window_set.errors[index], end_s - start_s),
                rss_mb=_mib(sample),
                threads=sample.threads if sample is not None else None,
                cpu_s=cpu_s,
            )
        )
        previous = sample
    return result


def drift_windows(measured: int) -> int:
    """How many windows count as first and as last, out of those with requests."""
    return max(1, int(measured * DRIFT_SHARE))


def p999_drift(windows: Sequence[Window]) -> float | None:
    """Mean p99.9 of the last windows over that of the first; None below two windows."""
    p999 = [w.summary.p999_us for w in windows if w.summary.requests]
    if len(p999) < 2:
        return None
    share = drift_windows(len(p999))
    first = sum(p999[:share]) / share
    last = sum(p999[-share:]) / share
    return round(last / first, 3) if first else None


def rss_slope_mb_per_h(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) points, in MiB per hour; None below two points."""
    if len(points) < 2:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_m = sum(m for _, m in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return None
    slope = sum((t - mean_t) * (m - mean_m) for t, m in points) / spread
    return round(slope * 3600, 2)


@dataclass(frozen=True)
class SoakResult:
    """The windows and what the gate and the JSON take from them."""

    windows: list[Window]
    rss_start_mb: float | None
    figures: WindowFigures
    rss_slope_mb_per_h: float | None

    @property
    def rss_end_mb(self) -> float | None:
        ends = [w.rss_mb for w in self.windows if w.rss_mb is not None]
        return ends[-1] if ends else None


def soak_result(windows: list[Window], baseline: ProcessSample | None) -> SoakResult:
    measured = [w.summary.p999_us for w in windows if w.summary.requests]
    rss_start = _mib(baseline)
    points = [(0.0, rss_start)] if rss_start is not None else []
    points += [(w.end_s, w.rss_mb) for w in windows if w.rss_mb is not None]
    ends = [w.rss_mb for w in windows if w.rss_mb is not None]
    growth = None
    if rss_start is not None and ends:
        growth = round(ends[-1] - rss_start, 2)
    figures = WindowFigures(
        window_p999_us=max(measured) if measured else None,
        p999_drift=p999_drift(windows),
        rss_growth_mb=growth,
    )
    return SoakResult(windows, rss_start, figures, rss_slope_mb_per_h(points))


def check(args: argparse.Namespace) -> None:
    """The soak flags' combinations (exit status 2, before any connection)."""
    given = [
        flag
        for flag, value in (
            ("--metrics-url", args.metrics_url),
            ("--max-window-p999-us", args.max_window_p999_us),
            ("--max-p999-drift", args.max_p999_drift),
            ("--max-rss-growth-mb", args.max_rss_growth_mb),
        )
        if value is not None
    ]
    if args.window is None:
        if given:
            raise UsageError(f"{', '.join(given)} need --window (a soak)")
        return
    if args.duration is None:
        raise UsageError("--window needs --duration: a soak runs for a time, not a request count")
    if args.window > args.duration:
        raise UsageError(f"--window {args.window:g} is longer than --duration {args.duration:g}")
    count = WindowSet(args.window, args.duration).count
    if count > MAX_WINDOWS:
        raise UsageError(
            f"--duration {args.duration:g} / --window {args.window:g} gives {count} windows, "
            f"more than {MAX_WINDOWS}"
        )
    if args.max_p999_drift is not None and count < 2:
        raise UsageError(
            f"--max-p999-drift compares the first and last windows: --duration "
            f"{args.duration:g} / --window {args.window:g} gives one window"
        )


@dataclass(frozen=True)
class ProcessSource:
    """Where the service's process figures come from; ``kind`` None with the reason in ``note``."""

    kind: str | None  # "proc" or "metrics"
    pid: int | None = None
    url: str | None = None
    read: Reader | None = None
    note: str | None = None


def process_source(args: argparse.Namespace) -> ProcessSource:
    """--metrics-url, else /proc of the service process (--service-pid or the port's listener).

    The source is read once here, so a wrong one is refused (exit status 2)
    before any load; without any, only --max-rss-growth-mb is refused.
    """
    if args.metrics_url:
        read: Reader = functools.partial(read_metrics, args.metrics_url)
        flag = f"--metrics-url {args.metrics_url}"
        source = ProcessSource("metrics", url=args.metrics_url, read=read)
    else:
        found = service_process.find(args.target, args.service_pid)
        if found.pid is None:
            if args.max_rss_growth_mb is not None:
                raise UsageError(
                    f"--max-rss-growth-mb needs the service's process figures: {found.reason} "
                    "or --metrics-url"
                )
            return ProcessSource(None, note=found.reason)
        read = functools.partial(read_proc, found.pid)
        flag = f"--service-pid {found.pid}"
        source = ProcessSource("proc", pid=found.pid, read=read)
    try:
        read()
    except SampleError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    return source


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report_lines(result: SoakResult, source: ProcessSource) -> list[str]:
    """The windows as a table and one line of what the gate takes from them."""
    lines = [
        f"{'window':>6} {'start_s':>8} {'p50':>9} {'p99':>9} {'p99.9':>9} {'max':>9} "
        f"{'requests':>9} {'errors':>6} {'rss_MiB':>8} {'threads':>7} {'cpu_s':>7}  (us)"
    ]
    for w in result.windows:
        s = w.summary
        lines.append(
            f"{w.index:>6} {w.start_s:>8.1f} {s.p50_us:>9.1f} {s.p99_us:>9.1f} "
            f"{s.p999_us:>9.1f} {s.max_us:>9.1f} {s.requests:>9} {s.errors:>6} "
            f"{_cell(w.rss_mb, '.1f'):>8} {_cell(w.threads, 'd'):>7} {_cell(w.cpu_s, '.2f'):>7}"
        )
    figures = result.figures
    measured = sum(1 for w in result.windows if w.summary.requests)
    lines.append(
        f"worst window p99.9 {_cell(figures.window_p999_us, '.1f')} us; p99.9 drift "
        f"{_cell(figures.p999_drift, '.3f')} (last {drift_windows(measured)} over first "
        f"{drift_windows(measured)} windows)"
    )
    if source.kind is None:
        lines.append(f"service process figures: none ({source.note})")
    else:
        lines.append(
            f"service RSS {_cell(result.rss_start_mb, '.1f')} -> "
            f"{_cell(result.rss_end_mb, '.1f')} MiB (growth "
            f"{_cell(figures.rss_growth_mb, '+.1f')}, slope "
            f"{_cell(result.rss_slope_mb_per_h, '+.1f')} MiB/h; from {source.kind})"
        )
    return lines


def json_keys(
    window_set: WindowSet, result: SoakResult, source: ProcessSource, error: str | None
) -> dict[str, object]:
    """The keys a soak adds to bench's JSON (listed in bench_args.EXIT_HELP)."""
    measured = sum(1 for w in result.windows if w.summary.requests)
    return {
        "window_s": window_set.window_s,
        "windows": [w.to_dict() for w in result.windows],
        "soak": {
            "window_p999_us": result.figures.window_p999_us,
            "p999_drift": result.figures.p999_drift,
            "drift_windows": drift_windows(measured),
            "rss_start_mb": result.rss_start_mb,
            "rss_end_mb": result.rss_end_mb,
            "rss_growth_mb": result.figures.rss_growth_mb,
            "rss_slope_mb_per_h": result.rss_slope_mb_per_h,
            "process_source": source.kind,
            "pid": source.pid,
            "metrics_url": source.url,
            "process_error": error if source.kind is not None else source.note,
        },
    }


def finish(sampler: Sampler) -> SoakResult:
    """The windows' figures once the run and the sampler have ended."""
    window_set = sampler.windows
    windows = windows_of(window_set, window_set.histograms(), sampler.baseline, sampler.samples)
    return soak_result(windows, sampler.baseline)
