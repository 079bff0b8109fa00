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
    lowlatency-irq-affinity policy DEV IRQ   irqbalance --policyscript: ban our IRQs

The configuration (written by the role) is JSON:
``{"interfaces": {"eth1": {"cpus": "0-1", "rps_cpus": "0-1", "xps_cpus": "spread"}}}``.
IRQs are found as plugins/module_utils/irq.py finds them; keep the two in step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import subprocess
import sys
import time

CONFIG = "/etc/lowlatency-tuning/irq-affinity.json"
LINK_RE = re.compile(r"^(?:Deleted )?\d+: ([^:@\s]+)[@:]")
SETTLE_SECONDS = 0.5


def under(root: str, path: str) -> str:
    return path if root in ("", "/") else os.path.join(root, path.lstrip("/"))


def parse_cpulist(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        bounds = part.split("-", 1)
        cpus.extend(range(int(bounds[0]), int(bounds[-1]) + 1))
    return sorted(set(cpus))


def to_mask(cpus: list[int]) -> str:
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    return f"{value:x}"


def parse_mask(text: str) -> list[int]:
    value = int(text.strip().replace(",", "") or "0", 16)
    return [bit for bit in range(value.bit_length()) if value >> bit & 1]


def msi_irqs(root: str, interface: str) -> list[int]:
    device = under(root, f"/sys/class/net/{interface}/device")
    for candidate in (device, os.path.join(device, "..")):
        path = os.path.join(candidate, "msi_irqs")
        if os.path.isdir(path):
            return sorted(int(name) for name in os.listdir(path) if name.isdigit())
    return []


def queues(root: str, interface: str, kind: str) -> list[str]:
    try:
        names = os.listdir(under(root, f"/sys/class/net/{interface}/queues"))
    except FileNotFoundError:
        return []
    picked = [name for name in names if name.startswith(kind + "-") and name[3:].isdigit()]
    return sorted(picked, key=lambda name: int(name[3:]))


def spread(cpus: list[int], count: int) -> list[list[int]]:
    if count <= 0 or not cpus:
        return [[] for index in range(max(count, 0))]
    if len(cpus) >= count:
        return [cpus[index::count] for index in range(count)]
    return [[cpus[index % len(cpus)]] for index in range(count)]


def put(root: str, path: str, want: list[int], notation: str) -> str | None:
    """Write want unless path already holds it. Returns what happened, or None."""
    real = under(root, path)
    try:
        with open(real, encoding="utf-8") as handle:
            current = handle.read().strip()
        have = parse_cpulist(current) if notation == "cpulist" else parse_mask(current)
    except (OSError, ValueError):
        return None
    if have == want:
        return None
    text = ",".join(str(cpu) for cpu in want) if notation == "cpulist" else to_mask(want)
    try:
        with open(real, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        return f"{path}: refused ({exc.strerror or exc})"
    return f"{path}: {current} -> {text}"


def apply_interface(root: str, interface: str, spec: dict[str, str | None]) -> list[str]:
    done: list[str] = []
    cpus = parse_cpulist(spec.get("cpus") or "")
    for irq in msi_irqs(root, interface):
        done.append(put(root, f"/proc/irq/{irq}/smp_affinity_list", cpus, "cpulist") or "")
    base = f"/sys/class/net/{interface}/queues"
    if spec.get("rps_cpus") is not None:
        rps = parse_cpulist(spec["rps_cpus"] or "")
        for queue in queues(root, interface, "rx"):
            done.append(put(root, f"{base}/{queue}/rps_cpus", rps, "mask") or "")
    xps = spec.get("xps_cpus")
    if xps is not None:
        tx = queues(root, interface, "tx")
        if xps == "spread":
            with open(under(root, "/sys/devices/system/cpu/online"), encoding="utf-8") as handle:
                shares = spread(parse_cpulist(handle.read()), len(tx))
        else:
            shares = [parse_cpulist(xps)] * len(tx)
        for queue, share in zip(tx, shares):
            done.append(put(root, f"{base}/{queue}/xps_cpus", share, "mask") or "")
    return [line for line in done if line]


def load(path: str) -> dict[str, dict[str, str | None]]:
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    # The role's template starts with an "ansible managed" comment.
    body = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    return json.loads(body)["interfaces"]


def apply_all(root: str, config: dict[str, dict[str, str | None]], only: list[str]) -> int:
    changes = 0
    for interface, spec in config.items():
        if only and interface not in only:
            continue
        if not os.path.isdir(under(root, f"/sys/class/net/{interface}")):
            continue
        for line in apply_interface(root, interface, spec):
            print(f"{interface}: {line}", flush=True)
            changes += 1
    return changes


def watch(root: str, config: dict[str, dict[str, str | None]]) -> int:
    apply_all(root, config, [])
    monitor = subprocess.Popen(
        ["ip", "-o", "monitor", "link"], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert monitor.stdout is not None
    pending: set = set()
    deadline = None
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = select.select([monitor.stdout], [], [], timeout)[0]
        if ready:
            line = monitor.stdout.readline()
            if not line:
                return monitor.wait() or 1
            match = LINK_RE.match(line)
            if match and match.group(1) in config:
                pending.add(match.group(1))
                # Drivers bring queues and IRQs up in steps: apply once they settle.
                deadline = time.monotonic() + SETTLE_SECONDS
            continue
        if pending:
            apply_all(root, config, sorted(pending))
        pending.clear()
        deadline = None


def policy(root: str, config: dict[str, dict[str, str | None]], irq: int) -> None:
    for interface in config:
        if irq in msi_irqs(root, interface):
            print("ban=true")
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--root", default="/", help="resolve /proc and /sys here (tests)")
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("apply")
    one.add_argument("interfaces", nargs="*")
    sub.add_parser("watch")
    ban = sub.add_parser("policy")
    ban.add_argument("device")
    ban.add_argument("irq", type=int)
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cannot read {args.config}: {exc}", file=sys.stderr)
        return 0 if args.command == "policy" else 2
    if args.command == "policy":
        policy(args.root, config, args.irq)
        return 0
    if args.command == "watch":
        return watch(args.root, config)
    apply_all(args.root, config, args.interfaces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
