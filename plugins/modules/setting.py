#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: setting
short_description: Set kernel runtime knobs under /sys or /proc/sys, with a record to undo them
version_added: 0.1.0
description:
  - Writes one value to a file under C(/sys/) or C(/proc/sys/) and reads it back; with O(paths),
    the same value to many such files in one call (for example every workqueue's cpumask).
  - The first time the value is changed, the value the host had before is recorded in
    C(<state_dir>/<owner>.json). Later runs never replace that original, so O(state=absent)
    always restores what was there before the collection touched the knob.
  - A knob the host does not have, or a write the kernel refuses (read-only sysfs in a
    container, C(EINVAL) from a VM without the feature), is not a failure. The module
    returns RV(status=skipped) with the reason, and the role goes on.
  - Every call returns a RV(report) record for the role's C(<role>_report) fact.
author:
  - lowlatency.tuning contributors (@lowlatency-tuning)
options:
  path:
    description:
      - Absolute path of the knob. Must be under C(/sys/) or C(/proc/sys/).
      - One of O(path) and O(paths) is required.
    type: path
  paths:
    description:
      - Several knobs set to the same O(value) (or restored) in one call, each recorded apart.
      - An entry with C(*), C(?) or C([) is a pattern, expanded on the host (sorted); a pattern
        that matches nothing adds nothing, a plain path that does not exist is skipped.
      - The result holds one RV(results) entry per knob instead of the single-knob keys.
    type: list
    elements: path
  value:
    description:
      - Value to write. Required with O(state=present).
      - With O(compare=bracketed) this is the word to select, for example C(never).
    type: str
  state:
    description:
      - V(present) writes O(value) (recording the original first).
      - V(absent) writes back the recorded original and drops the record. With nothing
        recorded the knob is left as it is.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Name of the record to keep the original in, normally the role name.
    type: str
    required: true
  compare:
    description:
      - How to compare the value read back with O(value).
      - V(exact) compares the text with runs of whitespace collapsed (so C(4096 87380) matches
        a tab-separated C(/proc/sys) value).
      - V(bracketed) reads the selected word of a C(always madvise [never]) style file.
      - V(cpulist) compares CPU sets given as cpulists (C(0-3) equals C(0,1,2,3)).
      - V(mask) compares CPU sets given as hex masks (C(0f) equals C(00000000,0000000f)).
      - V(int) compares integers.
    type: str
    choices: [exact, bracketed, cpulist, mask, int]
    default: exact
  state_dir:
    description:
      - Directory that holds the records.
    type: path
    default: /var/lib/lowlatency-tuning
  reason:
    description:
      - Why this knob is set; copied into the report.
    type: str
  sysfs_root:
    description:
      - Directory that O(path) is resolved under. Only for tests and chroots; the
        record still uses O(path) as given.
    type: path
    default: /
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Predicts whether the value would change; writes neither the knob nor the record.
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - The record files are mode C(0600) and written through a rename, so a crash leaves the old
    or the new record, never half of one.
seealso:
  - module: lowlatency.tuning.file_record
  - module: lowlatency.tuning.state_info
"""

EXAMPLES = r"""
- name: Disable automatic NUMA balancing
  lowlatency.tuning.setting:
    path: /proc/sys/kernel/numa_balancing
    value: "0"
    compare: int
    owner: kernel
    reason: page migration stalls the service
  register: __kernel_numa_balancing

- name: Transparent hugepages never
  lowlatency.tuning.setting:
    path: /sys/kernel/mm/transparent_hugepage/enabled
    value: never
    compare: bracketed
    owner: hugepages

- name: Every unbound workqueue on CPUs 0-1, one call
  lowlatency.tuning.setting:
    paths:
      - /sys/devices/virtual/workqueue/cpumask
      - /sys/devices/virtual/workqueue/*/cpumask
    value: "3"
    compare: mask
    owner: kernel

- name: Put the original value back and forget it
  lowlatency.tuning.setting:
    path: /proc/sys/kernel/numa_balancing
    owner: kernel
    state: absent
"""

RETURN = r"""
results:
  description:
    - With O(paths), one entry per knob with RV(status), RV(reason), RV(original), RV(report),
      C(changed) and its C(path). The single-knob keys below are then not returned.
  type: list
  elements: dict
  returned: with O(paths)
status:
  description:
    - V(applied) the knob holds the value, read back after the write;
      V(would_change) check mode, the knob differs (see RV(diff) with C(--diff));
      V(drifted) the kernel reads back something else than was written;
      V(skipped) the host does not have the knob, refused the write, or O(state=absent)
      found nothing recorded (see RV(reason));
      V(restored) the original is back and the record dropped.
  type: str
  returned: always
  sample: applied
reason:
  description: Why the status is what it is; empty when there is nothing to add.
  type: str
  returned: always
  sample: "absent on this host: /sys/kernel/mm/ksm/run"
diff:
  description: With C(--diff), the value before and after (predicted in check mode).
  type: dict
  returned: when diff mode is on
original:
  description: The value recorded as the original (or the value found, when nothing is recorded).
  type: str
  returned: always
  sample: "1"
report:
  description:
    - One record for the role's C(<role>_report) fact; its status is RV(status).
  type: dict
  returned: always
  contains:
    setting:
      description: The knob's path.
      type: str
    expected:
      description: What the knob should hold after the run (O(value), or the original on restore).
      type: str
    actual:
      description: The value read back (C(null) when the knob is absent or unreadable).
      type: str
    status:
      description: As RV(status).
      type: str
    reason:
      description: As RV(reason), or the O(reason) option.
      type: str
    pending_reboot:
      description: Always V(false); a runtime knob is live as soon as it is written.
      type: bool
  sample:
    setting: /proc/sys/kernel/numa_balancing
    expected: "0"
    actual: "0"
    status: applied
    reason: page migration stalls the service
    pending_reboot: false
"""

import errno  # noqa: E402
import glob  # noqa: E402
import os  # noqa: E402
from typing import Any, Dict, List, Optional, Tuple  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.lowlatency.tuning.plugins.module_utils.cpus import (  # noqa: E402
    CpuSetError,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.knob import (  # noqa: E402
    normalize,
    same,
    selected_word,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import (  # noqa: E402
    RoleState,
    StateError,
    report_entry,
    text_diff,
)

ALLOWED_PREFIXES = ("/sys/", "/proc/sys/")


def writable_form(text: str, compare: str) -> str:
    """What to write to put back a value that was read from the knob."""
    if compare == "bracketed":
        return selected_word(text)
    return text.strip()


def errno_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno, "errno %s" % exc.errno) if exc.errno else "error"
    return "%s (%s)" % (name, exc.strerror or exc)


def read_knob(real_path: str) -> str:
    with open(real_path, "rb") as handle:
        return handle.read().decode("utf-8", "replace")


def write_knob(real_path: str, value: str) -> None:
    # No O_CREAT: a knob is never created. O_TRUNC is what a shell's `>` does;
    # sysfs and procfs ignore it, and it keeps test trees of plain files honest.
    fd = os.open(real_path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, value.encode("utf-8"))
    finally:
        os.close(fd)


class Knob:
    def __init__(self, module: AnsibleModule, path: str) -> None:
        params = module.params
        self.module = module
        self.path = os.path.normpath(path)
        self.owner = params["owner"]
        self.compare = params["compare"]
        self.note = params["reason"] or ""
        root = params["sysfs_root"]
        self.real_path = os.path.join(root, self.path.lstrip("/")) if root != "/" else self.path
        self.before: Optional[str] = None
        self.result: Dict[str, Any] = {
            "changed": False,
            "reason": "",
            "original": None,
        }
        self.expected: Optional[str] = None
        self.actual: Optional[str] = None

    def finish(self, status: str, reason: str = "") -> Dict[str, Any]:
        result = self.result
        result["status"] = status
        result["reason"] = reason or self.note
        result["report"] = report_entry(
            self.path, self.expected, self.actual, status, reason=result["reason"]
        )
        if self.module._diff:
            after = self.expected if status == "would_change" else self.actual
            result["diff"] = text_diff(self.path, self.before, after)
        return result

    def skip(self, reason: str) -> Dict[str, Any]:
        self.result["changed"] = False
        self.actual = self.before
        return self.finish("skipped", reason)

    def read(self) -> Tuple[Optional[str], Optional[str]]:
        """(value, None) or (None, why it cannot be read)."""
        if not os.path.exists(self.real_path):
            return None, "absent on this host: %s" % self.path
        try:
            return read_knob(self.real_path).strip(), None
        except OSError as exc:
            return None, "cannot read %s: %s" % (self.path, errno_text(exc))

    def write(self, value: str) -> Optional[str]:
        """None, or why the kernel refused the write."""
        try:
            write_knob(self.real_path, value)
        except OSError as exc:
            return "write refused: %s writing %r to %s" % (errno_text(exc), value, self.path)
        return None

    def present(self, state: RoleState) -> Dict[str, Any]:
        value = self.module.params["value"]
        result = self.result
        self.expected = value
        if self.compare != "exact":
            try:
                normalize(value, self.compare)
            except (CpuSetError, ValueError) as exc:
                self.module.fail_json(
                    msg="value %r is not valid for compare=%s: %s" % (value, self.compare, exc)
                )
        current, why = self.read()
        if current is None:
            return self.skip(why)
        self.before = self.actual = current
        entry = state.get("setting", self.path)
        original = entry["original"] if entry else writable_form(current, self.compare)
        result["original"] = original

        if same(current, value, self.compare):
            if entry and state.record("setting", self.path, original, value, compare=self.compare):
                result["changed"] = True
                if not self.module.check_mode:
                    state.save()
            return self.finish("applied")
        if self.module.check_mode:
            if not os.access(self.real_path, os.W_OK):
                return self.skip("not writable: %s" % self.path)
            result["changed"] = True
            return self.finish("would_change")
        return self.apply(state, entry, original, value)

    def apply(
        self, state: RoleState, entry: Optional[Dict[str, Any]], original: str, value: str
    ) -> Dict[str, Any]:
        """Record first, so a crash after the write still leaves the original on the host.

        A refused write leaves the record as it was before this call.
        """
        previous = dict(entry) if entry else None
        state.record("setting", self.path, original, value, compare=self.compare)
        state.save()
        refused = self.write(value)
        if refused:
            if previous is None:
                state.forget("setting", self.path)
            else:
                state.entries("setting")[self.path] = previous
            state.save()
            return self.skip(refused)
        self.result["changed"] = True
        after, why = self.read()
        self.actual = after
        if after is None or not same(after, value, self.compare):
            return self.finish(
                "drifted", why or "wrote %r but the kernel reads back %r" % (value, after)
            )
        return self.finish("applied")

    def absent(self, state: RoleState) -> Dict[str, Any]:
        result = self.result
        entry = state.get("setting", self.path)
        current, why = self.read()
        self.before = self.actual = current
        if entry is None:
            self.expected = current
            return self.finish(
                "skipped", "nothing recorded for %s by %s: left as it is" % (self.path, self.owner)
            )
        original = entry["original"]
        compare = entry.get("compare", self.compare)
        result["original"] = self.expected = original
        if current is None:
            return self.skip("%s; the record of the original (%r) is kept" % (why, original))
        result["changed"] = True
        if not same(current, original, compare):
            if self.module.check_mode:
                return self.finish("would_change")
            refused = self.write(original)
            if refused:
                result["changed"] = False
                return self.skip("%s; the record of the original is kept" % refused)
            after, why = self.read()
            self.actual = after
            if after is None or not same(after, original, compare):
                state.forget("setting", self.path)
                state.save()
                return self.finish(
                    "drifted", "wrote back %r but the kernel reads %r" % (original, after)
                )
        if not self.module.check_mode:
            state.forget("setting", self.path)
            state.save()
        return self.finish("restored")


def expand(paths: List[str], root: str) -> List[str]:
    """The knobs named by paths: patterns expanded under root, duplicates dropped, in order."""
    found: List[str] = []
    for given in paths:
        path = os.path.normpath(given)
        if any(char in path for char in "*?["):
            base = root.rstrip("/")
            matches = sorted(glob.glob(base + path)) if base else sorted(glob.glob(path))
            names = [match[len(base) :] if base else match for match in matches]
        else:
            names = [path]
        found.extend(name for name in names if name not in found)
    return found


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path"},
            "paths": {"type": "list", "elements": "path"},
            "value": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "owner": {"type": "str", "required": True},
            "compare": {
                "type": "str",
                "choices": ["exact", "bracketed", "cpulist", "mask", "int"],
                "default": "exact",
            },
            "state_dir": {"type": "path", "default": "/var/lib/lowlatency-tuning"},
            "reason": {"type": "str"},
            "sysfs_root": {"type": "path", "default": "/"},
        },
        required_if=[("state", "present", ("value",))],
        required_one_of=[("path", "paths")],
        mutually_exclusive=[("path", "paths")],
        supports_check_mode=True,
    )
    given = [module.params["path"]] if module.params["path"] else module.params["paths"]
    for path in given:
        if not os.path.normpath(path).startswith(ALLOWED_PREFIXES):
            module.fail_json(
                msg="path %r is not a kernel runtime knob: it must be under /sys/ or /proc/sys/ "
                "(use lowlatency.tuning.file_record before editing other files)" % path
            )
    present = module.params["state"] == "present"
    try:
        state = RoleState(module.params["owner"], module.params["state_dir"])
        if module.params["path"]:
            knob = Knob(module, module.params["path"])
            module.exit_json(**(knob.present(state) if present else knob.absent(state)))
        results = []
        for path in expand(given, module.params["sysfs_root"]):
            knob = Knob(module, path)
            results.append(dict(knob.present(state) if present else knob.absent(state), path=path))
    except StateError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=any(item["changed"] for item in results), results=results)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
