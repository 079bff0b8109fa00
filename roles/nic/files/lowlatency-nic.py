# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Keep a NIC's coalescing, rings, channels and offloads where the nic role put them.

A driver rebind brings the driver's defaults back, and some drivers reset
their settings when the link comes up. This applies the configuration at start
and again after every link event of a configured interface, through the link
watch the irq role's re-apply unit runs too (linkwatch.py).

    lowlatency-nic apply [IF ...]   apply once
    lowlatency-nic watch            apply, then after each link event

The configuration (written by the role) is JSON:
``{"interfaces": {"eth1": {"coalesce": {"rx-usecs": "0"}, "rings": {}, "channels": 2,
"features": {"lro": "off"}}}}``. What to run comes from ethtool.py, the
collection's module_utils that the nic_ethtool module runs too; the role
installs it beside this script.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ethtool import RESETS, Nic, apply_nic, value_text
from linkwatch import run_unit

CONFIG = "/etc/lowlatency-tuning/nic.json"
IRQ_UNIT = "lowlatency-irq-affinity.service"


def run(argv: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


def apply_interface(interface: str, spec: dict) -> list[dict]:
    rows = apply_nic(
        Nic(interface, run),
        {
            group: {name: value_text(value) for name, value in (spec.get(group) or {}).items()}
            for group in ("coalesce", "rings", "features")
        },
        spec.get("channels"),
        check=False,
    )
    return [row for row in rows if row["changed"]]


def apply_all(config: dict[str, dict], only: list[str]) -> int:
    changes = 0
    reset = False
    for interface, spec in config.items():
        if (only and interface not in only) or not os.path.exists(f"/sys/class/net/{interface}"):
            continue
        for row in apply_interface(interface, spec):
            print(
                f"{interface}: {row['group']} {row['name']}: {row['before']} -> {row['actual']}"
                f" ({row['status']})",
                flush=True,
            )
            changes += 1
            reset = reset or row["group"] in RESETS
    if reset:
        # New queues come with new IRQs: the irq role's unit, when it runs, pins them again.
        run(["systemctl", "try-restart", IRQ_UNIT])
    return changes


def main(argv: list[str] | None = None) -> int:
    return run_unit(
        __doc__.splitlines()[0], CONFIG, lambda args, config, names: apply_all(config, names), argv
    )


if __name__ == "__main__":
    sys.exit(main())
