#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: file_record
short_description: Record a file's original content before a role changes it, and put it back
version_added: 0.1.0
description:
  - Run with O(state=present) before a role templates, replaces or edits a file (a
    systemd drop-in, C(/etc/default/grub), a udev rule). The first time, it stores a copy
    of the file (content, mode, owner and group) under C(<state_dir>/files/<owner>/), or
    records that the file did not exist. Later runs keep that first copy.
  - With O(state=absent) it puts the original content, mode, owner and group back, or
    deletes the file if it did not exist before, and drops the record.
  - The entry lives in the same C(<state_dir>/<owner>.json) record as the
    M(lowlatency.tuning.setting) entries of that owner.
author:
  - lowlatency.tuning contributors (@lowlatency-tuning)
options:
  path:
    description:
      - Absolute path of the file the role is about to change.
    type: path
    required: true
  owner:
    description:
      - Name of the record, normally the role name.
    type: str
    required: true
  state:
    description:
      - V(present) records the original (once).
      - V(absent) restores it and drops the record. With nothing recorded the file is left alone.
    type: str
    choices: [present, absent]
    default: present
  state_dir:
    description:
      - Directory that holds the records and the copies.
    type: path
    default: /var/lib/lowlatency-tuning
  reason:
    description:
      - Why the file is changed; copied into the report.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Predicts the change; neither the record nor the file is written.
  diff_mode:
    support: full
    details: On restore, the file's content before and after; when recording, the record.
  platform:
    platforms: posix
notes:
  - Only regular files are recorded; a directory or a special file fails the task.
    A symlink is followed and the file it points to is recorded.
seealso:
  - module: lowlatency.tuning.setting
  - module: lowlatency.tuning.state_info
"""

EXAMPLES = r"""
- name: Record the GRUB defaults before the kernel arguments change
  lowlatency.tuning.file_record:
    path: /etc/default/grub
    owner: kernel

- name: Record that the drop-in did not exist
  lowlatency.tuning.file_record:
    path: /etc/systemd/system/irqbalance.service.d/50-lowlatency.conf
    owner: irq

- name: Put the GRUB defaults back
  lowlatency.tuning.file_record:
    path: /etc/default/grub
    owner: kernel
    state: absent
"""

RETURN = r"""
status:
  description:
    - V(applied) the original is recorded (now or on an earlier run);
      V(would_change) check mode, the record or, on restore, the file would change;
      V(restored) the original is back (or the file deleted) and the record dropped;
      V(skipped) O(state=absent) found nothing recorded.
  type: str
  returned: always
  sample: applied
diff:
  description: With C(--diff), the file's content before and after a restore, or the record.
  type: dict
  returned: when diff mode is on
reason:
  description: What happened, in words.
  type: str
  returned: always
  sample: "restored /etc/default/grub from the copy taken on 2026-01-01T00:00:00Z"
report:
  description:
    - One record for the role's C(<role>_report) fact. Content is shown as C(sha256:<hex>)
      or C(absent).
  type: dict
  returned: always
  contains:
    setting:
      description: The file's path.
      type: str
    expected:
      description: The original content's checksum on restore; the recorded one otherwise.
      type: str
    actual:
      description: The file's checksum after the run, or C(absent).
      type: str
    status:
      description: As RV(status).
      type: str
    reason:
      description: As RV(reason), or the O(reason) option.
      type: str
    pending_reboot:
      description: Always V(false).
      type: bool
  sample:
    setting: /etc/default/grub
    expected: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    actual: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    status: restored
    reason: ""
    pending_reboot: false
"""

import contextlib  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402
from typing import Any, Dict, Optional  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import (  # noqa: E402
    RoleState,
    StateError,
    atomic_write,
    report_entry,
    text_diff,
)


def checksum(path: str) -> Optional[str]:
    """'sha256:<hex>' of a regular file, None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            return "sha256:" + hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return None


