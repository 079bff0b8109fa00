"""os_latency against output recorded from rt-tests 2.40 (Debian 12) on a 2-vCPU KVM guest.

The fixtures are the JSON files the module's command lines wrote (CPU 1 not isolated):
oslat_cpu1_10s.json: oslat --cpu-list 1 --cpu-main-thread 0 --duration 10 --rtprio 1
  --bucket-size 1024 --zero-omit --quiet --json=FILE (the tool printed max 53293 us: the
  50 ms a second a SCHED_FIFO busy loop yields to waiting tasks, why rtprio is unset by default)
oslat_cpu0-1_3s.json: the same on CPUs 0-1 for 3 s
cyclictest_cpu0-1_3s.json: cyclictest --affinity 0-1 --threads --mlockall --priority 1
  --interval 1000 --histogram 1024 --mainaffinity 0 --duration 3 --quiet --json=FILE
  (its summary printed "Max Latencies: 01912 02131", "Histogram Overflows: 00001 00002")
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from ansible.module_utils import basic
from ansible_collections.lowlatency.tuning.plugins.module_utils.os_latency import (
    OsLatencyError,
    parse_cyclictest,
    parse_hwlatdetect,
    parse_oslat,
    percentile,
)
from ansible_collections.lowlatency.tuning.plugins.modules import os_latency

FIXTURES = Path(__file__).parent / "fixtures" / "os_latency"

# hwlatdetect's summary as its source prints it (info() lines of rt-tests 2.4's hwlatdetect).
HWLAT_OUT = """hwlatdetect:  test duration 5 seconds
   detector: tracer
   parameters:
        CPU list:          1
        Latency threshold: 10us
        Sample window:     1000000us
        Sample width:      500000us
     Non-sampling period:  500000us
        Output File:       None

