"""Read the pinned service, the fence and every other process back from /proc."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

HOUSEKEEPING = "0-1"
ISOLATED = {2, 3}
UNIT = "lowlatency-test.service"
DROPIN = f"/etc/systemd/system/{UNIT}.d/50-lowlatency-pinning.conf"

SURVEY = (Path(__file__).parent / "survey.py").read_text()


def cpulist(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        if part:
            bounds = part.split("-", 1)
            cpus.update(range(int(bounds[0]), int(bounds[-1]) + 1))
    return cpus


def survey(host) -> list[dict]:
    return json.loads(host.run_test(f"python3 -c {shlex.quote(SURVEY)}").stdout)


def main_pid(host, unit: str) -> int:
    return int(host.run_test(f"systemctl show -p MainPID --value {unit}").stdout)


def test_service_tasks_pinned_fifo_10_nice_minus_5(host):
    pid = main_pid(host, UNIT)
    tasks = [t for t in survey(host) if t["pid"] == pid]
    assert len(tasks) == 2, tasks
    for task in tasks:
        assert task["cpus"] == "2-3"
        assert (task["policy"], task["rt_priority"], task["nice"]) == (1, 10, -5)
        assert task["cgroup"] == f"/lowlatency.slice/{UNIT}"
    chrt = host.run_test(f"chrt -p {pid}").stdout
    assert "SCHED_FIFO" in chrt
    assert "priority: 10" in chrt


def test_service_limits_and_numa_policy(host):
    pid = main_pid(host, UNIT)
    limits = host.file(f"/proc/{pid}/limits").content_string
    locked = next(line for line in limits.splitlines() if line.startswith("Max locked memory"))
    assert locked.split()[3:5] == ["67108864", "67108864"]
    numa_maps = host.file(f"/proc/{pid}/numa_maps").content_string
    assert "prefer:1" in numa_maps


def test_cgroup_cpusets(host):
    def effective(group: str) -> str:
        return host.file(f"/sys/fs/cgroup/{group}/cpuset.cpus.effective").content_string.strip()

    assert effective("lowlatency.slice") == "2-3"
    assert effective("system.slice") == HOUSEKEEPING
    assert effective("user.slice") == HOUSEKEEPING
    assert effective("init.scope") == HOUSEKEEPING


def test_systemd_and_other_services_on_housekeeping(host):
    pid1 = host.file("/proc/1/status").content_string
    assert f"Cpus_allowed_list:\t{HOUSEKEEPING}" in pid1
    other = main_pid(host, "lowlatency-other.service")
    status = host.file(f"/proc/{other}/status").content_string
    assert f"Cpus_allowed_list:\t{HOUSEKEEPING}" in status


def test_nothing_else_may_run_on_the_isolated_cpus(host):
    pinned = main_pid(host, UNIT)
    intruders = [
        t
        for t in survey(host)
        if not t["kthread"] and t["pid"] != pinned and cpulist(t["cpus"]) & ISOLATED
    ]
    assert intruders == []


def test_dropins_written(host):
    dropin = host.file(DROPIN).content_string
    for line in ("Slice=lowlatency.slice", "CPUAffinity=2-3", "AllowedCPUs=2-3",
                 "CPUSchedulingPolicy=fifo", "CPUSchedulingPriority=10", "NUMAPolicy=preferred",
                 "NUMAMask=1", "Nice=-5", "LimitMEMLOCK=64M"):  # fmt: skip
        assert line in dropin.splitlines()
    manager = host.file("/etc/systemd/system.conf.d/50-lowlatency-pinning.conf").content_string
    assert "CPUAffinity=0-1" in manager.splitlines()
    assert not host.file("/etc/systemd/system.conf").contains("lowlatency")
