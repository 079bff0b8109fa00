#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nic_ethtool
short_description: Set a NIC's coalescing, rings, channels and offloads with ethtool, undo it
version_added: 0.1.0
description:
  - Reads the interface's coalescing, rings, channels and features with C(ethtool -c/-g/-l/-k),
    changes what differs with C(ethtool -C/-G/-L/-K) and reads each setting back. One call of
    the module handles every setting of one interface.
  - Each group that differs is written in one ethtool call (a NIC resets once for its rings);
    a setting that does not read back as asked is then tried alone, and when the driver keeps
    its value it is reported as V(skipped) with ethtool's answer (the netlink error text, or the
    C([fixed]) and C(n/a) marks of the read). It does not fail the task.
  - The first time a setting is changed its original value is recorded in
    C(<state_dir>/<owner>.json); O(state=absent) writes the originals back.
  - Changing channels or rings resets the NIC (its queues are rebuilt, traffic stops for a
    moment); the module warns when it does, and returns RV(reset).
author:
  - lowlatency.tuning contributors (@lowlatency-tuning)
options:
  interface:
    description:
      - The network interface. Required with O(state=present); with O(state=absent) only its
        records are restored, omitted every recorded interface.
    type: str
  coalesce:
    description:
      - C(ethtool -C) parameters as C(ethtool -c) names them (C(rx-usecs), C(tx-usecs),
        C(adaptive-rx), C(adaptive-tx), C(rx-frames), ...), as whole numbers, or booleans for
        the adaptive ones.
    type: dict
    default: {}
  rings:
    description:
      - C(ethtool -G) ring sizes (C(rx), C(tx), C(rx-mini), C(rx-jumbo)) as whole numbers.
    type: dict
    default: {}
  channels:
    description:
      - The number of queues. Set as C(combined) where the driver has combined channels, else
        as C(rx) and C(tx); capped at the driver's maximum (the report says so). Omitted, the
        channels are left as they are.
    type: int
  features:
    description:
      - C(ethtool -K) offloads by short (C(gro), C(lro), C(gso), C(tso), ...) or long name, true
        for on and false for off.
    type: dict
    default: {}
  state:
    description:
      - V(present) sets; V(absent) writes back every recorded original and drops the record.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Name of the record, normally the role name.
    type: str
    default: nic
  state_dir:
    description:
      - Directory that holds the records.
    type: path
    default: /var/lib/lowlatency-tuning
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only; a setting the read shows the driver cannot take is reported as skipped.
  diff_mode:
    support: full
  platform:
    platforms: posix
requirements:
  - the C(ethtool) command on the host (netlink or ioctl; both print what this module reads)
notes:
  - A driver rebind restores the driver's defaults; the nic role installs a unit that re-applies.
seealso:
  - module: lowlatency.tuning.irq_affinity
"""

EXAMPLES = r"""
- name: Coalescing off, two queues, LRO and GRO off on eth1
  lowlatency.tuning.nic_ethtool:
    interface: eth1
    coalesce: {adaptive-rx: false, adaptive-tx: false, rx-usecs: 0, tx-usecs: 0}
    rings: {rx: 512, tx: 512}
    channels: 2
    features: {lro: false, gro: false}

- name: Put every recorded setting back
  lowlatency.tuning.nic_ethtool:
    state: absent
"""

RETURN = r"""
reset:
  description: Channels or rings were changed, so the NIC rebuilt its queues.
  type: bool
  returned: always
report:
  description:
    - One record per setting for the role's C(<role>_report) fact.
  type: list
  elements: dict
  returned: always
  contains:
    setting:
      description:
        - C(ethtool:<interface>:<group>:<name>), the group one of coalesce, rings, channels,
          features.
      type: str
    expected:
      description: The value asked for (on/off or a number, as ethtool prints it).
      type: str
    actual:
      description: What ethtool reads back after the run.
      type: str
    status:
      description:
        - V(applied) (read back in effect), V(would_change) (check mode, the NIC differs),
          V(skipped) (the driver refused, or has no such setting; the reason holds its answer),
          V(drifted) (the NIC reads back something else than asked) or V(restored).
      type: str
    reason:
      description: Why, in words; for a refusal, ethtool's answer.
      type: str
    pending_reboot:
      description: Always V(false).
      type: bool
  sample:
    - setting: "ethtool:eth1:coalesce:adaptive-rx"
      expected: "off"
      actual: "n/a"
      status: skipped
      reason: "ethtool -C eth1 adaptive-rx off: netlink error: Operation not supported"
      pending_reboot: false
