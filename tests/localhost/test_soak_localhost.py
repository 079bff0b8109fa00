"""playbooks/soak.yml soaks a running service from this machine and fetches what it measured.

The service is the reference service's ``serve``, started here on loopback
as any already deployed service would run. A soak of three 1-second windows
at 200 req/s passes its loose limits and leaves every window, the interval
log, both plots and the verdict under the artifacts directory; one whose
worst-window limit no gRPC call meets fails naming the figure, its value
and its limit, and leaves the flame graph of the profiled load (or the
reason the profile was skipped); soak settings that cannot work are
refused before any load.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from hdrh.log import HistogramLogReader
from localhost_helpers import playbook_runner, recap, tail
from lowlatency_service.histogram import new_histogram

INVENTORY = pathlib.Path(__file__).resolve().parent / "gate-inventory.yml"
SERVE = [str(pathlib.Path(sys.executable).with_name("lowlatency-service")), "serve", "--port", "0"]
WORST = re.compile(r"worst window p99\.9 = ([0-9.]+) us > limit ([0-9.]+) us")


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    server = subprocess.Popen(SERVE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        match = re.search(r"listening on (\S+:\d+)", server.stdout.readline())
        assert match, "serve did not start"
        yield match.group(1)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def soak(tmp_path, target):
    run = playbook_runner(tmp_path, INVENTORY)

    def soak_run(playbook: str = "soak", **settings: object) -> subprocess.CompletedProcess:
        given = {
            "benchmark_venv": sys.prefix,
            "benchmark_target": target,
            "benchmark_soak_duration": 3,
            "benchmark_soak_window": 1,
            **settings,
        }
        return run(playbook, "-e", json.dumps(given))

    return soak_run


def run_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    (found,) = (tmp_path / "artifacts" / "localhost").iterdir()
    return found


def test_a_short_soak_fetches_windows_interval_log_plots_and_verdict(soak, tmp_path):
    passed = soak(
        str(pathlib.Path(__file__).resolve().parent / "soak-report.yml"),
        benchmark_plot=True,
        benchmark_soak_max_window_p999_us=500000,
        benchmark_soak_max_p999_drift=1000,
        benchmark_soak_max_rss_growth_mb=200,
    )
    assert passed.returncode == 0, tail(passed)
    assert recap(passed)["localhost"][1] == 0, tail(passed)
    artifacts = run_dir(tmp_path)
    result = json.loads((artifacts / "bench.json").read_text())
    assert result["verdict"]["passed"] is True
    assert result["rate"] == 200
    assert result["window_s"] == 1
    windows = result["windows"]
    assert [window["index"] for window in windows] == [0, 1, 2]
    assert all(window["requests"] > 100 and window["p999_us"] > 0 for window in windows)
    # The service's memory read from /proc of the listener on the target's port.
    assert result["soak"]["process_source"] == "proc"
    assert all(window["rss_mb"] > 10 for window in windows)
    # One interval per window, read back with hdrhistogram's own log reader.
    reader = HistogramLogReader(str(artifacts / "bench.hlog"), new_histogram())
    counts = []
    while (interval := reader.get_next_interval_histogram()) is not None:
        counts.append(interval.get_total_count())
    reader.close()
    assert counts == [window["requests"] + window["errors"] for window in windows]
    for plot in ("bench.png", "bench-windows.png"):
        assert (artifacts / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    # The report row: the soak's figures and limits, applied since none was breached.
    (row,) = [
        r
        for r in json.loads((tmp_path / "report.json").read_text())
        if r["setting"] == "benchmark:soak"
    ]
    assert row["status"] == "applied", row
    assert "rss_growth_mb <= 200" in row["expected"] and "p999_drift <= 1000" in row["expected"]
    soaked = result["soak"]
    assert f"worst window p99.9 {soaked['window_p999_us']} us" in row["actual"]
    assert f"growth {soaked['rss_growth_mb']} MiB" in row["actual"] and "3 windows" in row["actual"]
    growth = re.escape(str(soaked["rss_growth_mb"]))
    assert re.search(r"soak rss_growth_mb +" + growth, passed.stdout), tail(passed)
    summary = json.loads((artifacts / "summary.json").read_text())
    assert summary["passed"] is True
    assert "rss_growth_mb <= 200" in summary["limits"]


def test_a_breached_soak_leaves_a_flame_graph_or_the_reason(soak, tmp_path):
    limit = 1.0  # far below any gRPC round trip
    failed = soak(
        benchmark_soak_max_window_p999_us=limit,
        benchmark_profile_on_failure=True,
        benchmark_profile_seconds=1,
    )
    assert failed.returncode != 0, tail(failed)
    breach = WORST.search(failed.stdout)
    assert breach, tail(failed)
    assert float(breach.group(1)) > float(breach.group(2)) == limit
    artifacts = run_dir(tmp_path)
    result = json.loads((artifacts / "bench.json").read_text())
    assert result["verdict"]["breaches"] == [
        {"figure": "window_p999_us", "value": float(breach.group(1)), "limit": limit}
    ]
    profile = result["profiling"]
    if profile["status"] == "recorded":
        svg = artifacts / "bench.profile.svg"
        assert svg.read_text().startswith("<svg")
        assert (artifacts / pathlib.Path(profile["raw"]).name).stat().st_size > 0
        assert profile["samples"] > 0
    else:
        assert profile["status"] == "skipped" and profile["reason"], profile
        assert not (artifacts / "bench.profile.svg").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"benchmark_soak_window": 5}, "benchmark_soak_window must be 0.1 seconds or more"),
        ({"benchmark_soak_rate": 0}, "benchmark_soak_rate must be 1-1000000 requests/s"),
        ({"benchmark_duration": 10}, "benchmark_duration must be null with benchmark_soak"),
    ],
)
def test_soak_settings_that_cannot_work_are_refused_before_any_load(
    soak, tmp_path, settings, message
):
    refused = soak(**settings)
    assert refused.returncode != 0
    assert message in refused.stdout, tail(refused)
    assert not (tmp_path / "artifacts").exists()


def test_check_mode_runs_no_load(tmp_path, target):
    run = playbook_runner(tmp_path, INVENTORY)
    settings = {"benchmark_venv": sys.prefix, "benchmark_target": target}
    checked = run(
        "soak", "--check", "-e", json.dumps({**settings, "benchmark_profile_on_failure": True})
    )
    assert checked.returncode == 0, tail(checked)
    assert recap(checked)["localhost"][1] == 0, tail(checked)
    assert not (tmp_path / "artifacts").exists()
