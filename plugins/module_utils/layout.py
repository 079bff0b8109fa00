# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Housekeeping/isolated CPU layout: derive it from the topology, or check the one given.

The input is the ``cpu_topology`` fact of the cpu_topology module. Nothing here
touches the host; every problem is collected with the CPU it concerns, so the
role can refuse the layout with all the reasons at once.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set

from ansible_collections.lowlatency.tuning.plugins.module_utils.cpus import (
    CpuSetError,
    cpus_to_mask,
    format_cpulist,
    parse_cpulist,
)


def _cores(topology: Dict[str, Any], smt: str) -> List[Dict[str, Any]]:
    """Cores of online CPUs; with SMT going off only their first thread stays."""
    cores = []
    for core in topology["cores"]:
        cpus = list(core["cpus"]) if smt == "on" else [core["cpus"][0]]
        cores.append({"node": core["node"], "cpus": cpus, "all": list(core["cpus"])})
    return cores


def _parse(name: str, text: Any, errors: List[str]) -> Optional[Set[int]]:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        return set(parse_cpulist(text))
    except CpuSetError as exc:
        errors.append("%s: %s" % (name, exc))
        return None


def _derive(
    cores: List[Dict[str, Any]], nic_node: int, per_node: int, errors: List[str]
) -> Set[int]:
    """Housekeeping: the first per_node cores of the NIC's node and every core of other nodes.

    Other nodes keep all their cores for housekeeping because isolated CPUs belong
    on the NIC's node; the NIC's node keeps per_node cores for its own kernel
    threads and IRQs.
    """
    housekeeping: Set[int] = set()
    by_node: Dict[int, List[Dict[str, Any]]] = {}
    for core in cores:
        by_node.setdefault(core["node"], []).append(core)
    if nic_node not in by_node:
        errors.append("the NIC's NUMA node %d has no online CPU to isolate" % nic_node)
    for node, node_cores in sorted(by_node.items()):
        node_cores.sort(key=lambda core: core["cpus"][0])
        keep = node_cores[:per_node] if node == nic_node else node_cores
        for core in keep:
            housekeeping.update(core["cpus"])
        if node == nic_node and len(node_cores) <= per_node:
            errors.append(
                "NUMA node %d (the NIC's node) has %d core(s) (CPUs %s); with "
                "cpu_layout_housekeeping_cores_per_node=%d none is left to isolate: lower it "
                "(0 leaves the NIC's node without housekeeping) or give cpu_layout_isolated"
                % (
                    node,
                    len(node_cores),
                    format_cpulist([cpu for core in node_cores for cpu in core["cpus"]]),
                    per_node,
                )
            )
    return housekeeping


def _check_cpus(
    name: str, cpus: Set[int], topology: Dict[str, Any], usable: Set[int], errors: List[str]
) -> None:
    present = set(parse_cpulist(topology["present"], allow_empty=True))
    online = set(topology["online_list"])
    for cpu in sorted(cpus):
        if cpu not in present:
            errors.append(
                "CPU %d in %s does not exist on this host (present CPUs: %s)"
                % (cpu, name, topology["present"])
            )
        elif cpu not in online:
            errors.append(
                "CPU %d in %s is offline (online CPUs: %s)" % (cpu, name, topology["online"])
            )
        elif cpu not in usable:
            errors.append(
                "CPU %d in %s is a second SMT thread that goes offline with smt_state: off "
                "(use the first thread of each core)" % (cpu, name)
            )


def _check_cores(
    cores: List[Dict[str, Any]], housekeeping: Set[int], isolated: Set[int], errors: List[str]
) -> None:
    for core in cores:
        if len(core["cpus"]) < 2:
            continue
        sides = {cpu: _side(cpu, housekeeping, isolated) for cpu in core["cpus"]}
        if len(set(sides.values())) > 1:
            errors.append(
                "SMT core %s is split (%s) while SMT stays on: keep whole cores in one set, "
                "or set smt_state: off"
                % (
                    format_cpulist(core["cpus"]),
                    ", ".join("CPU %d %s" % (cpu, side) for cpu, side in sorted(sides.items())),
                )
            )


def _side(cpu: int, housekeeping: Set[int], isolated: Set[int]) -> str:
    if cpu in housekeeping:
        return "housekeeping"
    return "isolated" if cpu in isolated else "in neither set"


def _check_options(smt: Any, per_node: Any, errors: List[str]) -> None:
    if smt not in ("on", "off"):
        errors.append("smt_state must be 'on' or 'off', got %r" % (smt,))
    if isinstance(per_node, bool) or not isinstance(per_node, int) or per_node < 0:
        errors.append(
            "cpu_layout_housekeeping_cores_per_node must be a non-negative integer, got %r"
            % (per_node,)
        )


