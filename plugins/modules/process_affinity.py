#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: process_affinity
short_description: Read where units' tasks may run, and which other tasks may run on given CPUs
version_added: 0.1.0
description:
  - Walks C(/proc) and reads, for every task (thread) of every process, the CPUs it may run on
    (C(Cpus_allowed_list) in C(/proc/PID/task/TID/status)), its scheduling policy, real-time
    priority and nice value (C(/proc/PID/task/TID/stat)) and its cgroup (C(/proc/PID/cgroup)).
  - Tasks whose cgroup path names one of O(units) are that unit's; they are returned per unit.
  - Every other user-space task allowed on any of O(cpus) is returned in RV(intruders); kernel
    threads allowed there are returned apart in RV(kernel_threads), per-CPU ones marked.
  - Reads only; never changes anything.
author:
  - lowlatency.tuning contributors (@lowlatency-tuning)
options:
  units:
    description:
      - systemd units whose tasks are looked up by cgroup, for example C(myservice.service).
    type: list
    elements: str
    default: []
  cpus:
    description:
      - CPUs (a cpulist) that only the units' tasks should be allowed on, normally the isolated
        CPUs. Empty looks for no intruders.
    type: str
    default: ""
  root:
    description:
      - Directory that C(/proc) is resolved under. Only for tests.
    type: path
    default: /
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - A process that exits during the walk is skipped.
seealso:
  - module: lowlatency.tuning.irq_affinity
"""

EXAMPLES = r"""
- name: Where do the service's threads run, and who else may run on 2-3
  lowlatency.tuning.process_affinity:
    units: [myservice.service]
    cpus: "2-3"
  register: __service_pinning_seen
"""

RETURN = r"""
units:
  description: Per unit, its tasks and what they add up to.
  type: dict
  returned: always
  sample:
    myservice.service:
      pids: [812]
      cpus: "2-3"
      policies: [fifo]
      rt_priorities: [10]
      nices: [0]
      tasks:
        - {pid: 812, tid: 812, comm: myservice, cpus: "2-3", policy: fifo, rt_priority: 10, nice: 0}
intruders:
  description: User-space tasks outside O(units) allowed on any of O(cpus).
  type: list
  elements: dict
  returned: always
  sample:
    - {pid: 455, tid: 455, comm: cron, cpus: "0-3", cgroup: /system.slice/cron.service}
kernel_threads:
  description: Kernel threads allowed on any of O(cpus); C(per_cpu) when bound to one CPU.
  type: list
  elements: dict
  returned: always
  sample:
    - {pid: 24, tid: 24, comm: ksoftirqd/2, cpus: "2", per_cpu: true}
"""

import os  # noqa: E402
from typing import Any, Dict, Iterator, List, Optional, Tuple  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.lowlatency.tuning.plugins.module_utils.cpus import (  # noqa: E402
    CpuSetError,
    format_cpulist,
    parse_cpulist,
)

PF_KTHREAD = 0x00200000
POLICIES = {0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline"}


def read_text(path: str) -> Optional[str]:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def parse_stat(text: str) -> Tuple[str, Dict[str, Any]]:
    """comm and the fields of /proc/PID/stat the verification needs.

    comm may hold spaces and parentheses: the fields start after the last ')'.
    Field n (1-based, as in proc(5)) is rest[n - 3].
    """
    comm = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    return comm, {
        "flags": int(rest[6]),
        "nice": int(rest[16]),
        "rt_priority": int(rest[37]),
        "policy": POLICIES.get(int(rest[38]), str(rest[38])),
    }


def allowed_cpus(status: str) -> Optional[str]:
    for line in status.splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return None


def cgroup_path(text: str) -> str:
    """The cgroup v2 path ('0::/system.slice/x.service'), else the first hierarchy's."""
    paths = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            if parts[0] == "0":
                return parts[2]
            paths.append(parts[2])
    return paths[0] if paths else ""


def unit_of(path: str, units: List[str]) -> Optional[str]:
    for component in reversed(path.split("/")):
        if component in units:
            return component
    return None


def tasks(root: str) -> Iterator[Dict[str, Any]]:
    proc = os.path.join(root, "proc")
    for pid in sorted((name for name in os.listdir(proc) if name.isdigit()), key=int):
        cgroup = read_text(os.path.join(proc, pid, "cgroup"))
        try:
            tids = sorted(os.listdir(os.path.join(proc, pid, "task")), key=int)
        except (OSError, ValueError):
            continue
        for tid in tids:
            base = os.path.join(proc, pid, "task", tid)
            stat = read_text(os.path.join(base, "stat"))
            status = read_text(os.path.join(base, "status"))
            if stat is None or status is None:
                continue
            try:
                comm, fields = parse_stat(stat)
            except (ValueError, IndexError):
                continue
            cpus = allowed_cpus(status)
            if cpus is None:
                continue
            yield dict(
                fields,
                pid=int(pid),
                tid=int(tid),
                comm=comm,
                cpus=cpus,
                cgroup=cgroup_path(cgroup or ""),
            )


def survey(root: str, units: List[str], watched: set) -> Dict[str, Any]:
    per_unit: Dict[str, Dict[str, Any]] = {
        unit: {
            "pids": [],
            "cpus": "",
            "policies": [],
            "rt_priorities": [],
            "nices": [],
            "tasks": [],
        }
        for unit in units
    }
    union: Dict[str, set] = {unit: set() for unit in units}
    intruders: List[Dict[str, Any]] = []
    kernel: List[Dict[str, Any]] = []
    for task in tasks(root):
        try:
            cpus = set(parse_cpulist(task["cpus"], allow_empty=True))
        except CpuSetError:
            continue
        unit = unit_of(task["cgroup"], units)
        if unit is not None:
            entry = per_unit[unit]
            if task["pid"] not in entry["pids"]:
                entry["pids"].append(task["pid"])
            for key, values in (
                ("policy", "policies"),
                ("rt_priority", "rt_priorities"),
                ("nice", "nices"),
            ):
                if task[key] not in entry[values]:
                    entry[values].append(task[key])
            union[unit] |= cpus
            keys = ("pid", "tid", "comm", "cpus", "policy", "rt_priority", "nice")
            entry["tasks"].append({key: task[key] for key in keys})
            continue
        if not cpus & watched:
            continue
        if task["flags"] & PF_KTHREAD:
            kernel.append(
                {
                    "pid": task["pid"],
                    "tid": task["tid"],
                    "comm": task["comm"],
                    "cpus": task["cpus"],
                    "per_cpu": len(cpus) == 1,
                }
            )
        else:
            intruders.append(
                {key: task[key] for key in ("pid", "tid", "comm", "cpus", "cgroup", "policy")}
            )
    for unit, cpus in union.items():
        per_unit[unit]["cpus"] = format_cpulist(sorted(cpus)) if cpus else ""
    return {"units": per_unit, "intruders": intruders, "kernel_threads": kernel}


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "units": {"type": "list", "elements": "str", "default": []},
            "cpus": {"type": "str", "default": ""},
            "root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    try:
        watched = set(parse_cpulist(module.params["cpus"], allow_empty=True))
    except CpuSetError as exc:
        module.fail_json(msg="cpus: %s" % exc)
    for unit in module.params["units"]:
        if not unit or "/" in unit:
            module.fail_json(msg="unit name %r is not valid" % (unit,))
    if not os.path.isdir(os.path.join(module.params["root"], "proc")):
        module.fail_json(msg="no proc directory under %s" % module.params["root"])
    result = survey(module.params["root"], module.params["units"], watched)
    module.exit_json(changed=False, **result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
