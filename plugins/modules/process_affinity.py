#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: process_affinity
short_description: Read where tasks may run; move kernel threads off CPUs and raise their priority
version_added: 0.1.0
description:
  - Walks C(/proc) and reads, for every task (thread) of every process, the CPUs it may run on
    (C(Cpus_allowed_list) in C(/proc/PID/task/TID/status)), its scheduling policy, real-time
    priority and nice value (C(/proc/PID/task/TID/stat)) and its cgroup (C(/proc/PID/cgroup)).
  - Tasks whose cgroup path names one of O(units) are that unit's; they are returned per unit.
  - Every other user-space task allowed on any of O(cpus) is returned in RV(intruders); kernel
    threads allowed there are returned apart in RV(kernel_threads), per-CPU ones marked.
  - Without O(move_to), O(priority) and O(state=absent) it reads only and never changes anything.
  - With O(move_to), every kernel thread allowed on O(cpus) that the kernel lets move is moved
    onto O(move_to) (C(sched_setaffinity)). Kernel threads with C(PF_NO_SETAFFINITY) (per-CPU
    threads such as C(ksoftirqd/N), and workqueue workers, which follow the workqueue cpumasks)
    cannot be moved; they are counted and named in the report as refused by the kernel.
  - With O(priority), the per-CPU kernel threads of O(priority_threads) on O(cpus) get
    C(SCHED_FIFO) at that priority, so that a real-time service pinned there cannot starve them.
  - What it changes is recorded first (per thread, with its start time and the boot it was
    recorded in) under O(owner); O(state=absent) puts each back. A thread that is gone, or a
    record from an earlier boot (the kernel started the thread anew), is dropped, not restored.
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
  move_to:
    description:
      - CPUs (a cpulist) to move the movable kernel threads allowed on O(cpus) onto, normally the
        housekeeping CPUs. Empty moves nothing; the report then only counts them.
    type: str
    default: ""
  priority:
    description:
      - C(SCHED_FIFO) priority (1-99) for the kernel threads of O(priority_threads) bound to one of
        O(cpus). V(0) leaves their scheduling alone.
    type: int
    default: 0
  priority_threads:
    description:
      - Names (C(comm) before its C(/)) of the per-CPU kernel threads that O(priority) raises.
    type: list
    elements: str
    default: [ksoftirqd, rcuc, ktimers]
  state:
    description:
      - V(present) moves and raises as asked; V(absent) puts back everything O(owner) recorded.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Name of the record; required with O(move_to), O(priority) or O(state=absent).
    type: str
  state_dir:
    description:
      - Directory that holds the records.
    type: path
    default: /var/lib/lowlatency-tuning
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
    details: Predicts the moves and priorities; writes neither the threads nor the record.
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
- name: Kernel threads off CPUs 2-3, ksoftirqd/rcuc/ktimers there at FIFO 11
  lowlatency.tuning.process_affinity:
    cpus: "2-3"
    move_to: "0-1"
    priority: 11
    owner: kernel-kthreads
  register: __kernel_kthreads

- name: Put them back
  lowlatency.tuning.process_affinity:
    state: absent
    owner: kernel-kthreads

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
  description:
    - Kernel threads allowed on any of O(cpus) (after the moves); C(per_cpu) when bound to one CPU,
      C(refused) when the kernel does not let them move (C(PF_NO_SETAFFINITY)).
  type: list
  elements: dict
  returned: always
  sample:
    - {pid: 24, tid: 24, comm: ksoftirqd/2, cpus: "2", per_cpu: true, refused: true,
       policy: fifo, rt_priority: 11, starttime: 12}
moved:
  description: Kernel threads moved onto O(move_to) (in check mode, would be) and the CPUs they had.
  type: list
  elements: dict
  returned: always
  sample:
    - {tid: 2, comm: kthreadd, cpus: "0-3"}
report:
  description:
    - Rows for the role's report. With O(state=present) the first counts the kernel threads still
      allowed on O(cpus) and names those the kernel refuses to move (expected is the count of
      refused ones, as every movable one should be gone); with O(priority) a second row gives the
      threads' policy and priority. With O(state=absent) one row says what was put back.
  type: list
  elements: dict
  returned: always
