#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cpu_topology
short_description: Read CPUs, SMT sibling groups, NUMA nodes and the NIC's node from sysfs
version_added: 0.1.0
description:
  - Reads C(/sys/devices/system/cpu) (online, offline, present and possible CPUs; per CPU its
    core, package and thread siblings), C(/sys/devices/system/node) (CPUs and C(MemTotal) per
    node), the SMT control and active state, and the NUMA node of a network interface.
  - Returns them as the fact C(cpu_topology). Changes nothing.
  - A kernel without NUMA support has no node directory; the module then reports one node
    C(0) holding every CPU, with the memory of C(/proc/meminfo).
  - A NIC whose device has no C(numa_node), or reports C(-1) (no affinity, common in VMs and
    single-socket hosts), is placed on the first node; the fact's C(interface.numa_node_source)
    says which.
author:
  - lowlatency.tuning contributors (@lowlatency-tuning)
options:
  interface:
    description:
      - Network interface whose NUMA node is wanted.
      - Default is the interface of the default route in C(/proc/net/route).
    type: str
  sysfs_root:
    description:
      - Directory under which C(sys/) and C(proc/) are read. For tests on a fake tree.
    type: path
    default: /
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: Read-only.
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: linux
"""

EXAMPLES = r"""
- name: Read the CPU topology
  lowlatency.tuning.cpu_topology:
    interface: eth0

- name: Show the SMT sibling groups
  ansible.builtin.debug:
    msg: "{{ ansible_facts.cpu_topology.siblings }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to C(ansible_facts).
  returned: always
  type: complex
  contains:
    cpu_topology:
      description: The topology.
      returned: always
      type: complex
      contains:
        online:
          description: Online CPUs (cpulist).
          type: str
          sample: "0-3"
        online_list:
          description: Online CPUs.
          type: list
          elements: int
          sample: [0, 1, 2, 3]
        offline:
          description: Offline CPUs (cpulist, empty when none).
          type: str
          sample: ""
        offline_list:
          description: Offline CPUs.
          type: list
          elements: int
          sample: []
        present:
          description: Present CPUs (cpulist).
          type: str
          sample: "0-3"
        possible:
          description: Possible CPUs (cpulist).
          type: str
          sample: "0-7"
        cpus:
          description: One entry per present CPU. Topology fields are C(null) for offline CPUs.
          type: list
          elements: dict
          sample:
            - {cpu: 0, online: true, core_id: 0, package_id: 0, node: 0, siblings: "0-1"}
        siblings:
          description: SMT sibling groups of online CPUs (cpulists), one per physical core.
          type: list
          elements: str
          sample: ["0-1", "2-3"]
        cores:
          description: One entry per physical core of online CPUs.
          type: list
          elements: dict
          sample:
            - {package_id: 0, core_id: 0, node: 0, cpus: [0, 1], cpulist: "0-1"}
        threads_per_core:
          description: Largest sibling group size.
          type: int
          sample: 2
        nodes:
          description: NUMA nodes, lowest first.
          type: list
          elements: dict
          sample:
            - {node: 0, cpulist: "0-1", cpus: [0, 1], mem_total_kb: 1015800}
        node_ids:
          description: NUMA node numbers.
          type: list
          elements: int
          sample: [0, 1]
        numa:
          description: Whether the kernel exposes NUMA nodes (false means one synthesized node).
          type: bool
          sample: true
        smt:
          description:
            - C(control) is the content of C(smt/control) (C(on), C(off), C(forceoff),
              C(notsupported), C(notimplemented)) or C(null) when absent.
            - C(active) is C(smt/active) as a boolean, or C(null).
          type: dict
          sample: {control: "on", active: true}
        interface:
          description:
            - The interface, its NUMA node, where that came from (C(device), C(parent device),
              C(first node)) and the raw value read, and its RX/TX queue counts.
            - C(name) is C(null) when no interface was given and there is no default route.
          type: dict
          sample:
            name: eth0
            numa_node: 0
            numa_node_raw: -1
            numa_node_source: first node
            rx_queues: 4
            tx_queues: 4
