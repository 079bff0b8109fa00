"""Run on the guest: every task with its CPUs, policy and cgroup, as JSON."""

import json
import os

KTHREAD = 0x00200000


def task_of(pid: str, tid: str, cgroup: str) -> dict:
    base = f"/proc/{pid}/task/{tid}"
    with open(base + "/stat", encoding="utf-8") as handle:
        stat = handle.read()
    with open(base + "/status", encoding="utf-8") as handle:
        status = dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)
    fields = stat[stat.rindex(")") + 2 :].split()
    return {
        "pid": int(pid),
        "tid": int(tid),
        "comm": stat[stat.index("(") + 1 : stat.rindex(")")],
        "cpus": status["Cpus_allowed_list"].strip(),
        "kthread": bool(int(fields[6]) & KTHREAD),
        "policy": int(fields[38]),
        "rt_priority": int(fields[37]),
        "nice": int(fields[16]),
        "cgroup": cgroup,
    }


tasks = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as handle:
            cgroup = handle.read().strip().split("::")[-1]
        tasks.extend(task_of(pid, tid, cgroup) for tid in os.listdir(f"/proc/{pid}/task"))
    except (OSError, ValueError):
        pass
print(json.dumps(tasks))