"""

import os  # noqa: E402
from typing import Any, Callable, Dict, List, Optional, Tuple  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.lowlatency.tuning.plugins.module_utils.ethtool import (  # noqa: E402
    ORDER,
    RESETS,
    Nic,
    apply_group,
    apply_nic,
    value_text,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import (  # noqa: E402
    RoleState,
    StateError,
    report_entry,
    text_diff,
)

PREFIX = "ethtool"


def record_key(interface: str, group: str, name: str) -> str:
    return ":".join((PREFIX, interface, group, name))


def checked(module: AnsibleModule) -> Dict[str, Dict[str, str]]:
    """The asked values as ethtool text, or a failure naming the option and value."""
    wants: Dict[str, Dict[str, str]] = {}
    problems: List[str] = []
    for group in ("coalesce", "rings", "features"):
        wants[group] = {}
        for name, value in (module.params[group] or {}).items():
            text = value_text(value)
            numeric = group == "rings" or (group == "coalesce" and not name.startswith("adaptive-"))
            ok = text.isdigit() if numeric else text in ("on", "off")
            if not ok:
                problems.append(
                    "%s.%s: %r is not %s"
                    % (group, name, value, "a whole number" if numeric else "true or false")
                )
            wants[group][name] = text
    channels = module.params["channels"]
    if channels is not None and channels < 1:
        problems.append("channels: %r is not a whole number of at least 1" % channels)
    if problems:
        module.fail_json(msg="; ".join(problems))
    return wants


class Tuner:
    def __init__(self, module: AnsibleModule, state: RoleState) -> None:
        self.module = module
        self.state = state
        self.check = module.check_mode
        self.ethtool = module.get_bin_path("ethtool") or "ethtool"
        self.report: List[Dict[str, Any]] = []
        self.diff: List[Dict[str, str]] = []
        self.changed = False
        self.reset = False

    def run(self, argv: List[str]) -> Tuple[int, str, str]:
        if not os.path.isabs(argv[0]):
            # Every setting is skipped with this answer: no ethtool is not an error.
            return 127, "", "%s: command not found (install the ethtool package)" % argv[0]
        return self.module.run_command(argv)

    def nic(self, interface: str) -> Nic:
        return Nic(interface, self.run, self.ethtool)

    def add(self, interface: str, rows: List[Dict[str, Any]], restoring: bool = False) -> None:
        for row in rows:
            key = record_key(interface, str(row["group"]), str(row["name"]))
            status = str(row["status"])
            reason = str(row["reason"])
            if restoring and status == "applied":
                status, reason = "restored", "original written back"
            self.report.append(
                report_entry(key, row["expected"], row["actual"], status, reason=reason)
            )
            # A restore drops the record, a change even where the value was already back.
            if row["changed"] or (status == "restored" and not self.check):
                self.changed = True
                self.reset = self.reset or (row["group"] in RESETS and not self.check)
                self.diff.append(text_diff(key, row["before"], row["expected"]))

    def remember(self, interface: str) -> Tuple[Callable[..., None], Callable[..., None]]:
        """Record an original before its write; drop it again when the driver kept it."""
        fresh = set()

        def on_change(group: str, name: str, before: Optional[str], want: str) -> None:
            key = record_key(interface, group, name)
            if self.state.get("setting", key) is None:
                fresh.add(key)
            self.state.record("setting", key, before, want)
            self.state.save()

        def on_refused(group: str, name: str) -> None:
            key = record_key(interface, group, name)
            if key in fresh:
                self.state.forget("setting", key)
                self.state.save()

        return on_change, on_refused

    def present(self, interface: str, wants: Dict[str, Dict[str, str]]) -> None:
        on_change, on_refused = self.remember(interface)
        rows = apply_nic(
            self.nic(interface),
            wants,
            self.module.params["channels"],
            check=self.check,
            on_change=on_change,
            on_refused=on_refused,
        )
        for group in RESETS:
            if any(row["changed"] for row in rows if row["group"] == group):
                self.module.warn(
                    "%s: changing its %s resets the NIC (its queues are rebuilt, traffic stops "
                    "for a moment)" % (interface, group)
                )
        self.add(interface, rows)

    def absent(self, only: Optional[str]) -> None:
        plan: Dict[str, Dict[str, Dict[str, str]]] = {}
        for key in self.state.keys("setting"):
            parts = key.split(":")
            if len(parts) != 4 or parts[0] != PREFIX or (only and parts[1] != only):
                continue
            original = self.state.get("setting", key)["original"]
            plan.setdefault(parts[1], {}).setdefault(parts[2], {})[parts[3]] = str(original)
        for interface, groups in sorted(plan.items()):
            nic = self.nic(interface)
            for group in ORDER:
                if group not in groups:
                    continue
                rows = apply_group(nic, group, groups[group], check=self.check, revert_along=True)
                self.add(interface, rows, restoring=True)
                if self.check:
                    continue
                for row in rows:
                    # What the driver or a missing interface kept back stays recorded.
                    if row["status"] == "applied":
                        self.state.forget("setting", record_key(interface, group, str(row["name"])))
                self.state.save()


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            interface=dict(type="str"),
            coalesce=dict(type="dict", default={}),
            rings=dict(type="dict", default={}),
            channels=dict(type="int"),
            features=dict(type="dict", default={}),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            owner=dict(type="str", default="nic"),
            state_dir=dict(type="path", default="/var/lib/lowlatency-tuning"),
        ),
        required_if=[("state", "present", ["interface"])],
        supports_check_mode=True,
    )
    wants = checked(module)
    try:
        state = RoleState(module.params["owner"], module.params["state_dir"])
        tuner = Tuner(module, state)
        if module.params["state"] == "present":
            tuner.present(module.params["interface"], wants)
        else:
            tuner.absent(module.params["interface"])
    except StateError as exc:
        module.fail_json(msg=str(exc))
    result: Dict[str, Any] = dict(changed=tuner.changed, reset=tuner.reset, report=tuner.report)
    if module._diff:
        result["diff"] = tuner.diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