"""

import os  # noqa: E402
import re  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.lowlatency.tuning.plugins.module_utils.cpus import (  # noqa: E402
    CpuSetError,
    format_cpulist,
    parse_cpulist,
)

_NODE_RE = re.compile(r"^node(\d+)$")
_CPU_RE = re.compile(r"^cpu(\d+)$")
_MEMTOTAL_RE = re.compile(r"MemTotal:\s+(\d+)\s*kB")


class TopologyError(Exception):
    """sysfs does not hold what every Linux host has."""


class Sysfs:
    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def read(self, *parts: str) -> Optional[str]:
        try:
            with open(self.path(*parts)) as handle:
                return handle.read().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read_int(self, *parts: str) -> Optional[int]:
        text = self.read(*parts)
        try:
            return int(text) if text is not None else None
        except ValueError:
            return None

    def cpulist(self, *parts: str) -> Optional[List[int]]:
        text = self.read(*parts)
        if text is None:
            return None
        try:
            return parse_cpulist(text, allow_empty=True)
        except CpuSetError as exc:
            raise TopologyError("%s: %s" % (self.path(*parts), exc)) from exc


CPU_DIR = ("sys", "devices", "system", "cpu")
NODE_DIR = ("sys", "devices", "system", "node")


def read_cpus(fs: Sysfs) -> Dict[str, Any]:
    online = fs.cpulist(*CPU_DIR, "online")
    if online is None:
        raise TopologyError("%s is missing: is sysfs mounted?" % fs.path(*CPU_DIR, "online"))
    present = fs.cpulist(*CPU_DIR, "present") or online
    possible = fs.cpulist(*CPU_DIR, "possible") or present
    offline = sorted(set(present) - set(online))
    cpus = []
    for cpu in present:
        base = (*CPU_DIR, "cpu%d" % cpu, "topology")
        is_online = cpu in online
        siblings = fs.cpulist(*base, "thread_siblings_list") if is_online else None
        if is_online and not siblings:
            siblings = [cpu]
        cpus.append(
            {
                "cpu": cpu,
                "online": is_online,
                "core_id": fs.read_int(*base, "core_id") if is_online else None,
                "package_id": fs.read_int(*base, "physical_package_id") if is_online else None,
                "siblings": format_cpulist(siblings) if siblings else None,
            }
        )
    return {
        "online": format_cpulist(online),
        "online_list": online,
        "offline": format_cpulist(offline),
        "offline_list": offline,
        "present": format_cpulist(present),
        "possible": format_cpulist(possible),
        "cpus": cpus,
    }


def read_nodes(fs: Sysfs, online: List[int]) -> Dict[str, Any]:
    try:
        names = os.listdir(fs.path(*NODE_DIR))
    except FileNotFoundError:
        names = []
    nodes = []
    for name in names:
        match = _NODE_RE.match(name)
        if not match:
            continue
        node = int(match.group(1))
        cpus = fs.cpulist(*NODE_DIR, name, "cpulist") or []
        nodes.append(
            {
                "node": node,
                "cpus": cpus,
                "mem_total_kb": mem_total(fs.read(*NODE_DIR, name, "meminfo")),
            }
        )
    if nodes:
        nodes.sort(key=lambda item: item["node"])
        numa = True
    else:
        nodes = [
            {"node": 0, "cpus": list(online), "mem_total_kb": mem_total(fs.read("proc", "meminfo"))}
        ]
        numa = False
    for node in nodes:
        node["cpulist"] = format_cpulist(node["cpus"])
    return {"nodes": nodes, "node_ids": [node["node"] for node in nodes], "numa": numa}


def mem_total(meminfo: Optional[str]) -> Optional[int]:
    if not meminfo:
        return None
    match = _MEMTOTAL_RE.search(meminfo)
    return int(match.group(1)) if match else None


def group_cores(cpus: List[Dict[str, Any]], node_of: Dict[int, int]) -> List[Dict[str, Any]]:
    cores: Dict[str, Dict[str, Any]] = {}
    for cpu in cpus:
        if not cpu["online"]:
            continue
        key = cpu["siblings"]
        if key not in cores:
            members = parse_cpulist(key)
            cores[key] = {
                "package_id": cpu["package_id"],
                "core_id": cpu["core_id"],
                "node": node_of.get(members[0]),
                "cpus": members,
                "cpulist": key,
            }
    return sorted(cores.values(), key=lambda core: core["cpus"][0])


def default_interface(fs: Sysfs) -> Optional[str]:
    """Interface of the lowest-metric IPv4 default route."""
    table = fs.read("proc", "net", "route")
    if not table:
        return None
    best = None
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[1] != "00000000" or fields[7] != "00000000":
            continue
        metric = int(fields[6]) if fields[6].isdigit() else 0
        if best is None or metric < best[0]:
            best = (metric, fields[0])
    return best[1] if best else None


def nic_node(fs: Sysfs, name: str, first_node: int) -> Dict[str, Any]:
    net = ("sys", "class", "net", name)
    if not os.path.exists(fs.path(*net)):
        raise TopologyError("interface %s does not exist (%s)" % (name, fs.path(*net)))
    raw = fs.read_int(*net, "device", "numa_node")
    source = "device"
    if raw is None:
        raw, source = parent_numa_node(fs, net)
    if raw is None or raw < 0:
        node, source = first_node, "first node"
    else:
        node = raw
    return {
        "name": name,
        "numa_node": node,
        "numa_node_raw": raw,
        "numa_node_source": source,
        "rx_queues": count_queues(fs, net, "rx-"),
        "tx_queues": count_queues(fs, net, "tx-"),
    }


def parent_numa_node(fs: Sysfs, net: tuple) -> tuple:
    """A virtio NIC's device has no numa_node; its PCI parent does."""
    device = fs.path(*net, "device")
    if not os.path.exists(device):
        return None, "none"
    current = os.path.realpath(device)
    stop = os.path.realpath(fs.path("sys", "devices"))
    while current.startswith(stop + os.sep):
        current = os.path.dirname(current)
        candidate = os.path.join(current, "numa_node")
        if os.path.isfile(candidate):
            with open(candidate) as handle:
                text = handle.read().strip()
            try:
                return int(text), "parent device"
            except ValueError:
                return None, "none"
    return None, "none"


