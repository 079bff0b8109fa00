#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: irq_affinity
short_description: Pin a NIC's IRQs and RPS/XPS masks, keep other IRQs off chosen CPUs, undo it
version_added: 0.1.0
description:
  - Finds the IRQs of each interface in O(interfaces) from the MSI vectors of its device
    (C(/sys/class/net/IF/device/msi_irqs), or the PCI function above a virtio device) and
    names them from C(/proc/interrupts). Each one is pinned to O(cpus) through
    C(/proc/irq/N/smp_affinity_list).
  - Sets C(rps_cpus) of every receive queue to O(rps_cpus) and C(xps_cpus) of every transmit
    queue to O(xps_cpus), or spreads the online CPUs over the transmit queues.
  - With O(other_irqs=true), every other IRQ whose affinity reaches outside O(other_cpus) is
    moved onto O(other_cpus), and C(/proc/irq/default_smp_affinity) is set to them. An IRQ
    already inside O(other_cpus) is left where it is (irqbalance may keep moving it there).
  - The first time a file is changed, its original value is recorded in
    C(<state_dir>/<owner>.json); O(state=absent) writes the originals back.
  - An IRQ the kernel refuses to move (C(EIO) for managed and per-CPU IRQs) is reported with
    RV(report[].status=skipped) and the reason; it does not fail the task.
author:
  - lowlatency.tuning contributors (@lowlatency-tuning)
options:
  interfaces:
    description:
      - Network interfaces whose IRQs and queues are pinned. An interface the host does not
        have is reported as skipped.
    type: list
    elements: str
    default: []
  cpus:
    description:
      - CPUs (a cpulist) for the interfaces' IRQs. Required with O(interfaces) and O(state=present).
    type: str
  rps_cpus:
    description:
      - CPUs (a cpulist) for receive packet steering on every receive queue. An empty string
        turns RPS off (mask C(0)). Omitted, C(rps_cpus) is left as it is.
    type: str
  xps_cpus:
    description:
      - CPUs (a cpulist) for transmit packet steering on every transmit queue, or V(spread) to
        give each transmit queue its own share of the online CPUs. Omitted, C(xps_cpus) is left
        as it is.
    type: str
  other_irqs:
    description:
      - Also move every IRQ that does not belong to O(interfaces) onto O(other_cpus), and set
        C(/proc/irq/default_smp_affinity) to them.
    type: bool
    default: false
  other_cpus:
    description:
      - CPUs (a cpulist) for the other IRQs. Required with O(other_irqs=true).
    type: str
  state:
    description:
      - V(present) pins; V(absent) writes back every recorded original and drops the record.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Name of the record, normally the role name.
    type: str
    default: irq
  state_dir:
    description:
      - Directory that holds the records.
    type: path
    default: /var/lib/lowlatency-tuning
  root:
    description:
      - Directory that C(/proc) and C(/sys) are resolved under. Only for tests and chroots.
    type: path
    default: /
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Predicts what would change; writes neither the kernel files nor the record.
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - The kernel resets a NIC's IRQ affinity when the driver is reloaded or, for many drivers,
    when the link comes up. This module pins once; the irq role installs a unit that re-applies.
seealso:
  - module: lowlatency.tuning.setting
"""

EXAMPLES = r"""
- name: Pin eth1's queues to CPUs 0-1, RPS there too, XPS spread, other IRQs off 2-3
  lowlatency.tuning.irq_affinity:
    interfaces: [eth1]
    cpus: "0-1"
    rps_cpus: "0-1"
    xps_cpus: spread
    other_irqs: true
    other_cpus: "0-1"
  register: __irq_pinned

- name: Put every recorded affinity and mask back
  lowlatency.tuning.irq_affinity:
    state: absent
"""

RETURN = r"""
irqs:
  description: Every IRQ looked at, with where it was and where it is now.
  type: list
  elements: dict
  returned: always
  sample:
    - irq: 25
      name: virtio1-input.0
      interface: eth1
      queue: true
      before: "2"
      actual: "0-1"
      effective: "0"
diff:
  description: With C(--diff), each file that changes (or would), before and after.
  type: list
  elements: dict
  returned: when diff mode is on
  sample:
    - {before_header: /proc/irq/25/smp_affinity_list, before: "0-3\n", after: "0-1\n"}
report:
  description:
    - One record per file for the role's C(<role>_report) fact.
  type: list
  elements: dict
  returned: always
  contains:
    setting:
      description: The file's path.
      type: str
    expected:
      description: The CPUs (cpulist) or mask it should hold.
      type: str
    actual:
      description: What it holds after the run (C(null) when it is missing).
      type: str
    status:
      description:
        - V(applied) (read back in effect), V(would_change) (in check mode, the file differs),
          V(drifted) (written but the kernel reads back something else),
          V(skipped) (refused or missing, see the reason) or V(restored).
      type: str
    reason:
      description: Why, in words.
      type: str
    pending_reboot:
      description: Always V(false).
      type: bool
  sample:
    - setting: /proc/irq/25/smp_affinity_list
      expected: "0-1"
      actual: "0-1"
      status: applied
      reason: "eth1 queue IRQ virtio1-input.0"
      pending_reboot: false
