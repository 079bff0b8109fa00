#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: os_latency
short_description: Measure the OS latency of CPUs with oslat or cyclictest, and hwlatdetect
version_added: 0.1.0
description:
  - Runs one measuring thread on each CPU of O(cpus), all in one run of the tool for
    O(duration) seconds. C(oslat) busy-loops and times the gaps between two reads of the time
    stamp counter; C(cyclictest) times timer wake-ups. Both from rt-tests 2.x, read from their
    C(--json) output. Returns per CPU the maximum, minimum, average and the p50, p99 and p99.9
    of the tool's histogram (1 us buckets up to 1024 us; a percentile among the overflows is
    the maximum).
  - With O(hwlat), runs C(hwlatdetect) afterwards on the same CPUs for O(duration) seconds when
    the kernel lists the C(hwlat) tracer; it finds latency the OS does not cause (firmware, SMIs).
  - Judges each maximum against O(max_latency_us) and returns the breaches; it does not fail on
    them, so that the caller keeps the report first.
  - A missing tool or tracer, no CPUs and check mode give report rows with status V(skipped)
    and the reason.
author:
  - lowlatency.tuning contributors (@lowlatency-tuning)
options:
  cpus:
    description:
      - CPUs to measure, as a cpulist (V(2-5,8)). Empty gives a skipped row.
    type: str
    required: true
  tool:
    description:
      - The measuring tool.
    type: str
    choices: [oslat, cyclictest]
    default: oslat
  duration:
    description:
      - Seconds each tool runs, at least 1.
    type: int
    required: true
  max_latency_us:
    description:
      - Limit of each CPU's maximum (and of hwlatdetect's maximum) in microseconds; unset is
        not gated.
    type: float
  hwlat:
    description:
      - Also run C(hwlatdetect) on O(cpus) where the kernel has the C(hwlat) tracer.
    type: bool
    default: false
  main_cpu:
    description:
      - CPU of the tool's main (non-measuring) thread, not one of O(cpus). Unset is the tool's
        default.
    type: int
  rtprio:
    description:
      - SCHED_FIFO priority of the measuring threads, 1-99.
      - Unset, oslat runs under SCHED_OTHER and cyclictest at 95. A SCHED_FIFO busy loop is
        stopped by RT throttling (kernel.sched_rt_runtime_us, 50 ms of every second by default)
        and oslat then reports that pause as its maximum.
    type: int
  label:
    description:
      - Part of each report row's setting, C(os_latency:<label>:<tool>:cpu<N>), for example
        V(before) or V(after).
    type: str
    default: ""
  missing_hint:
    description:
      - Added to the reason of a row skipped because the tool is not installed (for example why
        installing it failed).
    type: str
    default: ""
  sysfs_root:
    description:
      - Directory under which C(sys/kernel/tracing) is read for the tracer list. For tests on a
        fake tree.
    type: path
    default: /
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Runs nothing; the rows say skipped (check mode).
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Needs root (SCHED_FIFO, memory locking, the tracer). The measuring threads busy-loop or wake
    up on each CPU of O(cpus) for O(duration) seconds; hwlatdetect keeps interrupts off for half
    of each second.
requirements:
  - rt-tests 2.x (C(oslat), C(cyclictest), C(hwlatdetect))
seealso:
  - module: lowlatency.tuning.cpu_topology
"""

EXAMPLES = r"""
- name: Measure the isolated CPUs for 10 seconds, gated at 50 us
  lowlatency.tuning.os_latency:
    cpus: "{{ cpu_layout_result['isolated'] }}"
    main_cpu: 0
    duration: 10
    max_latency_us: 50
    hwlat: true
    label: after
  register: __os_latency

- name: Fail on a breach
  ansible.builtin.fail:
    msg: "{{ __os_latency.breaches }}"
  when: not __os_latency.passed
"""

RETURN = r"""
tool:
  description: The tool that measured (O(tool)).
  type: str
  returned: always
  sample: oslat
version:
  description: The tool's version from its JSON; null when it did not run.
  type: str
  returned: always
  sample: "2.40"
command:
  description: The measuring command line; empty when it did not run.
  type: list
  elements: str
  returned: always
