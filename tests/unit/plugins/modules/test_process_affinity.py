from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.lowlatency.tuning.plugins.modules import process_affinity

KTHREAD = 0x00200000


def stat_line(pid: int, comm: str, flags: int = 0, nice: int = 0, rt: int = 0, policy: int = 0):
    # Fields 3..52 of proc(5) after "(comm)"; only the ones read matter.
    rest = ["S", "1", str(pid), "0", "0", "0", str(flags)] + ["0"] * 9
    rest += [str(nice)] + ["0"] * 20 + [str(rt), str(policy)] + ["0"] * 11
    assert rest[16] == str(nice) and rest[37] == str(rt) and rest[38] == str(policy)
    return f"{pid} ({comm}) " + " ".join(rest) + "\n"


def add(root: Path, pid: int, comm: str, cpus: str, cgroup: str, threads=None, **stat):
    base = root / "proc" / str(pid)
    (base / "task").mkdir(parents=True)
    (base / "cgroup").write_text(f"0::{cgroup}\n")
    for tid, tcpus, tstat in threads or [(pid, cpus, stat)]:
        task = base / "task" / str(tid)
        task.mkdir()
        (task / "stat").write_text(stat_line(tid, comm, **tstat))
        (task / "status").write_text(
            f"Name:\t{comm}\nCpus_allowed:\tf\nCpus_allowed_list:\t{tcpus}\n"
        )


@pytest.fixture
def proc(tmp_path):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    add(root, 1, "systemd", "0-1", "/init.scope")
    add(root, 2, "kthreadd", "0-3", "/", flags=KTHREAD)
    add(root, 20, "ksoftirqd/2", "2", "/", flags=KTHREAD)
    add(root, 21, "kworker/0:1", "0", "/", flags=KTHREAD)
    add(
        root,
        300,
        "pinned svc",
        "2-3",
        "/lowlatency.slice/pinned.service",
        threads=[(300, "2-3", {"policy": 1, "rt": 10}), (301, "3", {"policy": 1, "rt": 10})],
    )
    add(root, 400, "cron", "0-1", "/system.slice/cron.service", nice=5)
    add(root, 500, "stray", "0-3", "/user.slice/user-0.slice/session-1.scope")
    return root


def test_unit_tasks_found_by_cgroup(module_runner, proc):
    result = module_runner(
        process_affinity, {"root": str(proc), "units": ["pinned.service"], "cpus": "2-3"}
    )
    assert result["changed"] is False
    unit = result["units"]["pinned.service"]
    assert unit["pids"] == [300]
    assert unit["cpus"] == "2-3"
    assert unit["policies"] == ["fifo"]
    assert unit["rt_priorities"] == [10]
    assert unit["nices"] == [0]
    assert [(t["tid"], t["cpus"], t["rt_priority"]) for t in unit["tasks"]] == [
        (300, "2-3", 10),
        (301, "3", 10),
    ]
    assert unit["tasks"][0]["comm"] == "pinned svc"


def test_intruders_and_kernel_threads_on_the_watched_cpus(module_runner, proc):
    result = module_runner(
        process_affinity, {"root": str(proc), "units": ["pinned.service"], "cpus": "2-3"}
    )
    assert [(t["pid"], t["comm"], t["cgroup"]) for t in result["intruders"]] == [
        (500, "stray", "/user.slice/user-0.slice/session-1.scope")
    ]
    kernel = {t["comm"]: t["per_cpu"] for t in result["kernel_threads"]}
    assert kernel == {"kthreadd": False, "ksoftirqd/2": True}


def test_a_unit_without_processes_is_empty(module_runner, proc):
    result = module_runner(process_affinity, {"root": str(proc), "units": ["gone.service"]})
    assert result["units"]["gone.service"] == {
        "pids": [],
        "cpus": "",
        "policies": [],
        "rt_priorities": [],
        "nices": [],
        "tasks": [],
    }
    assert result["intruders"] == []


def test_a_vanished_process_is_skipped(module_runner, proc):
    (proc / "proc/400/task/400/status").unlink()
    result = module_runner(process_affinity, {"root": str(proc), "cpus": "0"})
    assert 400 not in [t["pid"] for t in result["intruders"]]
    assert 1 in [t["pid"] for t in result["intruders"]]


def test_policy_names():
    fields = process_affinity.parse_stat(stat_line(9, "a) b", policy=5, nice=19))[1]
    assert fields["policy"] == "idle"
    assert fields["nice"] == 19
    fields = process_affinity.parse_stat(stat_line(9, "x", policy=3))[1]
    assert fields["policy"] == "batch"


def test_cgroup_v1_falls_back_to_the_first_hierarchy():
    text = "12:cpuset:/\n1:name=systemd:/system.slice/a.service\n"
    assert process_affinity.cgroup_path(text) == "/"
    assert process_affinity.cgroup_path("0::/x.slice\n") == "/x.slice"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"cpus": "2-"}, "cpus:"),
        ({"units": ["a/b.service"]}, "not valid"),
    ],
)
def test_bad_input(module_runner, proc, args, message):
    result = module_runner(process_affinity, {"root": str(proc), **args})
    assert result["failed"] is True
    assert message in result["msg"]


def test_no_proc_is_refused(module_runner, tmp_path):
    result = module_runner(process_affinity, {"root": str(tmp_path)})
    assert result["failed"] is True
    assert "no proc" in result["msg"]