"""

import errno  # noqa: E402
import os  # noqa: E402
from typing import Any, Dict, List, Optional, Set, Tuple  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.lowlatency.tuning.plugins.module_utils.cpus import (  # noqa: E402
    CpuSetError,
    cpus_to_mask,
    format_cpulist,
    parse_cpulist,
    parse_mask,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.irq import (  # noqa: E402
    all_irqs,
    interface_exists,
    interface_targets,
    irq_names,
    under,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import (  # noqa: E402
    RoleState,
    StateError,
    report_entry,
    text_diff,
)

DEFAULT_AFFINITY = "/proc/irq/default_smp_affinity"


def refusal(exc: OSError) -> str:
    if exc.errno == errno.EIO:
        return "the kernel refuses to move this IRQ: EIO (managed or per-CPU IRQ)"
    if exc.errno == errno.EINVAL:
        return "the kernel refuses these CPUs: EINVAL (none of them usable for this IRQ)"
    name = errno.errorcode.get(exc.errno or 0, "error")
    return "write refused: %s (%s)" % (name, exc.strerror or exc)


def parse_value(text: str, compare: str) -> Set[int]:
    if compare == "mask":
        return set(parse_mask(text))
    return set(parse_cpulist(text, allow_empty=True))


class Pinner:
    def __init__(self, module: AnsibleModule, state: RoleState) -> None:
        self.module = module
        self.state = state
        self.root = module.params["root"]
        self.check = module.check_mode
        self.changed = False
        self.report: List[Dict[str, Any]] = []
        self.diff: List[Dict[str, str]] = []
        self.irqs: List[Dict[str, Any]] = []

    def read(self, path: str) -> Optional[str]:
        try:
            with open(under(self.root, path), "r", encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            return None

    def write(self, path: str, value: str) -> None:
        fd = os.open(under(self.root, path), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, value.encode("utf-8"))
        finally:
            os.close(fd)

    def add(
        self,
        path: str,
        expected: str,
        status: str,
        reason: str,
        change: Tuple[Optional[str], Optional[str]] = (None, None),
    ) -> Dict[str, Any]:
        """Report one file; change is (before, after), predicted in check mode, for the diff."""
        before, after = change
        actual = before if status == "would_change" else after
        entry = report_entry(path, expected, actual, status, reason=reason)
        self.report.append(entry)
        if status in ("would_change", "restored", "drifted") or (before != after):
            self.changed = True
            if before != after:
                self.diff.append(text_diff(path, before, after))
        return entry

    def put(
        self, path: str, want: Set[int], compare: str, note: str, subset: bool = False
    ) -> Dict[str, Any]:
        """Make path hold want (or, with subset, any non-empty part of it)."""
        text = format_cpulist(sorted(want)) if compare == "cpulist" else cpus_to_mask(sorted(want))
        current = self.read(path)
        if current is None:
            return self.add(path, text, "skipped", "absent on this host: %s" % path)
        try:
            have = parse_value(current, compare)
        except CpuSetError:
            have = None
        if have is not None and (have == want or (subset and have and have <= want)):
            return self.add(path, text, "applied", note, (current, current))
        if self.check:
            if not os.access(under(self.root, path), os.W_OK):
                return self.add(
                    path, text, "skipped", "not writable: %s" % path, (current, current)
                )
            return self.add(path, text, "would_change", note, (current, text))
        return self.change(path, text, current, (want, compare, note))

    def change(self, path: str, text: str, current: str, goal: tuple) -> Dict[str, Any]:
        """Record first, so a crash after the write still leaves the original on the host."""
        want, compare, note = goal
        new_entry = self.state.get("setting", path) is None
        self.state.record("setting", path, current, text, compare=compare)
        self.state.save()
        try:
            self.write(path, text)
        except OSError as exc:
            if new_entry:
                self.state.forget("setting", path)
                self.state.save()
            return self.add(path, text, "skipped", refusal(exc), (current, current))
        after = self.read(path)
        try:
            ok = after is not None and parse_value(after, compare) == want
        except CpuSetError:
            ok = False
        if not ok:
            why = "wrote %r but the kernel reads back %r" % (text, after)
            return self.add(path, text, "drifted", why, (current, after))
        return self.add(path, text, "applied", note, (current, after))

    def pin_irq(self, irq: Dict[str, Any], want: Set[int], note: str, subset: bool) -> None:
        path = "/proc/irq/%d/smp_affinity_list" % irq["irq"]
        before = self.read(path)
        entry = self.put(path, want, "cpulist", note, subset=subset)
        effective = self.read("/proc/irq/%d/effective_affinity_list" % irq["irq"])
        self.irqs.append(
            {
                "irq": irq["irq"],
                "name": irq["name"],
                "interface": irq.get("interface", ""),
                "queue": bool(irq.get("queue")),
                "before": before,
                "actual": entry["actual"],
                "effective": effective,
            }
        )

    def present(self) -> None:
        params = self.module.params
        names = irq_names(self.root)
        nic_irqs: Set[int] = set()
        cpus = parse_cpulist(params["cpus"]) if params["interfaces"] else []
        online = parse_cpulist(self.read("/sys/devices/system/cpu/online") or "", allow_empty=True)
        rps = params["rps_cpus"]
        xps = params["xps_cpus"]
        for interface in params["interfaces"]:
            if not interface_exists(self.root, interface):
                self.add(
                    "/sys/class/net/%s" % interface,
                    format_cpulist(cpus),
                    "skipped",
                    "no interface %s on this host" % interface,
                )
                continue
            targets = interface_targets(
                self.root,
                interface,
                names,
                cpus=cpus,
                rps=None if rps is None else parse_cpulist(rps, allow_empty=True),
                xps=xps if xps in (None, "spread") else parse_cpulist(xps, allow_empty=True),
                online=online,
            )
            if not any(target.irq for target in targets):
                self.add(
                    "/sys/class/net/%s/device/msi_irqs" % interface,
                    format_cpulist(cpus),
                    "skipped",
                    "%s has no IRQs of its own (virtual device, or no MSI)" % interface,
                )
            for target in targets:
                if target.irq:
                    nic_irqs.add(target.irq["irq"])
                    irq = dict(target.irq, interface=interface)
                    self.pin_irq(irq, set(target.want), target.note, subset=False)
                else:
                    self.put(target.path, set(target.want), target.notation, target.note)
        if params["other_irqs"]:
            other = set(parse_cpulist(params["other_cpus"]))
            self.put(DEFAULT_AFFINITY, other, "mask", "IRQs requested from now on")
            for number in all_irqs(self.root):
                if number in nic_irqs:
                    continue
                irq = {"irq": number, "name": names.get(number, ""), "queue": False}
                self.pin_irq(irq, other, "IRQ %s" % irq["name"], subset=True)

    def absent(self) -> None:
        dirty = False
        for path in self.state.keys("setting"):
            if not (path.startswith("/proc/irq/") or path.startswith("/sys/class/net/")):
                continue
            entry = self.state.get("setting", path)
            original = entry["original"]
            compare = entry.get("compare", "cpulist")
            current = self.read(path)
            if current is None:
                self.add(
                    path,
                    original,
                    "skipped",
                    "gone since it was recorded (IRQ freed or renumbered): record dropped",
                )
                if not self.check:
                    self.state.forget("setting", path)
                    dirty = True
                continue
            try:
                differs = parse_value(current, compare) != parse_value(original, compare)
            except CpuSetError:
                differs = True
            if self.check:
                status = "would_change" if differs else "restored"
                self.add(path, original, status, "original written back", (current, original))
                continue
            status, reason = "restored", "original written back"
            try:
                if differs:
                    self.write(path, original)
            except OSError as exc:
                status, reason = "skipped", refusal(exc) + "; record dropped"
            self.state.forget("setting", path)
            dirty = True
            self.add(path, original, status, reason, (current, self.read(path)))
        if dirty:
            self.state.save()


def validate(module: AnsibleModule) -> None:
    params = module.params
    checks = [("cpus", False), ("other_cpus", False), ("rps_cpus", True)]
    if params["xps_cpus"] != "spread":
        checks.append(("xps_cpus", True))
    for name, allow_empty in checks:
        if params[name] is None:
            continue
        try:
            parse_cpulist(params[name], allow_empty=allow_empty)
        except CpuSetError as exc:
            module.fail_json(msg="%s: %s" % (name, exc))
    if params["state"] == "present":
        if params["interfaces"] and not params["cpus"]:
            module.fail_json(msg="cpus is required when interfaces are given")
        if params["other_irqs"] and not params["other_cpus"]:
            module.fail_json(msg="other_cpus is required with other_irqs=true")
    for interface in params["interfaces"]:
        if not interface or "/" in interface or interface in (".", ".."):
            module.fail_json(msg="interface name %r is not valid" % (interface,))


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "interfaces": {"type": "list", "elements": "str", "default": []},
            "cpus": {"type": "str"},
            "rps_cpus": {"type": "str"},
            "xps_cpus": {"type": "str"},
            "other_irqs": {"type": "bool", "default": False},
            "other_cpus": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "owner": {"type": "str", "default": "irq"},
            "state_dir": {"type": "path", "default": "/var/lib/lowlatency-tuning"},
            "root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    validate(module)
    try:
        state = RoleState(module.params["owner"], module.params["state_dir"])
        pinner = Pinner(module, state)
        if module.params["state"] == "present":
            pinner.present()
        else:
            pinner.absent()
    except (StateError, OSError) as exc:
        module.fail_json(msg=str(exc))
    result = {"irqs": pinner.irqs, "report": pinner.report}
    if module._diff:
        result["diff"] = pinner.diff
    module.exit_json(changed=pinner.changed, **result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