def _split_given(
    given_hk: Optional[Set[int]], given_iso: Optional[Set[int]], usable: Set[int], errors: List[str]
) -> tuple:
    hk = given_hk if given_hk is not None else usable - (given_iso or set())
    iso = given_iso if given_iso is not None else usable - (given_hk or set())
    for cpu in sorted(hk & iso):
        errors.append("CPU %d is in both cpu_layout_housekeeping and cpu_layout_isolated" % cpu)
    for cpu in sorted(usable - hk - iso):
        errors.append("CPU %d is in neither cpu_layout_housekeeping nor cpu_layout_isolated" % cpu)
    return hk, iso


def _nodes(
    topology: Dict[str, Any],
    usable: Set[int],
    *,
    hk: Set[int],
    iso: Set[int],
    per_node: int,
    errors: List[str],
    warnings: List[str],
) -> List[Dict[str, Any]]:
    nic_node = topology["interface"]["numa_node"]
    nodes = []
    for node in topology["nodes"]:
        node_cpus = set(node["cpus"]) & usable
        node_hk = node_cpus & hk
        node_iso = node_cpus & iso
        if node_cpus and not node_hk and per_node > 0:
            errors.append(
                "NUMA node %d (CPUs %s) would have no housekeeping CPU: every node with CPUs "
                "needs one for its kernel threads and IRQs "
                "(cpu_layout_housekeeping_cores_per_node: 0 allows it)"
                % (node["node"], format_cpulist(node_cpus))
            )
        if node_iso and node["node"] != nic_node:
            warnings.append(
                "isolated CPUs %s are on NUMA node %d, not on the NIC's node %d: packets cross "
                "the interconnect" % (format_cpulist(node_iso), node["node"], nic_node)
            )
        nodes.append(
            {
                "node": node["node"],
                "cpus": format_cpulist(node_cpus),
                "housekeeping": format_cpulist(node_hk),
                "isolated": format_cpulist(node_iso),
                "mem_total_kb": node.get("mem_total_kb"),
            }
        )
    return nodes


def plan_layout(
    topology: Dict[str, Any],
    housekeeping: Any = None,
    isolated: Any = None,
    smt: str = "on",
    housekeeping_cores_per_node: int = 1,
) -> Dict[str, Any]:
    """Return {'errors': [...], 'warnings': [...], 'result': {...} or None}.

    With neither set given the layout is derived; with one, the other is the rest
    of the usable CPUs; with both, they must cover the usable CPUs exactly.
    Usable CPUs are the online ones, only the first thread of each core with smt 'off'.
    """
    errors: List[str] = []
    warnings: List[str] = []
    _check_options(smt, housekeeping_cores_per_node, errors)
    given_hk = _parse("cpu_layout_housekeeping", housekeeping, errors)
    given_iso = _parse("cpu_layout_isolated", isolated, errors)
    if errors:
        return {"errors": errors, "warnings": warnings, "result": None}

    cores = _cores(topology, smt)
    usable = {cpu for core in cores for cpu in core["cpus"]}
    nic_node = topology["interface"]["numa_node"]
    for name, cpus in (("cpu_layout_housekeeping", given_hk), ("cpu_layout_isolated", given_iso)):
        if cpus is not None:
            _check_cpus(name, cpus, topology, usable, errors)

    if given_hk is None and given_iso is None:
        source = "derived"
        hk = _derive(cores, nic_node, housekeeping_cores_per_node, errors)
        iso = usable - hk
    else:
        source = "given"
        hk, iso = _split_given(given_hk, given_iso, usable, errors)

    if not iso:
        errors.append("no CPU is left to isolate (housekeeping is %s)" % format_cpulist(hk))
    if usable and not hk & usable:
        errors.append(
            "every online CPU (%s) would be isolated: at least one housekeeping CPU is needed "
            "for the OS, IRQs and kernel threads" % format_cpulist(usable)
        )
    if smt == "on":
        _check_cores(cores, hk, iso, errors)
    nodes = _nodes(
        topology,
        usable,
        hk=hk,
        iso=iso,
        per_node=housekeeping_cores_per_node,
        errors=errors,
        warnings=warnings,
    )
    if errors:
        return {"errors": errors, "warnings": warnings, "result": None}

    possible = parse_cpulist(topology["possible"], allow_empty=True)
    width = possible[-1] + 1 if possible else None
    offlined = sorted(cpu for core in cores for cpu in core["all"] if cpu not in core["cpus"])
    result = {
        "housekeeping": format_cpulist(hk),
        "isolated": format_cpulist(iso),
        "housekeeping_list": sorted(hk),
        "isolated_list": sorted(iso),
        "housekeeping_mask": cpus_to_mask(sorted(hk), width),
        "isolated_mask": cpus_to_mask(sorted(iso), width),
        "nic_node": nic_node,
        "interface": topology["interface"]["name"],
        "numa": {"nodes": nodes, "node_ids": [node["node"] for node in nodes]},
        "siblings": list(topology["siblings"]),
        "smt": smt,
        "smt_offlined": format_cpulist(offlined),
        "source": source,
    }
    return {"errors": errors, "warnings": warnings, "result": result}
