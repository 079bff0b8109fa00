from __future__ import annotations

import json
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


NO_SETAFFINITY = 0x04000000
BOOT = "3c1f5c7e-0000-4000-8000-000000000001"


def kthread(
    root: Path,
    tid: int,
    comm: str,
    cpus: str,
    flags: int = KTHREAD,
    policy: int = 0,
    rt: int = 0,
    start: int = 5,
):
    base = root / "proc" / str(tid) / "task" / str(tid)
    base.mkdir(parents=True, exist_ok=True)
    (root / "proc" / str(tid) / "cgroup").write_text("0::/\n")
    line = stat_line(tid, comm, flags=flags, policy=policy, rt=rt).split(" ")
    line[21] = str(start)  # field 22, starttime
    (base / "stat").write_text(" ".join(line))
    (base / "status").write_text(f"Name:\t{comm}\nCpus_allowed_list:\t{cpus}\n")


@pytest.fixture
def writes():
    return []


@pytest.fixture
def kroot(tmp_path, monkeypatch, writes):
    root = tmp_path / "k"
    (root / "proc/sys/kernel/random").mkdir(parents=True)
    (root / "proc/sys/kernel/random/boot_id").write_text(BOOT + "\n")
    kthread(root, 2, "kthreadd", "0-3")
    kthread(root, 14, "rcu_preempt", "0-3")
    kthread(root, 30, "ksoftirqd/2", "2", flags=KTHREAD | NO_SETAFFINITY)
    kthread(root, 31, "ksoftirqd/3", "3", flags=KTHREAD | NO_SETAFFINITY)
    kthread(root, 32, "ksoftirqd/0", "0", flags=KTHREAD | NO_SETAFFINITY)
    kthread(root, 40, "kworker/u8:1", "0-3", flags=KTHREAD | NO_SETAFFINITY)
    kthread(root, 41, "irq/9-acpi", "1")

    def fake_affinity(tid, cpus):
        writes.append(("affinity", tid, sorted(cpus)))
        status = root / "proc" / str(tid) / "task" / str(tid) / "status"
        text = status.read_text().split("Cpus_allowed_list:")[0]
        status.write_text(
            text + "Cpus_allowed_list:\t" + process_affinity.format_cpulist(sorted(cpus)) + "\n"
        )

    def fake_scheduler(tid, policy, priority):
        writes.append(("sched", tid, policy, priority))
        stat = root / "proc" / str(tid) / "task" / str(tid) / "stat"
        line = stat.read_text().split(" ")
        # fields 40 and 41: rt_priority and policy
        line[39], line[40] = str(priority), str(process_affinity.POLICY_NUMBERS[policy])
        stat.write_text(" ".join(line))

    monkeypatch.setattr(process_affinity, "set_affinity", fake_affinity)
    monkeypatch.setattr(process_affinity, "set_scheduler", fake_scheduler)
    return root


def kargs(root, tmp_path, **extra):
    base = {
        "root": str(root),
        "cpus": "2-3",
        "owner": "kernel-kthreads",
        "state_dir": str(tmp_path / "state"),
    }
    base.update(extra)
    return base


def rows(result):
    return {row["setting"]: row for row in result["report"]}


def test_movable_kernel_threads_moved_refused_ones_named(module_runner, kroot, tmp_path, writes):
    result = module_runner(process_affinity, kargs(kroot, tmp_path, move_to="0-1"))
    assert result["changed"] is True
    assert [(m["comm"], m["cpus"]) for m in result["moved"]] == [
        ("kthreadd", "0-3"),
        ("rcu_preempt", "0-3"),
    ]
    assert writes == [("affinity", 2, [0, 1]), ("affinity", 14, [0, 1])]
    row = rows(result)["kernel threads allowed on CPUs 2-3"]
    # Still allowed there: the three the kernel refuses to move, which is what is expected.
    assert (row["expected"], row["actual"], row["status"]) == ("3", "3", "applied")
    assert "refuses to move 3" in row["reason"]
    assert "ksoftirqd/2, ksoftirqd/3, kworker/u8:1" in row["reason"]
    record = json.loads((tmp_path / "state/kernel-kthreads.json").read_text())
    entry = record["entries"]["setting"]["affinity/2"]
    assert (entry["original"], entry["expected"], entry["comm"], entry["boot"]) == (
        "0-3",
        "0-1",
        "kthreadd",
        BOOT,
    )


def test_second_run_changes_nothing(module_runner, kroot, tmp_path, writes):
    module_runner(process_affinity, kargs(kroot, tmp_path, move_to="0-1", priority=11))
    writes.clear()
    again = module_runner(process_affinity, kargs(kroot, tmp_path, move_to="0-1", priority=11))
    assert again["changed"] is False
    assert writes == []
    assert {row["status"] for row in again["report"]} == {"applied"}


