"""compare: case plan, alternation, targets, the idle-latency hold, and one tiny real run."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from lowlatency_service import compare, cpu_dma_latency
from lowlatency_service.cli import build_parser
from lowlatency_service.histogram import SCHEMA_KEYS, Summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def summary(p50: float, p999: float, rps: float) -> Summary:
    return Summary(p50, p50, p999, p999, p999, 100, 0, rps)


def test_cases_per_concurrency_and_idle_hold() -> None:
    cases = compare.build_cases([1, 16], "0", "1", dma_zero_too=True)
    assert [c.name for c in cases] == [
        "raw tcp c1",
        "default c1",
        "tuned c1",
        "raw tcp c16",
        "default c16",
        "tuned c16",
        "raw tcp c1 dma0",
        "default c1 dma0",
        "tuned c1 dma0",
        "raw tcp c16 dma0",
        "default c16 dma0",
        "tuned c16 dma0",
    ]
    by_name = {c.name: c for c in cases}
    assert by_name["default c1"].pinning == compare.Pinning(None, None)
    # Concurrency 1: one core while idle states are as they are, two with dma0.
    assert by_name["tuned c1"].pinning == compare.Pinning("0", "0")
    assert by_name["raw tcp c1"].pinning == compare.Pinning("0", "0")
    assert by_name["tuned c1 dma0"].pinning == compare.Pinning("0", "1")
    assert by_name["raw tcp c1 dma0"].pinning == compare.Pinning("0", "1")
    assert by_name["tuned c16"].pinning == compare.Pinning("0-1", "1")
    assert by_name["default c16"].pinning == compare.Pinning(None, None)
    # The dma0 cases reuse the servers of the plain ones.
    assert by_name["tuned c1 dma0"].server_key == by_name["tuned c1"].server_key
    assert len(compare.build_cases([1], "0", "1", dma_zero_too=False)) == 3


def test_each_run_rotates_the_order() -> None:
    cases = compare.build_cases([1], "0", "1", dma_zero_too=False)
    orders = [[c.kind for c in compare.run_order(cases, run)] for run in range(4)]
    assert orders == [
        ["raw tcp", "default", "tuned"],
        ["default", "tuned", "raw tcp"],
        ["tuned", "raw tcp", "default"],
        ["raw tcp", "default", "tuned"],
    ]


def test_commands_pin_tuned_and_raw_but_not_default() -> None:
    cases = {c.name: c for c in compare.build_cases([1], "0", "1", dma_zero_too=False)}
    tuned = compare.server_command(cases["tuned c1"])
    assert tuned[tuned.index("--cpus") + 1] == "0"
    assert tuned[tuned.index("--profile") + 1] == "tuned"
    assert "--cpus" not in compare.server_command(cases["default c1"])
    args = build_parser().parse_args(["compare", "--requests", "7", "--warmup", "3"])
    client = compare.client_command(cases["raw tcp c1"], args, "h:1", Path("j"), Path("l"))
    assert client[client.index("--cpus") + 1] == "0"  # c1 without dma0: one core
    assert client[client.index("--requests") + 1] == "7"


def test_median_over_runs() -> None:
    result = compare.CaseResult()
    for p50 in (300.0, 100.0, 200.0):
        result.runs.append(dict(summary(p50, 2 * p50, 1000 / p50 * 1000).to_dict(), errors=1))
    median = result.median()
    assert median.p50_us == 200.0
    assert median.p999_us == 400.0
    assert median.throughput_rps == 5000.0
    assert median.errors == 3


def test_ratios_and_targets() -> None:
    medians = {
        "raw tcp c1": summary(60, 150, 15000),
        "default c1": summary(560, 1800, 1700),
        "tuned c1": summary(310, 700, 3100),
        "default c16": summary(4100, 9500, 3800),
        "tuned c16": summary(1500, 4200, 9700),
        "tuned c1 dma0": summary(180, 350, 5400),
    }
    found = compare.ratios(medians, 1, "")
    assert found["tuned/default"]["p50"] == pytest.approx(310 / 560, abs=1e-3)
    assert found["tuned/raw tcp"]["p99.9"] == pytest.approx(700 / 150, abs=1e-3)
    assert compare.ratios(medians, 1, compare.DMA_SUFFIX) == {}
    checked = {t.description: t for t in compare.targets(medians)}
    assert checked["c1 tuned p50 / default p50"].met
    assert checked["c1 tuned p50 us"].met
    assert not checked["c1 tuned p99.9 / p50"].met
    assert checked["c16 tuned / default throughput"].met
    assert checked["c1 tuned p50 us, dma0"].met
    assert checked["c1 tuned p99.9 / p50, dma0"].met
    assert "NOT MET" in compare.targets({"tuned c1": summary(400, 1000, 1)})[0].line()


def test_process_cpu_seconds_counts_every_thread() -> None:
    def spin(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    before, process_before = compare.process_cpu_seconds(os.getpid()), time.process_time()
    worker = threading.Thread(target=spin, args=(0.3,))
    worker.start()
    spin(0.2)
    worker.join()
    counted = compare.process_cpu_seconds(os.getpid()) - before
    assert counted == pytest.approx(time.process_time() - process_before, abs=0.05)
    assert counted >= 0.45


def run_with_cost(client_us: float, server_us: float, rps: float) -> dict:
    return dict(
        summary(1000, 3000, rps).to_dict(),
        client_cpu_us_per_request=client_us,
        client_context_switches_per_request=2.0,
        server_cpu_us_per_request=server_us,
    )


def test_cpu_ceiling_bounds_the_throughput_ratio() -> None:
    cases = compare.build_cases([1, 16], "0", "1", dma_zero_too=False)
    results = {case.name: compare.CaseResult() for case in cases}
    for client_us, server_us in ((250, 450), (240, 460), (260, 470)):
        results["default c16"].runs.append(run_with_cost(client_us, server_us, 2700))
    for client_us, server_us in ((190, 350), (200, 340), (180, 360)):
        results["tuned c16"].runs.append(run_with_cost(client_us, server_us, 3700))
    results["tuned c1"].runs.append(run_with_cost(100, 100, 2000))
    medians = {name: r.median() for name, r in results.items() if r.runs}
    found = compare.cpu_ceiling(cases, results, medians)
    assert list(found) == ["tuned c16"]  # c1 is not CPU-bound; no ceiling
    bound = found["tuned c16"]
    # tuned c16's server has both CPUs, its client one of them: 2 CPUs.
    assert bound["cpus"] == 2
    assert bound["tuned_cpu_us_per_request"] == 190 + 350
    assert bound["default_cpu_us_per_request"] == 250 + 460
    assert bound["ceiling_rps"] == round(2e6 / 540)
    assert bound["ceiling_over_default"] == pytest.approx(2e6 / 540 / 2700, abs=1e-3)
    assert bound["needed_us"] == pytest.approx(2e6 / 5400, abs=0.1)
    del results["default c16"].runs[:]
    assert compare.cpu_ceiling(cases, results, medians) == {}


def test_busy_host_warning() -> None:
    assert compare.busy_warning(0.3, 2) is None
    assert "load average 7.5 on 2 CPUs" in compare.busy_warning(7.5, 2)


def test_idle_latency_hold_writes_a_zero_int32_while_open(tmp_path: Path) -> None:
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    assert cpu_dma_latency.unavailable_reason(str(device)) is None
    with cpu_dma_latency.held_at_zero(str(device)):
        assert device.read_bytes() == b"\0\0\0\0"
    assert "does not exist" in cpu_dma_latency.unavailable_reason(str(tmp_path / "none"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_idle_latency_hold_refused_says_why(tmp_path: Path) -> None:
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    device.chmod(0o400)
    assert "not writable" in cpu_dma_latency.unavailable_reason(str(device))


def test_short_compare_writes_every_case_and_a_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "out" / "compare.json", tmp_path / "out" / "compare.png"
    args = build_parser().parse_args(
        [
            *("compare", "--requests", "60", "--runs", "1", "--warmup", "10"),
            *("--concurrency-list", "1", "--json", str(out), "--plot", str(png)),
        ]
    )
    assert compare.run(args) == 0
    report = json.loads(out.read_text())
    expected = ["raw tcp c1", "default c1", "tuned c1"]
    dma_ok = cpu_dma_latency.unavailable_reason() is None
    if dma_ok:
        expected += [name + compare.DMA_SUFFIX for name in expected]
    assert list(report["cases"]) == expected
    for case in report["cases"].values():
        assert case["failures"] == []
        assert len(case["runs"]) == 1
        assert set(SCHEMA_KEYS) <= set(case["median"])
        assert case["median"]["requests"] == 60
    for name in ("default c1", "tuned c1"):
        cost = report["cases"][name]["client_cost_median"]
        assert cost["client_cpu_us_per_request"] > 0
        assert cost["client_context_switches_per_request"] >= 0
    for case in report["cases"].values():
        # Clock ticks of 10 ms: a run this short may read 0, never less.
        assert case["server_cost_median"]["server_cpu_us_per_request"] >= 0
        assert case["runs"][0]["server_cpu_us_per_request"] >= 0
    assert report["cpu_ceilings"] == {}  # concurrency 1 only
    assert report["cases"]["raw tcp c1"]["client_cost_median"] == {}
    assert set(report["ratios"]["c1"]) == {"tuned/default", "tuned/raw tcp", "default/raw tcp"}
    assert report["cpu_dma_latency"].startswith("cases ending" if dma_ok else "cases with")
    assert {t["description"] for t in report["targets"]} >= {"c1 tuned p50 us"}
    assert set(report["load_average"]) == {"before", "after"}
    assert png.read_bytes()[:8] == PNG_MAGIC
    printed = capsys.readouterr()
    assert "tuned c1" in printed.out
    assert "cpu_dma_latency:" in printed.err
