#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: state_info
short_description: List what the roles have recorded on the host for rollback
version_added: 0.1.0
description:
  - Reads the records kept by M(lowlatency.tuning.setting) and M(lowlatency.tuning.file_record)
    and returns them. A role's O(owner) rollback loops over RV(records) so that it restores
    everything it changed, even knobs its current variables no longer name.
author:
  - lowlatency.tuning contributors (@lowlatency-tuning)
options:
  owner:
    description:
      - Only this owner's record. Without it, every owner's record is returned.
    type: str
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
    details: Read-only.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: lowlatency.tuning.setting
  - module: lowlatency.tuning.file_record
"""

EXAMPLES = r"""
- name: Read what the kernel role recorded
  lowlatency.tuning.state_info:
    owner: kernel
  register: __kernel_recorded

- name: Restore every knob the kernel role changed
  lowlatency.tuning.setting:
    path: "{{ item }}"
    owner: kernel
    state: absent
  loop: "{{ __kernel_recorded.records.kernel.setting | list }}"
"""

RETURN = r"""
owners:
  description: Owners that have a record (only O(owner) when it is given and has one).
  type: list
  elements: str
  returned: always
  sample: [kernel, smt]
records:
  description:
    - Owner -> kind (V(setting), V(file)) -> path -> entry. With O(owner), that owner is
      always present (with empty kinds when it has recorded nothing). An entry holds
      C(original), C(expected), C(recorded) (UTC time of the first change) and,
      for settings, C(compare).
  type: dict
  returned: always
  sample:
    smt:
      setting:
        /sys/devices/system/cpu/smt/control:
          original: "on"
          expected: "off"
          compare: exact
          recorded: "2026-01-01T00:00:00Z"
      file: {}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import (  # noqa: E402
    StateError,
    check_owner,
    list_owners,
    recorded,
)


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "owner": {"type": "str"},
            "state_dir": {"type": "path", "default": "/var/lib/lowlatency-tuning"},
        },
        supports_check_mode=True,
    )
    state_dir = module.params["state_dir"]
    try:
        if module.params["owner"]:
            owner = check_owner(module.params["owner"])
            owners = [owner] if owner in list_owners(state_dir) else []
            records = {owner: recorded(owner, state_dir)}
        else:
            owners = list_owners(state_dir)
            records = {owner: recorded(owner, state_dir) for owner in owners}
    except StateError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, owners=owners, records=records)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
