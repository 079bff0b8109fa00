"""Soak: windows, drift and growth gates, the interval log, short soaks against test servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hdrh.log import HistogramLogReader
from lowlatency_service import bench, soak
from lowlatency_service.cli import build_parser
from lowlatency_service.errors import UsageError
from lowlatency_service.gate import Limits, WindowFigures, judge
from lowlatency_service.histogram import new_histogram, summarize, write_intervals
from lowlatency_service.procstats import (
    ProcessSample,
    SampleError,
    parse_metrics,
    read_metrics,
    read_proc,
)
from lowlatency_service.serve import start_server
from prometheus_client import REGISTRY, generate_latest

MIB = 1024 * 1024
S = 1_000_000_000  # ns

# A test-only Echo server: with a leak, every request keeps LEAK bytes alive for good.
LEAKY_SERVER = """
import sys
from concurrent import futures
import grpc
from prometheus_client import start_http_server
from lowlatency_service._proto.lowlatency.v1 import latency_pb2, latency_pb2_grpc

LEAK = int(sys.argv[1])
kept = []

class Echo(latency_pb2_grpc.LatencyServiceServicer):
    def Echo(self, request, context):
        if LEAK:
            kept.append(b"\\x01" * LEAK)
        return latency_pb2.EchoReply(request_id=request.request_id, payload=request.payload)

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
latency_pb2_grpc.add_LatencyServiceServicer_to_server(Echo(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
metrics, _ = start_http_server(0, "127.0.0.1")
print(f"listening on 127.0.0.1:{port} metrics {metrics.server_port}", flush=True)
server.wait_for_termination()
"""


def test_requests_fall_in_the_window_they_complete_in() -> None:
    windows = soak.WindowSet(1.0, 2.5)
    assert windows.count == 3
    windows.start(started_ns=10 * S, started_at=1000.0)
    first, second = windows.recorder(), windows.recorder()
    first.record(10 * S + 1, 100_000)
    first.record(11 * S - 1, 200_000)
    second.record(11 * S, 300_000)  # the first instant of window 1
    first.record(12 * S + S // 2, 400_000)  # the last window is 0.5 s long
    second.record(20 * S, 500_000)  # answered after the run's end: still the last window
    windows.failed(10 * S + 5)
    windows.failed(12 * S + 1)
    windows.compact()  # what the sampler does while the run goes on
    histograms = list(windows.histograms())
    assert [h.get_total_count() for h in histograms] == [2, 1, 2]
    assert histograms[0].get_max_value() == pytest.approx(200_000, rel=1e-3)
    assert histograms[1].get_min_value() == pytest.approx(300_000, rel=1e-3)
    assert windows.errors == [1, 0, 1]
    assert [windows.bounds(i) for i in range(3)] == [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]
    stamps = [(h.get_start_time_stamp(), h.get_end_time_stamp()) for h in histograms]
    assert stamps == [(1_000_000, 1_001_000), (1_001_000, 1_002_000), (1_002_000, 1_002_500)]


def _windows(p999s: list[float], rss_mb: list[float | None]) -> list[soak.Window]:
    result = []
    for index, (p999, rss) in enumerate(zip(p999s, rss_mb, strict=True)):
        histogram = new_histogram()
        if p999:
            histogram.record_value(int(p999 * 1000))
        summary = summarize(histogram, 0, 1.0)
        result.append(soak.Window(index, index, index + 1.0, summary, rss, None, None))
    return result


def sample(rss_mb: float) -> ProcessSample:
    return ProcessSample(int(rss_mb * MIB), 0.0, 4)


def test_drift_compares_a_tenth_of_the_windows_at_each_end() -> None:
    # 20 windows: the first 2 and the last 2 count.
    p999s = [100.0, 300.0] + [1000.0] * 16 + [400.0, 600.0]
    result = soak.soak_result(_windows(p999s, [None] * 20), None)
    assert soak.drift_windows(20) == 2
    assert result.figures.p999_drift == pytest.approx(2.5, rel=2e-3)
    assert result.figures.window_p999_us == pytest.approx(1000.0, rel=2e-3)
    # Below ten windows one window at each end; empty windows do not count.
    result = soak.soak_result(_windows([0.0, 200.0, 500.0, 300.0, 0.0], [None] * 5), None)
    assert result.figures.p999_drift == pytest.approx(1.5, rel=2e-3)
    assert soak.soak_result(_windows([200.0], [None]), None).figures.p999_drift is None


def test_growth_is_end_minus_start_and_the_slope_per_hour() -> None:
    result = soak.soak_result(_windows([100.0] * 4, [101.0, 102.0, None, 104.0]), sample(100.0))
    assert result.rss_start_mb == 100.0
    assert result.rss_end_mb == 104.0
    assert result.figures.rss_growth_mb == 4.0
    assert result.rss_slope_mb_per_h == pytest.approx(3600.0, rel=1e-3)  # 1 MiB/s
    without = soak.soak_result(_windows([100.0] * 2, [None, None]), None)
    assert (without.figures.rss_growth_mb, without.rss_slope_mb_per_h) == (None, None)


def test_window_gates_in_the_one_verdict() -> None:
    summary = summarize(new_histogram(), 0, 1.0)
    limits = Limits(max_window_p999_us=800, max_p999_drift=1.2, max_rss_growth_mb=10)
    figures = WindowFigures(window_p999_us=812.0, p999_drift=1.25, rss_growth_mb=10.5)
    verdict = judge(summary, limits, {}, windows=figures)
    assert (verdict.exit_code, verdict.outcome) == (1, "breached")
    assert verdict.as_dict()["breaches"] == [
        {"figure": "window_p999_us", "value": 812.0, "limit": 800},
        {"figure": "p999_drift", "value": 1.25, "limit": 1.2},
        {"figure": "rss_growth_mb", "value": 10.5, "limit": 10},
    ]
    assert verdict.message == (
        "gate failed: worst window p99.9 = 812.0 us > limit 800.0 us; "
        "p99.9 drift (last/first windows) = 1.250 > limit 1.200; "
        "service RSS growth = 10.5 MiB > limit 10.0 MiB"
    )
    at_limits = WindowFigures(window_p999_us=800.0, p999_drift=1.2, rss_growth_mb=10.0)
    assert judge(summary, limits, {}, windows=at_limits).exit_code == 0
    assert judge(summary, limits, {}, windows=WindowFigures()).exit_code == 0


def test_interval_log_read_back_by_hdrhistogram(tmp_path: Path) -> None:
    windows = soak.WindowSet(1.0, 3.0)
    windows.start(started_ns=0, started_at=1_700_000_000.0)
    recorder = windows.recorder()
    for second, latency_ns in enumerate((50_000, 70_000, 900_000)):
        for _ in range(second + 1):
            recorder.record(second * S + 1000, latency_ns)
    log = tmp_path / "soak.hlog"
    write_intervals(windows.histograms(), str(log), windows.started_at, "test")
    reader = HistogramLogReader(str(log), new_histogram())
    read = []
    while (histogram := reader.get_next_interval_histogram()) is not None:
        read.append(
            (
                histogram.get_total_count(),
                histogram.get_max_value() // 1000,
                histogram.get_start_time_stamp() / 1000 - 1_700_000_000,
            )
        )
    reader.close()
    assert read == [(1, 50, 0.0), (2, 70, 1.0), (3, 900, 2.0)]


def test_process_figures_from_proc_and_from_metrics() -> None:
    here = read_proc(os.getpid())
    assert here.rss_bytes > 10 * MIB
    assert here.threads is not None and here.threads >= 1
    parsed = parse_metrics(generate_latest(REGISTRY).decode())
    assert parsed.rss_bytes == pytest.approx(here.rss_bytes, rel=0.5)
    assert parsed.threads is None  # prometheus_client does not export threads
    assert parse_metrics("process_threads 7\n" + generate_latest(REGISTRY).decode()).threads == 7
    with pytest.raises(SampleError, match="process_resident_memory_bytes"):
        parse_metrics("process_cpu_seconds_total 3.0\n")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--requests", "10", "--window", "1"], "--window needs --duration"),
        (["--duration", "1", "--window", "2"], "--window 2 is longer than --duration 1"),
        (["--duration", "1", "--max-rss-growth-mb", "5"], "--max-rss-growth-mb need --window"),
        (["--duration", "1", "--window", "1", "--max-p999-drift", "1.2"], "gives one window"),
    ],
)
def test_bad_soak_flags_are_refused_before_any_load(flags: list[str], message: str) -> None:
    args = build_parser().parse_args(["bench", "--target", "127.0.0.1:1", *flags])
    with pytest.raises(UsageError, match=re.escape(message)):
        bench._check(args)


@pytest.fixture
def leaky() -> Iterator[Callable[[int], tuple[subprocess.Popen[str], str, str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(leak_bytes: int) -> tuple[subprocess.Popen[str], str, str]:
        process = subprocess.Popen(
            [sys.executable, "-c", LEAKY_SERVER, str(leak_bytes)],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        match = re.search(r"listening on (\S+) metrics (\d+)", process.stdout.readline())
        assert match, "the test server did not start"
        return process, match.group(1), f"http://127.0.0.1:{match.group(2)}/metrics"

    yield start
    for process in started:
        process.kill()
        process.communicate()


def run_soak(address: str, out: Path, *extra: str) -> tuple[int, dict]:
    args = build_parser().parse_args(
        [
            "bench",
            *("--target", address, "--duration", "3", "--window", "1", "--rate", "200"),
            *("--warmup", "50", "--json", str(out), "--max-rss-growth-mb", "20", *extra),
        ]
    )
    status = bench.run(args)
    return status, json.loads(out.read_text())


def test_soak_growth_gate_fails_on_a_leak_and_passes_without(
    leaky: Callable[[int], tuple[subprocess.Popen[str], str, str]], tmp_path: Path
) -> None:
    # 600 requests keeping 100 kB each: about 57 MiB in 3 s.
    process, address, _ = leaky(100_000)
    status, result = run_soak(address, tmp_path / "leak.json", "--plot", str(tmp_path / "p.png"))
    assert status == 1
    assert (tmp_path / "p-windows.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["soak"]["process_source"] == "proc"
    assert result["soak"]["pid"] == process.pid  # found from the target's port
    assert [w["index"] for w in result["windows"]] == [0, 1, 2]
    assert sum(w["requests"] for w in result["windows"]) == result["requests"]
    rss = [w["rss_mb"] for w in result["windows"]]
    assert rss == sorted(rss) and rss[-1] - result["soak"]["rss_start_mb"] > 20
    breach = result["verdict"]["breaches"][0]
    assert (breach["figure"], breach["limit"]) == ("rss_growth_mb", 20)
    assert breach["value"] == result["soak"]["rss_growth_mb"] > 20

    _, address, url = leaky(0)
    status, result = run_soak(address, tmp_path / "ok.json", "--metrics-url", url)
    assert status == 0, result["verdict"]
    assert (result["soak"]["process_source"], result["soak"]["metrics_url"]) == ("metrics", url)
    assert abs(result["soak"]["rss_growth_mb"]) < 20
    assert all(w["rss_mb"] > 10 and w["cpu_s"] >= 0 for w in result["windows"])
    assert all(w["threads"] is None for w in result["windows"])  # not in prometheus_client


def test_the_reference_service_exports_what_metrics_url_reads() -> None:
    running = start_server("127.0.0.1", 0, "default", metrics_port=0)
    try:
        url = f"http://127.0.0.1:{running.metrics_port}/metrics"
        figures = read_metrics(url)
        assert figures.rss_bytes > 10 * MIB
        assert figures.cpu_s > 0
    finally:
        running.stop(grace=None)


def test_closed_loop_futures_windows_add_up_to_the_run(tmp_path: Path) -> None:
    running = start_server("127.0.0.1", 0, "default")
    try:
        out = tmp_path / "futures.json"
        args = build_parser().parse_args(
            [
                "bench",
                *("--target", running.address, "--profile", "tuned", "--concurrency", "2"),
                *("--duration", "1", "--window", "0.5", "--warmup", "20", "--json", str(out)),
            ]
        )
        assert bench.run(args) == 0
    finally:
        running.stop(grace=None)
    result = json.loads(out.read_text())
    assert result["client_model"] == "futures"
    assert [(w["start_s"], w["end_s"]) for w in result["windows"]] == [(0.0, 0.5), (0.5, 1.0)]
    assert sum(w["requests"] for w in result["windows"]) == result["requests"] > 0
    assert all(w["errors"] == 0 and w["p50_us"] > 0 for w in result["windows"])