def test_check_mode_predicts_and_writes_nothing(module_runner, kroot, tmp_path, writes):
    result = module_runner(
        process_affinity,
        kargs(kroot, tmp_path, move_to="0-1", priority=11, _ansible_check_mode=True),
    )
    assert result["changed"] is True
    assert writes == []
    assert not (tmp_path / "state/kernel-kthreads.json").exists()
    assert [row["status"] for row in result["report"]] == ["would_change", "would_change"]
    assert rows(result)["kernel threads allowed on CPUs 2-3"]["actual"] == "3"


def test_priority_raised_on_the_watched_cpus_only(module_runner, kroot, tmp_path, writes):
    result = module_runner(process_affinity, kargs(kroot, tmp_path, priority=11))
    assert writes == [("sched", 30, "fifo", 11), ("sched", 31, "fifo", 11)]
    row = rows(result)["kernel thread priority on CPUs 2-3 (ksoftirqd, rcuc, ktimers)"]
    assert (row["expected"], row["actual"], row["status"]) == ("fifo 11", "fifo 11", "applied")
    assert "no rcuc/ktimers thread" in row["reason"]
    # Without move_to the threads are only counted.
    count = rows(result)["kernel threads allowed on CPUs 2-3"]
    assert count["status"] == "skipped"
    assert "2 movable: kthreadd, rcu_preempt" in count["reason"]


def test_absent_puts_back_what_was_recorded(module_runner, kroot, tmp_path, writes):
    module_runner(process_affinity, kargs(kroot, tmp_path, move_to="0-1", priority=11))
    writes.clear()
    result = module_runner(process_affinity, kargs(kroot, tmp_path, state="absent"))
    assert result["changed"] is True
    assert sorted(writes) == [
        ("affinity", 2, [0, 1, 2, 3]),
        ("affinity", 14, [0, 1, 2, 3]),
        ("sched", 30, "other", 0),
        ("sched", 31, "other", 0),
    ]
    assert result["report"][0]["status"] == "restored"
    assert not (tmp_path / "state/kernel-kthreads.json").exists()
    again = module_runner(process_affinity, kargs(kroot, tmp_path, state="absent"))
    assert again["changed"] is False
    assert again["report"][0]["status"] == "skipped"


def test_absent_drops_records_of_another_boot_or_a_new_thread(
    module_runner, kroot, tmp_path, writes
):
    module_runner(process_affinity, kargs(kroot, tmp_path, move_to="0-1"))
    kthread(kroot, 14, "rcu_preempt", "0-1", start=99)  # the same PID, started anew
    (kroot / "proc/sys/kernel/random/boot_id").write_text("another-boot\n")
    writes.clear()
    result = module_runner(process_affinity, kargs(kroot, tmp_path, state="absent"))
    assert writes == []
    assert "2 gone or from an earlier boot" in result["report"][0]["reason"]
    assert not (tmp_path / "state/kernel-kthreads.json").exists()


def test_a_refused_move_is_reported_and_not_recorded(module_runner, kroot, tmp_path, monkeypatch):
    def refuse(tid, cpus):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(process_affinity, "set_affinity", refuse)
    result = module_runner(process_affinity, kargs(kroot, tmp_path, move_to="0-1"))
    row = rows(result)["kernel threads allowed on CPUs 2-3"]
    assert row["status"] == "drifted"
    assert "kthreadd: EINVAL" in row["reason"]
    assert not (tmp_path / "state/kernel-kthreads.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"move_to": "1-2"}, "overlaps cpus"),
        ({"move_to": "0-"}, "move_to:"),
        ({"priority": 100}, "priority must be"),
        ({"move_to": "0-1", "owner": None}, "owner is required"),
    ],
)
def test_bad_kernel_thread_input(module_runner, kroot, tmp_path, extra, message, writes):
    result = module_runner(process_affinity, kargs(kroot, tmp_path, **extra))
    assert result["failed"] is True
    assert message in result["msg"]
    assert writes == []


def test_reading_only_still_counts_the_kernel_threads(module_runner, kroot, writes):
    result = module_runner(process_affinity, {"root": str(kroot), "cpus": "2-3"})
    assert result["changed"] is False
    assert writes == []
    row = result["report"][0]
    assert (row["setting"], row["actual"], row["status"]) == (
        "kernel threads allowed on CPUs 2-3",
        "5",
        "skipped",
    )
    assert "2 movable: kthreadd, rcu_preempt" in row["reason"]
