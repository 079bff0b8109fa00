# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Compare the host with what the lowlatency.tuning roles recorded, for node_exporter.

    lowlatency-tuning-verify.py [--state-dir DIR] [--textfile-dir DIR] [--name FILE]

Reads the records in the state dir, checks every recorded knob against the
value recorded as expected and every recorded file for configuration that
overrides it (the verify role's config_overrides module runs the same code),
and writes the result as Prometheus metrics for node_exporter's textfile
collector, through a temporary file and a rename. Drifted settings are also
printed, so the journal shows them. The checks come from drift.py, the
collection's module_utils, installed beside this script in their package
layout by the verify role.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ansible_collections.lowlatency.tuning.plugins.module_utils.drift import (
    check_host,
    textfile,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import (
    DEFAULT_STATE_DIR,
    atomic_write,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    parser.add_argument("--textfile-dir", default="/var/lib/prometheus/node-exporter")
    parser.add_argument("--name", default="lowlatency_tuning.prom")
    args = parser.parse_args(argv)
    rows = check_host(args.state_dir)
    path = os.path.join(args.textfile_dir, args.name)
    try:
        atomic_write(path, textfile(rows, time.time()).encode("utf-8"), 0o644)
    except OSError as exc:
        print(f"cannot write {path}: {exc}", file=sys.stderr)
        return 1
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        if row["status"] == "drifted":
            print(f"drifted: {row['owner']} {row['setting']}: {row['reason']}")
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    print(f"{path}: {summary or 'no records'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
