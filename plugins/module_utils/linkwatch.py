# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run an apply function again after every link event of some interfaces.

A link up makes no uevent, so a udev rule alone misses it: the re-apply
units of the irq and nic roles read rtnetlink link events through
``ip -o monitor link`` and call back once the interface settles. Both units'
scripts share this command line too (``apply [IF ...]`` and ``watch``) and the
way they read the role's JSON configuration. The roles copy this file beside
their scripts, so it imports nothing of the collection.
"""

from __future__ import annotations

import argparse
import json
import re
import select
import subprocess
import sys
import time
from typing import Any, Callable, Container, Dict, List

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


def load_interfaces(path: str) -> Dict[str, Any]:
    """The "interfaces" mapping of a re-apply unit's JSON configuration."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    # The role's template starts with an "ansible managed" comment.
    body = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    return json.loads(body)["interfaces"]


def run_unit(
    description: str,
    config_path: str,
    apply_all: Callable[[argparse.Namespace, Dict[str, Any], List[str]], object],
    argv: List[str] | None = None,
    with_root: bool = False,
) -> int:
    """A re-apply script's command line: ``apply [IF ...]`` once, or ``watch``.

    apply_all(args, config, names) applies the configuration to names (all
    when empty); with_root adds ``--root`` (tests resolve /proc and /sys there).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=config_path)
    if with_root:
        parser.add_argument("--root", default="/", help="resolve /proc and /sys here (tests)")
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("apply")
    one.add_argument("interfaces", nargs="*")
    sub.add_parser("watch")
    args = parser.parse_args(argv)
    try:
        config = load_interfaces(args.config)
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write("cannot read %s: %s\n" % (args.config, exc))
        return 2
    if args.command == "watch":
        return watch_links(config, lambda names: apply_all(args, config, names))
    apply_all(args, config, args.interfaces)
    return 0