cpus:
  description:
    - CPU number (as a string) -> C(cpu), C(max_us), C(min_us), C(avg_us), C(p50_us),
      C(p99_us), C(p999_us) (whole microseconds, the histogram bucket), C(samples),
      C(overflows) (samples above 1024 us) and C(histogram) (bucket us -> count, empty buckets
      left out). Empty when nothing ran.
  type: dict
  returned: always
  sample:
    "1":
      cpu: 1
      max_us: 53293.0
      min_us: 1.0
      avg_us: 1.002
      p50_us: 1.0
      p99_us: 1.0
      p999_us: 1.0
      samples: 4957433
      overflows: 21
      histogram: {"1": 4956000}
hwlat:
  description:
    - hwlatdetect's C(max_us) (null below its threshold), C(below_threshold), C(threshold_us),
      C(samples), C(exceeding) and C(cpus); null when it did not run.
  type: dict
  returned: always
breaches:
  description:
    - Each maximum above O(max_latency_us) as C(figure) (V(max_us) or V(hwlat_max_us)), C(cpu),
      C(value) and C(limit).
  type: list
  elements: dict
  returned: always
  sample: [{figure: max_us, cpu: 1, value: 53293.0, limit: 100.0}]
passed:
  description: No breach (also true when nothing was measured).
  type: bool
  returned: always
report:
  description:
    - Rows C({setting, expected, actual, status, reason, pending_reboot}), one per CPU and one
      for hwlatdetect. Status V(applied) within the limit (or not gated), V(drifted) above it,
      V(skipped) with the reason.
  type: list
  elements: dict
  returned: always