def content(path: Optional[str]) -> Optional[str]:
    """A file's text for a diff, None when it does not exist."""
    try:
        with open(path or "", "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def shown(digest: Optional[str]) -> str:
    return digest if digest else "absent"


def copy_name(path: str) -> str:
    digest = hashlib.sha256(path.encode("utf-8")).hexdigest()[:16]
    return "%s-%s" % (digest, os.path.basename(path) or "file")


class FileRecord:
    def __init__(self, module: AnsibleModule) -> None:
        params = module.params
        self.module = module
        self.path = os.path.normpath(params["path"])
        self.owner = params["owner"]
        self.note = params["reason"] or ""
        self.copy_dir = os.path.join(params["state_dir"], "files", self.owner)
        self.result: Dict[str, Any] = {
            "changed": False,
            "reason": "",
        }

    def finish(self, expected: Optional[str], status: str) -> Dict[str, Any]:
        result = self.result
        result["status"] = status
        result["reason"] = result["reason"] or self.note
        result["report"] = report_entry(
            self.path, shown(expected), shown(checksum(self.path)), status, reason=result["reason"]
        )
        return result

    def stat_regular(self) -> Optional[os.stat_result]:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            self.module.fail_json(
                msg="%s is not a regular file; only regular files can be recorded" % self.path
            )
        return info

    def present(self, state: RoleState) -> Dict[str, Any]:
        result = self.result
        entry = state.get("file", self.path)
        if entry:
            original = entry["original"]
            result["reason"] = "recorded on %s" % entry.get("recorded", "an earlier run")
            return self.finish(original.get("sha256"), "applied")
        info = self.stat_regular()
        result["changed"] = True
        if info is None:
            original: Dict[str, Any] = {"exists": False}
            result["reason"] = "%s does not exist: restoring will delete it" % self.path
        else:
            copy = os.path.join(self.copy_dir, copy_name(self.path))
            with open(self.path, "rb") as handle:
                content = handle.read()
            original = {
                "exists": True,
                "copy": copy,
                "sha256": "sha256:" + hashlib.sha256(content).hexdigest(),
                "mode": "%04o" % stat.S_IMODE(info.st_mode),
                "uid": info.st_uid,
                "gid": info.st_gid,
            }
            result["reason"] = "original of %s recorded" % self.path
            if not self.module.check_mode:
                os.makedirs(self.copy_dir, mode=0o700, exist_ok=True)
                atomic_write(copy, content, 0o600)
        if self.module._diff:
            result["diff"] = text_diff(state.path, None, "%s: %s" % (self.path, result["reason"]))
        if self.module.check_mode:
            return self.finish(original.get("sha256"), "would_change")
        state.record("file", self.path, original, None)
        state.save()
        return self.finish(original.get("sha256"), "applied")

    def absent(self, state: RoleState) -> Dict[str, Any]:
        result = self.result
        entry = state.get("file", self.path)
        if entry is None:
            result["reason"] = "nothing recorded for %s by %s: left as it is" % (
                self.path,
                self.owner,
            )
            return self.finish(checksum(self.path), "skipped")
        original = entry["original"]
        result["changed"] = True
        differs = checksum(self.path) != original.get("sha256")
        if self.module._diff:
            result["diff"] = text_diff(self.path, content(self.path), content(original.get("copy")))
        if original["exists"]:
            copy = original["copy"]
            if not os.path.isfile(copy):
                self.module.fail_json(
                    msg="the copy of %s recorded by %s is missing (%s); the record is kept"
                    % (self.path, self.owner, copy)
                )
            result["reason"] = "restored %s from the copy taken on %s" % (
                self.path,
                entry.get("recorded"),
            )
            if not self.module.check_mode:
                self.restore_copy(original)
        else:
            result["reason"] = "%s did not exist before: deleted" % self.path
            if not self.module.check_mode and os.path.lexists(self.path):
                os.unlink(self.path)
        if not self.module.check_mode:
            if original.get("copy") and os.path.exists(original["copy"]):
                os.unlink(original["copy"])
            # Leave no empty copy directories behind: state_dir is as before the role ran.
            # Not empty (other owners' copies) or never made: OSError, left alone.
            for directory in (self.copy_dir, os.path.dirname(self.copy_dir)):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            state.forget("file", self.path)
            state.save()
        status = "would_change" if self.module.check_mode and differs else "restored"
        return self.finish(original.get("sha256"), status)

    def restore_copy(self, original: Dict[str, Any]) -> None:
        with open(original["copy"], "rb") as handle:
            content = handle.read()
        if checksum(self.path) != original["sha256"]:
            directory = os.path.dirname(self.path)
            os.makedirs(directory, exist_ok=True)
            atomic_write(self.path, content, int(original["mode"], 8))
        os.chmod(self.path, int(original["mode"], 8))
        info = os.stat(self.path)
        if (info.st_uid, info.st_gid) != (original["uid"], original["gid"]):
            os.chown(self.path, original["uid"], original["gid"])


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "owner": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "state_dir": {"type": "path", "default": "/var/lib/lowlatency-tuning"},
            "reason": {"type": "str"},
        },
        supports_check_mode=True,
    )
    if not os.path.isabs(module.params["path"]):
        module.fail_json(msg="path %r must be absolute" % module.params["path"])
    record = FileRecord(module)
    try:
        state = RoleState(module.params["owner"], module.params["state_dir"])
        result = (
            record.present(state) if module.params["state"] == "present" else record.absent(state)
        )
    except (StateError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