def count_queues(fs: Sysfs, net: tuple, prefix: str) -> int:
    try:
        return sum(1 for name in os.listdir(fs.path(*net, "queues")) if name.startswith(prefix))
    except FileNotFoundError:
        return 0


def read_topology(root: str, interface: Optional[str]) -> Dict[str, Any]:
    fs = Sysfs(root)
    facts = read_cpus(fs)
    facts.update(read_nodes(fs, facts["online_list"]))
    node_of = {cpu: node["node"] for node in facts["nodes"] for cpu in node["cpus"]}
    first_node = facts["node_ids"][0]
    for cpu in facts["cpus"]:
        cpu["node"] = node_of.get(cpu["cpu"], first_node)
    cores = group_cores(facts["cpus"], node_of)
    facts["cores"] = cores
    facts["siblings"] = [core["cpulist"] for core in cores]
    facts["threads_per_core"] = max((len(core["cpus"]) for core in cores), default=1)
    active = fs.read(*CPU_DIR, "smt", "active")
    facts["smt"] = {
        "control": fs.read(*CPU_DIR, "smt", "control"),
        "active": None if active is None else active == "1",
    }
    name = interface or default_interface(fs)
    if name:
        facts["interface"] = nic_node(fs, name, first_node)
    else:
        facts["interface"] = {
            "name": None,
            "numa_node": first_node,
            "numa_node_raw": None,
            "numa_node_source": "first node",
            "rx_queues": 0,
            "tx_queues": 0,
        }
    return facts


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "interface": {"type": "str"},
            "sysfs_root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    try:
        facts = read_topology(module.params["sysfs_root"], module.params["interface"])
    except TopologyError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, ansible_facts={"cpu_topology": facts})


if __name__ == "__main__":
    main()