"""

import errno  # noqa: E402
import os  # noqa: E402
from functools import partial  # noqa: E402
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.lowlatency.tuning.plugins.module_utils.cpus import (  # noqa: E402
    CpuSetError,
    format_cpulist,
    parse_cpulist,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import (  # noqa: E402
    RoleState,
    StateError,
    report_entry,
)

PF_KTHREAD = 0x00200000
PF_NO_SETAFFINITY = 0x04000000
POLICY_NUMBERS = {"other": 0, "fifo": 1, "rr": 2, "batch": 3, "idle": 5}
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
        "starttime": int(rest[19]),
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
                    "refused": bool(task["flags"] & PF_NO_SETAFFINITY),
                    "policy": task["policy"],
                    "rt_priority": task["rt_priority"],
                    "starttime": task["starttime"],
                }
            )
        else:
            intruders.append(
                {key: task[key] for key in ("pid", "tid", "comm", "cpus", "cgroup", "policy")}
            )
    for unit, cpus in union.items():
        per_unit[unit]["cpus"] = format_cpulist(sorted(cpus)) if cpus else ""
    return {"units": per_unit, "intruders": intruders, "kernel_threads": kernel}


def errno_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno, "errno %s" % exc.errno) if exc.errno else "error"
    return "%s (%s)" % (name, exc.strerror or exc)


def set_affinity(tid: int, cpus: Set[int]) -> None:
    os.sched_setaffinity(tid, cpus)


def set_scheduler(tid: int, policy: str, priority: int) -> None:
    os.sched_setscheduler(tid, POLICY_NUMBERS[policy], os.sched_param(priority))


def names(threads: List[Dict[str, Any]]) -> str:
    return ", ".join(sorted({thread["comm"] for thread in threads})) or "none"


Threads = List[Dict[str, Any]]


class KernelThreads:
    """Moves and raises kernel threads, and puts them back, with a record per thread."""

    def __init__(
        self, module: AnsibleModule, state: Optional[RoleState], cpus: Set[int], move_to: Set[int]
    ) -> None:
        self.module = module
        self.state = state
        self.root = module.params["root"]
        self.check = module.check_mode
        self.watched = cpus
        self.move_to = move_to
        self.priority = module.params["priority"]
        self.wanted = module.params["priority_threads"]
        boot_id = read_text(os.path.join(self.root, "proc/sys/kernel/random/boot_id"))
        self.boot = (boot_id or "").strip()
        self.changed = False
        self.moved: Threads = []
        self.raised: Threads = []
        self.failures: List[str] = []

    def identity(self, tid: int) -> Optional[Tuple[str, int]]:
        stat = read_text(os.path.join(self.root, "proc", str(tid), "task", str(tid), "stat"))
        try:
            comm, fields = parse_stat(stat or "")
        except (ValueError, IndexError):
            return None
        return comm, fields["starttime"]

    def save(self) -> None:
        if not self.check:
            self.state.save()

    def drop_stale(self) -> None:
        """Records of an earlier boot: the kernel started those threads anew."""
        entries = self.state.entries("setting")
        for key in [key for key, entry in entries.items() if entry.get("boot") != self.boot]:
            self.state.forget("setting", key)
            self.changed = True
        self.save()

    def change(
        self, key: str, thread: Dict[str, Any], original: Any, goal: Any, write: Callable[[], None]
    ) -> bool:
        """Record, then write; False when the kernel refused (the new record is then undone)."""
        self.changed = True
        if self.check:
            return True
        new = self.state.get("setting", key) is None
        extra = {"comm": thread["comm"], "starttime": thread["starttime"], "boot": self.boot}
        self.state.record("setting", key, original, goal, **extra)
        self.state.save()
        try:
            write()
        except OSError as exc:
            if new:
                self.state.forget("setting", key)
                self.state.save()
            self.failures.append("%s: %s" % (thread["comm"], errno_text(exc)))
            return False
        return True

    def move(self, before: Threads) -> None:
        target = format_cpulist(sorted(self.move_to))
        for thread in before:
            if not self.move_to or thread["refused"]:
                continue
            tid = thread["tid"]
            key = "affinity/%d" % tid
            if self.change(
                key, thread, thread["cpus"], target, partial(set_affinity, tid, self.move_to)
            ):
                self.moved.append({name: thread[name] for name in ("tid", "comm", "cpus")})

    def chosen(self, thread: Dict[str, Any]) -> bool:
        return thread["per_cpu"] and thread["comm"].split("/")[0] in self.wanted

    def raise_priority(self, before: Threads) -> None:
        for thread in before:
            if not (self.priority and self.chosen(thread)):
                continue
            if thread["policy"] == "fifo" and thread["rt_priority"] == self.priority:
                continue
            if thread["policy"] not in POLICY_NUMBERS:
                self.failures.append(
                    "%s: policy %s left alone" % (thread["comm"], thread["policy"])
                )
                continue
            tid = thread["tid"]
            original = {"policy": thread["policy"], "rt_priority": thread["rt_priority"]}
            goal = {"policy": "fifo", "rt_priority": self.priority}
            if self.change(
                "sched/%d" % tid,
                thread,
                original,
                goal,
                partial(set_scheduler, tid, "fifo", self.priority),
            ):
                self.raised.append(thread)

    def predicted(self, before: Threads) -> Threads:
        """What check mode expects to read back after the moves and raises."""
        gone = {thread["tid"] for thread in self.moved}
        raised = {thread["tid"] for thread in self.raised}
        after = [dict(thread) for thread in before if thread["tid"] not in gone]
        for thread in after:
            if thread["tid"] in raised:
                thread.update(policy="fifo", rt_priority=self.priority)
        return after

    def present(self) -> Dict[str, Any]:
        self.drop_stale()
        before = survey(self.root, [], self.watched)["kernel_threads"]
        self.move(before)
        self.raise_priority(before)
        if self.check:
            after = self.predicted(before)
        else:
            after = survey(self.root, [], self.watched)["kernel_threads"]
        report = [self.affinity_row(after)]
        if self.priority:
            report.append(self.priority_row(after))
        return {"kernel_threads": after, "moved": self.moved, "report": report}

    def affinity_row(self, after: Threads) -> Dict[str, Any]:
        refused = [thread for thread in after if thread["refused"]]
        movable = [thread for thread in after if not thread["refused"]]
        why = "the kernel refuses to move %d (PF_NO_SETAFFINITY: per-CPU threads, " % len(refused)
        why += "workqueue workers): %s" % names(refused)
        if not self.move_to:
            status = "skipped"
            why = "not asked to move them; %d movable: %s; %s" % (len(movable), names(movable), why)
        else:
            status = (
                "would_change"
                if self.check and self.moved
                else ("drifted" if movable else "applied")
            )
            done = "would move" if self.check else "moved"
            target = format_cpulist(sorted(self.move_to))
            why = "%s %d onto %s (%s); %s" % (done, len(self.moved), target, names(self.moved), why)
            if movable and not self.check:
                why += "; still movable there: %s" % names(movable)
        if self.failures:
            why += "; refused on write: %s" % "; ".join(self.failures)
        setting = "kernel threads allowed on CPUs %s" % format_cpulist(sorted(self.watched))
        return report_entry(setting, str(len(refused)), str(len(after)), status, reason=why)

    def priority_row(self, after: Threads) -> Dict[str, Any]:
        found = [thread for thread in after if self.chosen(thread)]
        seen = sorted({"%s %d" % (thread["policy"], thread["rt_priority"]) for thread in found})
        kinds = {thread["comm"].split("/")[0] for thread in found}
        missing = [name for name in self.wanted if name not in kinds]
        right = all(t["policy"] == "fifo" and t["rt_priority"] == self.priority for t in found)
        if not found:
            status = "skipped"
        elif self.check and self.raised:
            status = "would_change"
        else:
            status = "applied" if right else "drifted"
        done = "would raise" if self.check else "raised"
        why = "%s %d: %s; bound there: %s" % (
            done,
            len(self.raised),
            names(self.raised),
            names(found),
        )
        if missing:
            why += "; no %s thread on these CPUs (rcuc and ktimers are PREEMPT_RT's)" % "/".join(
                missing
            )
        cpus = format_cpulist(sorted(self.watched))
        setting = "kernel thread priority on CPUs %s (%s)" % (cpus, ", ".join(self.wanted))
        expected = "fifo %d" % self.priority
        return report_entry(setting, expected, ", ".join(seen) or None, status, reason=why)

    def absent(self) -> Dict[str, Any]:
        entries = self.state.entries("setting")
        restored: List[str] = []
        dropped: List[str] = []
        failures: List[str] = []
        for key in sorted(entries):
            entry = entries[key]
            kind, tid_text = key.split("/", 1)
            tid = int(tid_text)
            same = entry.get("boot") == self.boot and self.identity(tid) == (
                entry.get("comm"),
                entry.get("starttime"),
            )
            if not same:
                dropped.append(entry.get("comm", key))
                self.state.forget("setting", key)
                continue
            if not self.check:
                original = entry["original"]
                try:
                    if kind == "affinity":
                        set_affinity(tid, set(parse_cpulist(original)))
                    else:
                        set_scheduler(tid, original["policy"], original["rt_priority"])
                except OSError as exc:
                    if exc.errno != errno.ESRCH:
                        failures.append("%s: %s" % (entry.get("comm"), errno_text(exc)))
                        continue
                    dropped.append(entry.get("comm", key))
                    self.state.forget("setting", key)
                    continue
            restored.append(entry.get("comm", key))
            self.state.forget("setting", key)
        self.save()
        self.changed = bool(restored or dropped)
        if failures:
            status = "drifted"
        elif not (restored or dropped):
            status = "skipped"
        else:
            status = "would_change" if self.check else "restored"
        why = "%s %d: %s; %d gone or from an earlier boot (started anew): %s" % (
            "would put back" if self.check else "put back",
            len(restored),
            ", ".join(sorted(set(restored))) or "none",
            len(dropped),
            ", ".join(sorted(set(dropped))) or "none",
        )
        if failures:
            why += "; refused (the record is kept): %s" % "; ".join(failures)
        if not (restored or dropped or failures):
            why = "nothing recorded by %s" % self.state.owner
        row = report_entry(
            "kernel threads' affinity and priority",
            "as recorded",
            "%d put back" % len(restored),
            status,
            reason=why,
        )
        return {"kernel_threads": [], "moved": [], "report": [row]}


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "units": {"type": "list", "elements": "str", "default": []},
            "cpus": {"type": "str", "default": ""},
            "move_to": {"type": "str", "default": ""},
            "priority": {"type": "int", "default": 0},
            "priority_threads": {
                "type": "list",
                "elements": "str",
                "default": ["ksoftirqd", "rcuc", "ktimers"],
            },
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "owner": {"type": "str"},
            "state_dir": {"type": "path", "default": "/var/lib/lowlatency-tuning"},
            "root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        watched = set(parse_cpulist(params["cpus"], allow_empty=True))
    except CpuSetError as exc:
        module.fail_json(msg="cpus: %s" % exc)
    try:
        move_to = set(parse_cpulist(params["move_to"], allow_empty=True))
    except CpuSetError as exc:
        module.fail_json(msg="move_to: %s" % exc)
    if move_to & watched:
        module.fail_json(
            msg="move_to %s overlaps cpus %s: the threads would stay allowed there"
            % (params["move_to"], params["cpus"])
        )
    if not 0 <= params["priority"] <= 99:
        module.fail_json(msg="priority must be 0 (leave alone) to 99, got %d" % params["priority"])
    for unit in params["units"]:
        if not unit or "/" in unit:
            module.fail_json(msg="unit name %r is not valid" % (unit,))
    if not os.path.isdir(os.path.join(params["root"], "proc")):
        module.fail_json(msg="no proc directory under %s" % params["root"])
    changes = params["state"] == "absent" or move_to or params["priority"]
    if changes and not params["owner"]:
        module.fail_json(
            msg="owner is required to move kernel threads, raise them or put them back"
        )
    result = survey(params["root"], params["units"], watched)
    if not changes:
        # Reading only: the kernel threads allowed on cpus are still counted for the report.
        counted = KernelThreads(module, None, watched, move_to)
        report = [counted.affinity_row(result["kernel_threads"])] if watched else []
        module.exit_json(changed=False, moved=[], report=report, **result)
    try:
        state = RoleState(params["owner"], params["state_dir"])
        threads = KernelThreads(module, state, watched, move_to)
        result.update(threads.absent() if params["state"] == "absent" else threads.present())
    except StateError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=threads.changed, **result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
