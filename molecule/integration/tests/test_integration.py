"""tune.yml on the test bed guest: read back from the guest's /proc and /sys and the artifacts.

Runs after converge and the idempotence run; the artifacts are those the
benchmark and verify roles fetched to the controller.
"""

from __future__ import annotations

import glob
import json
import os
import re

UNIT = "lowlatency-service.service"
VENV = "/opt/lowlatency-service/venv"


def artifacts_dir() -> str:
    runs = sorted(
        glob.glob(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "artifacts", "*", "*"))
    )
    assert runs, "no artifacts were fetched"
    return runs[-1]


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def isolated() -> str:
    """The isolated CPUs cpu_layout derived, from the verify report."""
    rows = read_json(os.path.join(artifacts_dir(), "verify.json"))["rows"]
    return next(row["actual"] for row in rows if row["setting"] == "cpu_layout:isolated")


def test_boot_arguments_are_live(host):
    cmdline = host.file("/proc/cmdline").content_string.split()
    cpus = isolated()
    for arg in (
        f"isolcpus=managed_irq,domain,{cpus}",
        f"nohz_full={cpus}",
        f"rcu_nocbs={cpus}",
        "nosmt",
    ):
        assert arg in cmdline


def test_service_runs_sandboxed_as_its_user_on_the_isolated_cpus(host):
    service = host.service(UNIT)
    assert service.is_running
    assert service.is_enabled
    show = host.check_output(
        f"systemctl show {UNIT} -p MainPID -p User -p NoNewPrivileges -p ProtectSystem"
        " -p CapabilityBoundingSet"
    )
    props = dict(line.split("=", 1) for line in show.splitlines())
    assert props["User"] == "lowlatency-svc"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["CapabilityBoundingSet"] == ""
    pid = props["MainPID"]
    for task in host.check_output(f"ls /proc/{pid}/task").split():
        status = host.file(f"/proc/{pid}/task/{task}/status").content_string
        assert re.search(r"^Cpus_allowed_list:\s*(\S+)$", status, re.M).group(1) == isolated()


def test_service_answers_its_health_check_only_on_its_address(host):
    pid = host.check_output(f"systemctl show -p MainPID --value {UNIT}")
    probe = json.loads(
        host.check_output(
            f"{VENV}/bin/lowlatency-service probe --target 127.0.0.1:50051 --pid {pid}"
        )
    )
    assert probe["status"] == "SERVING"
    assert probe["listening"] == ["127.0.0.1:50051"]


def test_verify_report_has_nothing_drifted_or_pending():
    report = read_json(os.path.join(artifacts_dir(), "verify.json"))
    statuses = {row["status"] for row in report["rows"]}
    assert "drifted" not in statuses
    assert "pending_reboot" not in statuses
    applied = {row["setting"] for row in report["rows"] if row["status"] == "applied"}
    assert f"{UNIT}:health" in applied
    assert "benchmark:gate" in applied
    # service_pinning's rows for the unit, read back once the unit runs (not "not running").
    pinning = {
        row["setting"]: row["status"] for row in report["rows"] if row["role"] == "service_pinning"
    }
    assert pinning[f"{UNIT}:Cpus_allowed_list"] == "applied", pinning
    assert pinning[f"{UNIT}:scheduling"] == "applied", pinning


def test_benchmark_artifacts_before_and_after():
    run = artifacts_dir()
    summary = read_json(os.path.join(run, "summary.json"))
    assert summary["passed"] is True
    assert summary["baseline"]["p50_us"] > 0
    assert summary["after"]["p50_us"] > 0
    for name in ("bench", "baseline-bench"):
        assert os.path.getsize(os.path.join(run, f"{name}.hlog")) > 0
        with open(os.path.join(run, f"{name}.png"), "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
