# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cpu_layout_plan filter; documented in cpu_layout_plan.yml beside this file."""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.lowlatency.tuning.plugins.module_utils.layout import plan_layout

_TOPOLOGY_KEYS = ("cores", "nodes", "online_list", "present", "possible", "siblings", "interface")


def cpu_layout_plan(
    topology: Any,
    housekeeping: Any = None,
    isolated: Any = None,
    smt: str = "on",
    housekeeping_cores_per_node: int = 1,
) -> Dict[str, Any]:
    """Plan (or check) the housekeeping/isolated split for a cpu_topology fact."""
    if not isinstance(topology, Mapping) or any(key not in topology for key in _TOPOLOGY_KEYS):
        raise AnsibleFilterError(
            "cpu_layout_plan: the input must be the cpu_topology fact of "
            "lowlatency.tuning.cpu_topology (missing keys)"
        )
    return plan_layout(
        dict(topology),
        housekeeping=housekeeping,
        isolated=isolated,
        smt=smt,
        housekeeping_cores_per_node=housekeeping_cores_per_node,
    )


class FilterModule:
    """CPU layout planning."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {"cpu_layout_plan": cpu_layout_plan}
