# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a network interface's IRQs and queues are, read from /sys and /proc.

Every path is resolved under ``root`` so that tests can run on a fake tree.
The irq_affinity module and the irq role's re-apply script both run this file:
the role copies it (and cpus.py) beside the script, so it imports nothing else.
"""

from __future__ import annotations

import os
import re
from collections import namedtuple
from typing import Dict, List, Optional, Union

# Queue IRQ names as drivers register them: virtio0-input.0, eth0-TxRx-3,
# i40e-eth0-TxRx-0, mlx5_comp2@pci:..., ens1f0-rx-1.
QUEUE_NAME_RE = re.compile(r"(?i)(input|output|txrx|rx|tx|comp|fp)[-._]?\d+")
_INTERRUPTS_LINE_RE = re.compile(r"^\s*(\d+):")


def under(root: str, path: str) -> str:
    """path ('/proc/irq/5') resolved under root ('/' on a real host)."""
    return path if root in ("", "/") else os.path.join(root, path.lstrip("/"))


def irq_names(root: str = "/") -> Dict[int, str]:
    """IRQ number -> the name column of /proc/interrupts (last field)."""
    names: Dict[int, str] = {}
    with open(under(root, "/proc/interrupts"), "r", encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    if not lines:
        return names
    ncpus = len(lines[0].split())
    for line in lines[1:]:
        match = _INTERRUPTS_LINE_RE.match(line)
        if not match:
            continue
        fields = line.split()[1 + ncpus :]
        names[int(match.group(1))] = fields[-1] if fields else ""
    return names


def all_irqs(root: str = "/") -> List[int]:
    """IRQ numbers that have a /proc/irq/N directory."""
    try:
        entries = os.listdir(under(root, "/proc/irq"))
    except FileNotFoundError:
        return []
    return sorted(int(name) for name in entries if name.isdigit())


def msi_dir(root: str, interface: str) -> Optional[str]:
    """The msi_irqs directory of the interface's device, or None.

    A PCI NIC's device has it; a virtio NIC's device is the virtio device,
    whose PCI function one level up has it.
    """
    device = under(root, "/sys/class/net/%s/device" % interface)
    for candidate in (device, os.path.join(device, "..")):
        path = os.path.join(candidate, "msi_irqs")
        if os.path.isdir(path):
            return path
    return None


def interface_irqs(root: str, interface: str, names: Dict[int, str]) -> List[Dict[str, object]]:
    """The interface's IRQs: [{'irq': 25, 'name': 'virtio1-input.0', 'queue': True}, ...].

    MSI/MSI-X vectors of the device first; a device without MSI falls back
    to /proc/interrupts lines that name the interface.
    """
    found: List[int] = []
    directory = msi_dir(root, interface)
    if directory is not None:
        found = sorted(int(name) for name in os.listdir(directory) if name.isdigit())
    else:
        pattern = re.compile(r"(^|[-_@])%s([-_@.]|$)" % re.escape(interface))
        found = sorted(irq for irq, name in names.items() if pattern.search(name))
    return [
        {
            "irq": irq,
            "name": names.get(irq, ""),
            "queue": bool(QUEUE_NAME_RE.search(names.get(irq, ""))),
        }
        for irq in found
    ]


def queues(root: str, interface: str, kind: str) -> List[str]:
    """Sorted queue names of one kind ('rx' or 'tx'): ['rx-0', 'rx-1', ...]."""
    try:
        entries = os.listdir(under(root, "/sys/class/net/%s/queues" % interface))
    except FileNotFoundError:
        return []
    picked = [name for name in entries if name.startswith(kind + "-") and name[3:].isdigit()]
    return sorted(picked, key=lambda name: int(name[3:]))


def interface_exists(root: str, interface: str) -> bool:
    return os.path.isdir(under(root, "/sys/class/net/%s" % interface))


def spread(cpus: List[int], count: int) -> List[List[int]]:
    """Deal cpus over count queues: queue i gets cpus i, i+count, ...

    With fewer CPUs than queues, queue i shares CPU i mod len(cpus).
    """
    if count <= 0 or not cpus:
        return [[] for index in range(max(count, 0))]
    if len(cpus) >= count:
        return [cpus[index::count] for index in range(count)]
    return [[cpus[index % len(cpus)]] for index in range(count)]


# One file an interface's tuning writes: path, the CPUs it should hold, in which notation
# ("cpulist" or "mask"), a note for the report, and the IRQ (an interface_irqs entry) or None.
Target = namedtuple("Target", "path want notation note irq")


def interface_targets(
    root: str,
    interface: str,
    names: Dict[int, str],
    *,
    cpus: List[int],
    rps: Optional[List[int]],
    xps: Union[List[int], str, None],
    online: List[int],
) -> List[Target]:
    """What one interface's files should hold: its IRQs' affinity, then RPS and XPS.

    rps: CPUs for every receive queue, None to leave RPS alone. xps: CPUs for every
    transmit queue, "spread" to deal the online CPUs over them, None to leave XPS alone.
    """
    found = []
    for irq in interface_irqs(root, interface, names):
        note = "%s %s %s" % (interface, "queue IRQ" if irq["queue"] else "IRQ", irq["name"])
        found.append(
            Target("/proc/irq/%d/smp_affinity_list" % irq["irq"], cpus, "cpulist", note, irq)
        )
    base = "/sys/class/net/%s/queues/" % interface
    if rps is not None:
        for queue in queues(root, interface, "rx"):
            found.append(Target(base + queue + "/rps_cpus", rps, "mask", interface + " RPS", None))
    if xps is not None:
        tx = queues(root, interface, "tx")
        shares = spread(online, len(tx)) if xps == "spread" else [list(xps)] * len(tx)
        for queue, share in zip(tx, shares):
            found.append(
                Target(base + queue + "/xps_cpus", share, "mask", interface + " XPS", None)
            )
    return found
