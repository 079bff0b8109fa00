# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters between CPU set notations; documented in the <filter name>.yml files beside this one."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from ansible.errors import AnsibleFilterError
from ansible_collections.lowlatency.tuning.plugins.module_utils.cpus import (
    CpuSetError,
    cpus_to_mask,
    format_cpulist,
    parse_cpulist,
    parse_mask,
)


def _guard(name: str, func: Callable[..., Any], *args: Any) -> Any:
    try:
        return func(*args)
    except CpuSetError as exc:
        raise AnsibleFilterError("%s: %s" % (name, exc)) from exc


def cpulist_to_list(cpulist: Any, allow_empty: bool = False) -> List[int]:
    """'0-2,5' -> [0, 1, 2, 5]."""
    return _guard("cpulist_to_list", parse_cpulist, cpulist, allow_empty)


def list_to_cpulist(cpus: Any) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    if isinstance(cpus, str):
        raise AnsibleFilterError(
            "list_to_cpulist: expected a list of CPU numbers, got the string %r "
            "(use cpulist_to_list first)" % cpus
        )
    return _guard("list_to_cpulist", format_cpulist, cpus)


def cpulist_to_mask(cpulist: Any, nr_cpus: Optional[int] = None) -> str:
    """'2-5' -> '3c'; CPUs above 31 give comma-split 32-bit words."""
    if nr_cpus is not None and (
        isinstance(nr_cpus, bool) or not isinstance(nr_cpus, int) or nr_cpus < 0
    ):
        raise AnsibleFilterError(
            "cpulist_to_mask: nr_cpus must be a non-negative integer, got %r" % (nr_cpus,)
        )
    cpus = _guard("cpulist_to_mask", parse_cpulist, cpulist, True)
    return cpus_to_mask(cpus, nr_cpus)


def mask_to_cpulist(mask: Any) -> str:
    """'3c', '0x3c' or '00000001,00000000' -> cpulist."""
    return format_cpulist(_guard("mask_to_cpulist", parse_mask, mask))


def _sets(name: str, first: Any, second: Any) -> List[set]:
    return [set(_guard(name, parse_cpulist, value, True)) for value in (first, second)]


def cpulist_intersect(first: Any, second: Any) -> str:
    """CPUs in both cpulists."""
    one, two = _sets("cpulist_intersect", first, second)
    return format_cpulist(one & two)


def cpulist_difference(first: Any, second: Any) -> str:
    """CPUs in the first cpulist and not in the second."""
    one, two = _sets("cpulist_difference", first, second)
    return format_cpulist(one - two)


def cpulist_union(first: Any, second: Any) -> str:
    """CPUs in either cpulist."""
    one, two = _sets("cpulist_union", first, second)
    return format_cpulist(one | two)


class FilterModule:
    """CPU set filters: cpulists, lists and hex masks."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            "cpulist_to_list": cpulist_to_list,
            "list_to_cpulist": list_to_cpulist,
            "cpulist_to_mask": cpulist_to_mask,
            "mask_to_cpulist": mask_to_cpulist,
            "cpulist_intersect": cpulist_intersect,
            "cpulist_difference": cpulist_difference,
            "cpulist_union": cpulist_union,
        }
