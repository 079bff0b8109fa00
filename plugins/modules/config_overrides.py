#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: config_overrides
short_description: Find configuration that overrides the files the roles wrote
version_added: 0.1.0
description:
  - For every file the roles recorded in the state dir (M(lowlatency.tuning.file_record)), looks
    for configuration the host reads after it and that sets one of its keys otherwise, and returns
    one report row per file, V(drifted) naming the overriding file.
  - C(sysctl.d) files (and C(/etc/sysctl.conf)) in systemd-sysctl's order, by file name across
    C(/etc), C(/run), C(/usr/local/lib) and C(/usr/lib), where a file masks a same-named one in a
    directory read later; C(system.conf.d) files likewise.
  - Unit drop-ins through one C(systemctl show) call for all their units, C(DropInPaths) for the
    order and each setting's effective value; a drop-in read after the role's that sets a value
    otherwise is named.
  - C(/etc/default/NAME) and C(/etc/sysconfig/NAME) as environment files of C(NAME.service)
    (C(EnvironmentFiles)); a file loaded after it that sets one of its variables otherwise, or a
    drop-in that replaced C(EnvironmentFile=), is named.
  - Read-only; the verify role runs it and the host-side timer runs the same code.
author:
  - lowlatency.tuning contributors (@lowlatency-tuning)
options:
  state_dir:
    description:
      - Directory that holds the records.
    type: path
    default: /var/lib/lowlatency-tuning
  owners:
    description:
      - Only the records of these owners (role names). Default every owner's.
    type: list
    elements: str
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
  - module: lowlatency.tuning.file_record
  - module: lowlatency.tuning.state_info
"""

EXAMPLES = r"""
- name: Find what overrides the tuning's files
  lowlatency.tuning.config_overrides:
  register: __overrides

- name: Show the drifted ones
  ansible.builtin.debug:
    msg: >-
      {{ __overrides.report | selectattr('status', 'equalto', 'drifted')
         | map(attribute='reason') | list }}
"""

RETURN = r"""
report:
  description:
    - One report entry per recorded file something could override (V(applied) when nothing does,
      V(drifted) naming the overriding files, V(skipped) when systemd cannot be asked), with the
      C(owner) that recorded the file. When the records cannot be read, one V(skipped) row
      saying why.
  type: list
  elements: dict
  returned: always
  sample:
    - setting: overrides of /etc/sysctl.d/90-lowlatency-tuning.conf
      expected: none
      actual: vm.swappiness=60 by /etc/sysctl.d/99-local.conf
      status: drifted
      reason: "overridden by /etc/sysctl.d/99-local.conf; ours: vm.swappiness=10"
      pending_reboot: false
      owner: kernel
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.lowlatency.tuning.plugins.module_utils.drift import (  # noqa: E402
    check_overrides,
    unreadable_row,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import (  # noqa: E402
    StateError,
    check_owner,
)


def run_module() -> None:
    module = AnsibleModule(
        argument_spec={
            "state_dir": {"type": "path", "default": "/var/lib/lowlatency-tuning"},
            "owners": {"type": "list", "elements": "str"},
        },
        supports_check_mode=True,
    )
    owners = module.params["owners"]
    try:
        if owners is not None:
            owners = [check_owner(owner) for owner in owners]
    except StateError as exc:
        module.fail_json(msg=str(exc))
    try:
        report = check_overrides(module.params["state_dir"], owners=owners)
    except StateError as exc:
        report = [unreadable_row(module.params["state_dir"], exc)]
    module.exit_json(changed=False, report=report)


def main() -> None:
    run_module()


if __name__ == "__main__":
    main()
