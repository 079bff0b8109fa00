# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Keep NIC IRQ affinity, RPS and XPS where the irq role put them.

The kernel resets a NIC's IRQ affinity (and virtio-net its XPS maps) when the
driver binds again, and many drivers request their IRQs anew on link up. A
link up makes no uevent, so a udev rule alone misses it; this runs as a
service that applies the configuration at start and again after every
rtnetlink link event of a configured interface (``ip -o monitor link``).

    lowlatency-irq-affinity apply [IF ...]   apply once
    lowlatency-irq-affinity watch            apply, then after each link event

The configuration (written by the role) is JSON:
``{"interfaces": {"eth1": {"cpus": "0-1", "rps_cpus": "0-1", "xps_cpus": "spread"}}}``.
What to write comes from irq.py and cpus.py, the collection's module_utils that
the irq_affinity module runs too, and the watch from linkwatch.py, which the nic
role's re-apply script runs as well; the role installs them beside this script.
"""

from __future__ import annotations

import sys

from cpus import cpus_to_mask, format_cpulist, parse_cpulist, parse_mask
from irq import Target, interface_exists, interface_targets, irq_names, under
from linkwatch import run_unit

CONFIG = "/etc/lowlatency-tuning/irq-affinity.json"


def put(root: str, target: Target) -> str | None:
    """Write the target's CPUs unless its file holds them. Returns what happened, or None."""
    path, want, notation = target.path, target.want, target.notation
    real = under(root, path)
    try:
        with open(real, encoding="utf-8") as handle:
            current = handle.read().strip()
        have = (
            parse_cpulist(current, allow_empty=True)
            if notation == "cpulist"
            else parse_mask(current)
        )
    except (OSError, ValueError):
        return None
    if have == want:
        return None
    text = format_cpulist(want) if notation == "cpulist" else cpus_to_mask(want)
    try:
        with open(real, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        return f"{path}: refused ({exc.strerror or exc})"
    return f"{path}: {current} -> {text}"


def apply_interface(root: str, interface: str, spec: dict[str, str | None]) -> list[str]:
    with open(under(root, "/sys/devices/system/cpu/online"), encoding="utf-8") as handle:
        online = parse_cpulist(handle.read())
    rps, xps = spec.get("rps_cpus"), spec.get("xps_cpus")
    targets = interface_targets(
        root,
        interface,
        irq_names(root),
        cpus=parse_cpulist(spec.get("cpus") or ""),
        rps=None if rps is None else parse_cpulist(rps, allow_empty=True),
        xps=xps if xps in (None, "spread") else parse_cpulist(xps, allow_empty=True),
        online=online,
    )
    return [line for line in (put(root, target) for target in targets) if line]


def apply_all(root: str, config: dict[str, dict[str, str | None]], only: list[str]) -> int:
    changes = 0
    for interface, spec in config.items():
        if (only and interface not in only) or not interface_exists(root, interface):
            continue
        for line in apply_interface(root, interface, spec):
            print(f"{interface}: {line}", flush=True)
            changes += 1
    return changes


def main(argv: list[str] | None = None) -> int:
    return run_unit(
        __doc__.splitlines()[0],
        CONFIG,
        lambda args, config, names: apply_all(args.root, config, names),
        argv,
        with_root=True,
    )


if __name__ == "__main__":
    sys.exit(main())
