# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run an apply function again after every link event of some interfaces.

A link up makes no uevent, so a udev rule alone misses it: the re-apply
units of the irq and nic roles read rtnetlink link events through
``ip -o monitor link`` and call back once the interface settles. The roles
copy this file beside their scripts, so it imports nothing of the collection.
"""

from __future__ import annotations

import re
import select
import subprocess
import time
from typing import Callable, Container, List

LINK_RE = re.compile(r"^(?:Deleted )?\d+: ([^:@\s]+)[@:]")
SETTLE_SECONDS = 0.5


def watch_links(
    interfaces: Container[str],
    apply: Callable[[List[str]], object],
    command: List[str] | None = None,
) -> int:
    """apply([]) once, then apply(names) after link events of those interfaces.

    Returns the monitor's exit code (1 when it ended without one): the unit
    restarts the watcher then.
    """
    apply([])
    monitor = subprocess.Popen(
        command or ["ip", "-o", "monitor", "link"], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    if monitor.stdout is None:
        raise RuntimeError("ip monitor started without a pipe")
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
            if match and match.group(1) in interfaces:
                pending.add(match.group(1))
                # Drivers bring queues and IRQs up in steps: apply once they settle.
                deadline = time.monotonic() + SETTLE_SECONDS
            continue
        if pending:
            apply(sorted(pending))
        pending.clear()
        deadline = None