Starting test
test finished
Max Latency: {max}
Samples recorded: {samples}
Samples exceeding threshold: {samples}
"""


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_percentile_walks_the_buckets_and_ends_in_the_overflows():
    # 100 samples: 98 at 1 us, one at 5 us, one overflow (maximum 3000 us).
    histogram = {1: 98, 5: 1}
    assert percentile(histogram, 1, 3000, 50.0) == 1
    assert percentile(histogram, 1, 3000, 98.0) == 1
    assert percentile(histogram, 1, 3000, 99.0) == 5
    assert percentile(histogram, 1, 3000, 99.9) == 3000
    assert percentile({}, 0, 0, 99.0) is None


def test_oslat_recorded_single_cpu():
    cpus = parse_oslat(load("oslat_cpu1_10s.json"))
    assert list(cpus) == [1]
    cpu1 = cpus[1]
    assert cpu1["max_us"] == 53293
    assert cpu1["min_us"] == 1
    assert cpu1["avg_us"] == pytest.approx(1.0018, abs=1e-3)
    # Nearly every loop of a busy loop takes under 1 us: the median is the first bucket.
    assert cpu1["p50_us"] == 1
    assert cpu1["p50_us"] <= cpu1["p99_us"] <= cpu1["p999_us"] <= cpu1["max_us"]
    raw = load("oslat_cpu1_10s.json")["thread"]["0"]["histogram"]
    assert cpu1["samples"] == sum(raw.values())
    assert cpu1["overflows"] == raw.get("1024", 0)
    assert "1024" not in cpu1["histogram"]


def test_oslat_recorded_two_cpus():
    cpus = parse_oslat(load("oslat_cpu0-1_3s.json"))
    assert sorted(cpus) == [0, 1]
    assert cpus[0]["max_us"] == 50170
    assert cpus[1]["max_us"] == 50195


def test_cyclictest_recorded_overflows_are_the_missing_cycles():
    cpus = parse_cyclictest(load("cyclictest_cpu0-1_3s.json"))
    assert sorted(cpus) == [0, 1]
    assert [cpus[0]["max_us"], cpus[1]["max_us"]] == [1912, 2131]
    assert [cpus[0]["overflows"], cpus[1]["overflows"]] == [1, 2]
    assert [cpus[0]["samples"], cpus[1]["samples"]] == [2995, 2997]
    for figures in cpus.values():
        assert figures["min_us"] <= figures["p50_us"] <= figures["p99_us"] <= figures["max_us"]


def test_json_without_threads_is_refused():
    with pytest.raises(OsLatencyError, match="no 'thread' object"):
        parse_oslat({"num_threads": 1})
    with pytest.raises(OsLatencyError, match="lacks histogram"):
        parse_cyclictest({"thread": {"0": {"cpu": 1, "min": 1, "avg": 1, "max": 2}}})


def test_hwlatdetect_summary():
    above = parse_hwlatdetect(HWLAT_OUT.format(max="25us", samples=3))
    assert above == {
        "max_us": 25,
        "below_threshold": False,
        "threshold_us": 10,
        "samples": 3,
        "exceeding": 3,
    }
    below = parse_hwlatdetect(HWLAT_OUT.format(max="Below threshold", samples=0))
    assert below["max_us"] is None and below["below_threshold"] is True
    with pytest.raises(OsLatencyError):
        parse_hwlatdetect("hwlatdetect: failed to mount debugfs\n")


@pytest.fixture
def fake_tools(monkeypatch):
    """Tools in PATH as named; run_command copies the recorded JSON to the --json= path."""
    calls: list[list[str]] = []
    state = {"installed": {"oslat", "cyclictest", "hwlatdetect"}, "hwlat_max": "25us"}
    recorded = {"oslat": "oslat_cpu1_10s.json", "cyclictest": "cyclictest_cpu0-1_3s.json"}

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return "/usr/bin/" + name if name in state["installed"] else None

    def run_command(self, argv, **kwargs):
        calls.append(argv)
        # The tool, after a systemd-run prefix if any.
        tool = next(Path(arg).name for arg in argv if Path(arg).name in (*recorded, "hwlatdetect"))
        if tool == "hwlatdetect":
            # Its exit status is whether the maximum exceeded its threshold (10 us).
            below = state["hwlat_max"] == "Below threshold"
            return (
                state.get("hwlat_rc", int(not below)),
                HWLAT_OUT.format(max=state["hwlat_max"], samples=2),
                "",
            )
        target = next(arg.split("=", 1)[1] for arg in argv if arg.startswith("--json="))
        shutil.copy(FIXTURES / recorded[tool], target)
        return 0, "", ""

    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", get_bin_path)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    return calls, state


def tracer_root(tmp_path: Path, tracers: str) -> str:
    path = tmp_path / "sys/kernel/tracing"
    path.mkdir(parents=True)
    (path / "available_tracers").write_text(tracers + "\n")
    return str(tmp_path)


def test_gate_fails_with_a_limit_below_the_measured_max(module_runner, fake_tools, tmp_path):
    calls = fake_tools[0]
    args = {"cpus": "1", "duration": 10, "max_latency_us": 100, "main_cpu": 0, "label": "after"}
    result = module_runner(os_latency, {**args, "sysfs_root": tracer_root(tmp_path, "nop")})
    assert not result.get("failed"), result.get("msg")
    assert result["passed"] is False
    assert result["breaches"] == [{"figure": "max_us", "cpu": 1, "value": 53293, "limit": 100}]
    (row,) = result["report"]
    assert row["setting"] == "os_latency:after:oslat:cpu1"
    assert row["status"] == "drifted"
    assert row["expected"] == "max <= 100 us"
    assert row["actual"].startswith("max 53293 us, p99 ")
    assert "above the limit of 100 us" in row["reason"]
    # One run for all CPUs, the main thread off the measured CPUs.
    (argv,) = calls
    assert argv[:3] == ["/usr/bin/oslat", "--cpu-list", "1"]
    assert argv[argv.index("--cpu-main-thread") + 1] == "0"
    assert argv[argv.index("--duration") + 1] == "10"
    assert "--rtprio" not in argv


def test_rtprio_reaches_the_tool(module_runner, fake_tools):
    calls = fake_tools[0]
    module_runner(os_latency, {"cpus": "1", "duration": 5, "rtprio": 1})
    module_runner(os_latency, {"cpus": "0-1", "duration": 3, "tool": "cyclictest"})
    assert calls[0][calls[0].index("--rtprio") + 1] == "1"
    assert calls[1][calls[1].index("--priority") + 1] == "95"


def test_gate_passes_with_a_limit_above_the_max(module_runner, fake_tools):
    result = module_runner(os_latency, {"cpus": "1", "duration": 10, "max_latency_us": 60000})
    assert result["passed"] is True and result["breaches"] == []
    assert [row["status"] for row in result["report"]] == ["applied"]
    assert result["cpus"]["1"]["max_us"] == 53293
    assert result["version"] == "2.40"


def test_cyclictest_rows_per_cpu(module_runner, fake_tools):
    calls = fake_tools[0]
    result = module_runner(
        os_latency, {"cpus": "0-1", "tool": "cyclictest", "duration": 3, "max_latency_us": 2000}
    )
    assert [row["setting"] for row in result["report"]] == [
        "os_latency:cyclictest:cpu0",
        "os_latency:cyclictest:cpu1",
    ]
    assert [row["status"] for row in result["report"]] == ["applied", "drifted"]
    assert result["breaches"] == [{"figure": "max_us", "cpu": 1, "value": 2131, "limit": 2000}]
    assert calls[0][:3] == ["/usr/bin/cyclictest", "--affinity", "0-1"]


def test_hwlat_row_when_the_tracer_is_listed(module_runner, fake_tools, tmp_path):
    calls = fake_tools[0]
    root = tracer_root(tmp_path, "hwlat blk function nop")
    result = module_runner(
        os_latency,
        {"cpus": "1", "duration": 5, "hwlat": True, "max_latency_us": 60000, "sysfs_root": root},
    )
    assert [Path(argv[0]).name for argv in calls] == ["oslat", "hwlatdetect"]
    assert calls[1][calls[1].index("--cpu-list") + 1] == "1"
    assert result["hwlat"]["max_us"] == 25
    hwlat_row = result["report"][-1]
    assert hwlat_row["setting"] == "os_latency:hwlat" and hwlat_row["status"] == "applied"


def test_hwlat_breach_is_a_breach(module_runner, fake_tools, tmp_path):
    state = fake_tools[1]
    state["hwlat_max"] = "250us"
    root = tracer_root(tmp_path, "hwlat nop")
    result = module_runner(
        os_latency,
        {"cpus": "1", "duration": 5, "hwlat": True, "max_latency_us": 60000, "sysfs_root": root},
    )
    assert result["passed"] is True and result["breaches"] == []
    # A limit of 100 us: both the CPU's 53293 us and hwlat's 250 us breach it.
    result = module_runner(
        os_latency,
        {"cpus": "1", "duration": 5, "hwlat": True, "max_latency_us": 100, "sysfs_root": root},
    )
    assert [b["figure"] for b in result["breaches"]] == ["max_us", "hwlat_max_us"]
    assert result["report"][-1]["status"] == "drifted"


def test_hwlat_failure_is_an_error(module_runner, fake_tools, tmp_path):
    state = fake_tools[1]
    state["hwlat_rc"] = 2
    root = tracer_root(tmp_path, "hwlat nop")
    result = module_runner(
        os_latency, {"cpus": "1", "duration": 5, "hwlat": True, "sysfs_root": root}
    )
    assert result["failed"] is True
    assert result["msg"].startswith("hwlatdetect exited 2")


def test_hwlat_skipped_without_the_tracer(module_runner, fake_tools, tmp_path):
    calls = fake_tools[0]
    result = module_runner(
        os_latency,
        {
            "cpus": "1",
            "duration": 5,
            "hwlat": True,
            "sysfs_root": tracer_root(tmp_path, "function nop"),
        },
    )
    assert [Path(argv[0]).name for argv in calls] == ["oslat"]
    row = result["report"][-1]
    assert row["setting"] == "os_latency:hwlat" and row["status"] == "skipped"
    assert "no hwlat tracer" in row["reason"] and "function nop" in row["reason"]
    result = module_runner(
        os_latency,
        {"cpus": "1", "duration": 5, "hwlat": True, "sysfs_root": str(tmp_path / "none")},
    )
    assert "tracefs not mounted" in result["report"][-1]["reason"]


def test_missing_tool_is_skipped_with_the_reason(module_runner, fake_tools):
    calls, state = fake_tools
    state["installed"] = set()
    result = module_runner(
        os_latency,
        {
            "cpus": "2-3",
            "duration": 5,
            "max_latency_us": 1,
            "missing_hint": "installing rt-tests failed: no repo",
        },
    )
    assert calls == []
    assert result["passed"] is True
    (row,) = result["report"]
    assert row["setting"] == "os_latency:oslat:cpus 2-3"
    assert row["status"] == "skipped"
    assert row["reason"] == "oslat is not installed (rt-tests); installing rt-tests failed: no repo"


def test_check_mode_runs_nothing(module_runner, fake_tools):
    calls = fake_tools[0]
    result = module_runner(
        os_latency, {"cpus": "1", "duration": 5, "hwlat": True, "_ansible_check_mode": True}
    )
    assert calls == []
    assert [(row["status"], row["reason"]) for row in result["report"]] == [
        ("skipped", "check mode runs no measurement")
    ] * 2


def test_no_cpus_is_skipped(module_runner, fake_tools):
    calls = fake_tools[0]
    result = module_runner(os_latency, {"cpus": "", "duration": 5})
    assert calls == []
    assert result["report"][0]["status"] == "skipped"
    assert "no CPUs" in result["report"][0]["reason"]


@pytest.mark.parametrize(
    "args, message",
    [
        ({"cpus": "1-x", "duration": 5}, "cpus: invalid cpulist '1-x'"),
        ({"cpus": "1", "duration": 0}, "duration must be at least 1 second (got 0)"),
        (
            {"cpus": "1", "duration": 5, "max_latency_us": 0},
            "max_latency_us must be above 0 (got 0)",
        ),
        ({"cpus": "1", "duration": 5, "rtprio": 100}, "rtprio must be 1-99 (got 100)"),
        (
            {"cpus": "0-1", "duration": 5, "main_cpu": 0},
            "main_cpu 0 is one of the measured cpus 0-1",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_runs(module_runner, fake_tools, args, message):
    calls = fake_tools[0]
    result = module_runner(os_latency, args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert calls == []


def test_a_fenced_module_runs_the_tool_outside_the_fence(module_runner, fake_tools, monkeypatch):
    calls, state = fake_tools
    state["installed"].add("systemd-run")
    # service_pinning's fence: this process may run on CPU 0 alone.
    monkeypatch.setattr(os_latency.os, "sched_getaffinity", lambda pid: {0})
    real_isdir = os.path.isdir
    monkeypatch.setattr(
        os_latency.os.path, "isdir", lambda path: path == "/run/systemd/system" or real_isdir(path)
    )
    result = module_runner(os_latency, {"cpus": "1", "duration": 10, "main_cpu": 0})
    assert not result.get("failed"), result.get("msg")
    (argv,) = calls
    tool_at = argv.index("/usr/bin/oslat")
    assert argv[0] == "/usr/bin/systemd-run"
    assert "--wait" in argv[:tool_at] and "--property=CPUAffinity=0-1" in argv[:tool_at]
    assert [row["status"] for row in result["report"]] == ["applied"]


def test_a_cpu_the_tool_gave_no_figures_for_is_skipped(module_runner, fake_tools, monkeypatch):
    # No systemd-run: the tool runs where this process may (CPUs 0-1); the recording has CPU 1.
    monkeypatch.setattr(os_latency.os, "sched_getaffinity", lambda pid: {0, 1})
    result = module_runner(os_latency, {"cpus": "1-2", "duration": 10})
    assert [(row["setting"], row["status"]) for row in result["report"]] == [
        ("os_latency:oslat:cpu1", "applied"),
        ("os_latency:oslat:cpu2", "skipped"),
    ]
    assert "no figures for CPU 2" in result["report"][1]["reason"]
    assert "may not run there" in result["report"][1]["reason"]