"""

import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from typing import Any, Dict, List, Tuple  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.lowlatency.tuning.plugins.module_utils.cpus import (  # noqa: E402
    CpuSetError,
    format_cpulist,
    parse_cpulist,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.os_latency import (  # noqa: E402
    BUCKETS,
    OsLatencyError,
    breaches,
    parse_cyclictest,
    parse_hwlatdetect,
    parse_oslat,
    summary,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import report_entry  # noqa: E402

# cyclictest sleeps between wake-ups, so RT throttling does not touch it; at a low
# priority it would time other real-time threads instead of the CPU.
CYCLICTEST_RTPRIO = 95
TRACER_LISTS = (
    "sys/kernel/tracing/available_tracers",
    "sys/kernel/debug/tracing/available_tracers",
)


def _command(binary: str, cpulist: str, params: Dict[str, Any], scratch: str) -> List[str]:
    tool = params["tool"]
    json_path = os.path.join(scratch, "result.json")
    hist_path = os.path.join(scratch, "hist")
    duration = str(params["duration"])
    rtprio = params["rtprio"]
    if tool == "oslat":
        argv = [binary, "--cpu-list", cpulist, "--duration", duration]
        argv += ["--rtprio", str(rtprio)] if rtprio is not None else []
        argv += ["--bucket-size", str(BUCKETS), "--zero-omit", "--quiet", "--json=" + json_path]
        if params["main_cpu"] is not None:
            argv += ["--cpu-main-thread", str(params["main_cpu"])]
        return argv
    argv = [binary, "--affinity", cpulist, "--threads", "--mlockall"]
    argv += ["--priority", str(CYCLICTEST_RTPRIO if rtprio is None else rtprio)]
    argv += ["--interval", "1000", "--duration", duration, "--histogram", str(BUCKETS)]
    argv += ["--histfile=" + hist_path, "--quiet", "--json=" + json_path]
    if params["main_cpu"] is not None:
        argv += ["--mainaffinity", str(params["main_cpu"])]
    return argv


def _hwlat_tracer(root: str) -> Tuple[bool, str]:
    """(listed, where or why not): whether the kernel lists the hwlat tracer."""
    for relative in TRACER_LISTS:
        path = os.path.join(root, relative)
        try:
            with open(path) as handle:
                tracers = handle.read().split()
        except OSError:
            continue
        if "hwlat" in tracers:
            return True, "/" + relative
        return False, "the kernel has no hwlat tracer (/%s lists %s)" % (
            relative,
            " ".join(tracers) or "none",
        )
    return (
        False,
        "no tracer list at /%s or /%s (tracefs not mounted, or no ftrace in this kernel)"
        % TRACER_LISTS,
    )


class Measurement:
    def __init__(self, module: AnsibleModule, cpus: List[int]) -> None:
        self.module = module
        self.params = module.params
        self.cpus = cpus
        self.cpulist = format_cpulist(cpus)
        self.wrapper: List[str] = []
        self.tool = self.params["tool"]
        label = self.params["label"]
        self.prefix = "os_latency:" + (label + ":" if label else "")
        limit = self.params["max_latency_us"]
        self.expected = (
            "max <= %s us" % ("%g" % limit) if limit is not None else "measured, not gated"
        )
        self.result = {
            "changed": False,
            "tool": self.tool,
            "version": None,
            "command": [],
            "cpus": {},
            "hwlat": None,
            "breaches": [],
            "passed": True,
            "report": [],
        }

    def skip(self, what: str, reason: str) -> None:
        self.result["report"].append(
            report_entry(self.prefix + what, self.expected, None, "skipped", reason=reason)
        )

    def tool_row(self) -> str:
        return "%s:cpus %s" % (self.tool, self.cpulist or "-")

    def run(self) -> Dict[str, Any]:
        if not self.cpus:
            self.skip(self.tool_row(), "no CPUs to measure (the layout isolates none)")
            return self.result
        if self.module.check_mode:
            self.skip(self.tool_row(), "check mode runs no measurement")
            if self.params["hwlat"]:
                self.skip("hwlat", "check mode runs no measurement")
            return self.result
        binary = self.module.get_bin_path(self.tool)
        if binary is None:
            hint = self.params["missing_hint"]
            self.skip(
                self.tool_row(),
                "%s is not installed (rt-tests)%s" % (self.tool, "; " + hint if hint else ""),
            )
        else:
            self.measure(binary)
        self.judge()
        if self.params["hwlat"]:
            self.measure_hwlat()
            self.judge_hwlat()
        return self.result

    def _run(self, argv: List[str], what: str, ok: Tuple[int, ...] = (0,)) -> str:
        rc, out, err = self.module.run_command(argv)
        if rc not in ok:
            last = (err or out).strip().splitlines()[-3:]
            self.module.fail_json(
                msg="%s exited %d: %s" % (what, rc, " | ".join(last)), cmd=argv, **self.result
            )
        return out

    def outside_fence(self) -> List[str]:
        """A prefix that runs the tool where it may use the CPUs it measures.

        A host whose services are pinned (service_pinning's fence) runs this module in a
        slice, and with a CPU affinity, that leave out the isolated CPUs: oslat would
        then start no thread there and report nothing. systemd-run starts the tool in a
        slice of its own, outside the fence, with the affinity it needs.
        """
        needed = set(self.cpus)
        if self.params["main_cpu"] is not None:
            needed.add(self.params["main_cpu"])
        if needed <= os.sched_getaffinity(0):
            return []
        systemd_run = self.module.get_bin_path("systemd-run")
        if systemd_run is None or not os.path.isdir("/run/systemd/system"):
            return []
        return [
            systemd_run,
            "--quiet",
            "--wait",
            "--pipe",
            "--collect",
            "--slice=lowlatency_measure.slice",
            "--property=CPUAffinity=" + format_cpulist(sorted(needed)),
        ]

    def measure(self, binary: str) -> None:
        scratch = tempfile.mkdtemp(prefix="lowlatency-os-latency.")
        try:
            self.wrapper = self.outside_fence()
            argv = self.wrapper + _command(binary, self.cpulist, self.params, scratch)
            self.result["command"] = argv
            self._run(argv, self.tool)
            try:
                with open(os.path.join(scratch, "result.json")) as handle:
                    data = json.load(handle)
                figures = parse_oslat(data) if self.tool == "oslat" else parse_cyclictest(data)
            except (OSError, ValueError) as exc:
                self.module.fail_json(
                    msg="cannot read %s's JSON: %s" % (self.tool, exc), cmd=argv, **self.result
                )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.result["version"] = data.get("rt_test_version:", data.get("rt_test_version"))
        self.result["cpus"] = {str(cpu): figures[cpu] for cpu in sorted(figures)}

    def measure_hwlat(self) -> None:
        listed, where = _hwlat_tracer(self.params["sysfs_root"])
        if not listed:
            self.skip("hwlat", where)
            return
        binary = self.module.get_bin_path("hwlatdetect")
        if binary is None:
            hint = self.params["missing_hint"]
            self.skip(
                "hwlat", "hwlatdetect is not installed (rt-tests)%s" % ("; " + hint if hint else "")
            )
            return
        argv = [binary, "--duration", str(self.params["duration"]), "--cpu-list", self.cpulist]
        # hwlatdetect exits 1 when its maximum is above its threshold: a figure, not an error.
        out = self._run(argv, "hwlatdetect", ok=(0, 1))
        try:
            self.result["hwlat"] = dict(parse_hwlatdetect(out), cpus=self.cpulist)
        except OsLatencyError as exc:
            self.module.fail_json(msg=str(exc), cmd=argv, stdout=out, **self.result)

    def judge(self) -> None:
        limit = self.params["max_latency_us"]
        found = breaches({int(k): v for k, v in self.result["cpus"].items()}, None, limit)
        self.result["breaches"] = found
        self.result["passed"] = not found
        over = {(b["figure"], b["cpu"]) for b in found}
        for key, figures in self.result["cpus"].items():
            breached = ("max_us", figures["cpu"]) in over
            reason = "%s %d s" % (self.tool, self.params["duration"])
            if breached:
                reason = "max %g us above the limit of %g us; %s" % (
                    figures["max_us"],
                    limit,
                    reason,
                )
            status = "drifted" if breached else "applied"
            row = report_entry(
                "%s%s:cpu%s" % (self.prefix, self.tool, key),
                self.expected,
                summary(figures),
                status,
                reason=reason,
            )
            self.result["report"].append(row)
        allowed = os.sched_getaffinity(0)
        for cpu in self.cpus if self.result["command"] else []:
            if str(cpu) in self.result["cpus"]:
                continue
            reason = "%s gave no figures for CPU %d" % (self.tool, cpu)
            if cpu not in allowed and not self.wrapper:
                reason += " (this process may not run there: cgroup cpuset or affinity)"
            self.skip("%s:cpu%d" % (self.tool, cpu), reason)

    def judge_hwlat(self) -> None:
        hwlat = self.result["hwlat"]
        if hwlat is None:
            return
        limit = self.params["max_latency_us"]
        found = breaches({}, hwlat, limit)
        self.result["breaches"] += found
        self.result["passed"] = not self.result["breaches"]
        if hwlat["below_threshold"]:
            threshold = "%g us" % hwlat["threshold_us"] if hwlat["threshold_us"] else "its"
            actual = "max below the %s threshold" % threshold
        else:
            actual = "max %g us" % hwlat["max_us"]
        actual += ", %s samples over the threshold" % hwlat["exceeding"]
        reason = "hwlatdetect %d s on CPUs %s" % (self.params["duration"], self.cpulist)
        if found:
            reason = "max %g us above the limit of %g us; %s" % (hwlat["max_us"], limit, reason)
        status = "drifted" if found else "applied"
        self.result["report"].append(
            report_entry(self.prefix + "hwlat", self.expected, actual, status, reason=reason)
        )


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "cpus": {"type": "str", "required": True},
            "tool": {"type": "str", "choices": ["oslat", "cyclictest"], "default": "oslat"},
            "duration": {"type": "int", "required": True},
            "max_latency_us": {"type": "float"},
            "hwlat": {"type": "bool", "default": False},
            "main_cpu": {"type": "int"},
            "rtprio": {"type": "int"},
            "label": {"type": "str", "default": ""},
            "missing_hint": {"type": "str", "default": ""},
            "sysfs_root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        cpus = parse_cpulist(params["cpus"], allow_empty=True)
    except CpuSetError as exc:
        module.fail_json(msg="cpus: %s" % exc)
    problems = []
    if params["duration"] < 1:
        problems.append("duration must be at least 1 second (got %d)" % params["duration"])
    if params["max_latency_us"] is not None and params["max_latency_us"] <= 0:
        problems.append("max_latency_us must be above 0 (got %g)" % params["max_latency_us"])
    if params["rtprio"] is not None and not 1 <= params["rtprio"] <= 99:
        problems.append("rtprio must be 1-99 (got %d)" % params["rtprio"])
    if params["main_cpu"] is not None and params["main_cpu"] in cpus:
        problems.append(
            "main_cpu %d is one of the measured cpus %s" % (params["main_cpu"], params["cpus"])
        )
    if problems:
        module.fail_json(msg="; ".join(problems))
    module.exit_json(**Measurement(module, cpus).run())


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
