# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the verify report; documented in the <filter name>.yml files beside this one."""

from __future__ import annotations

import json
import textwrap
from typing import Any, Callable, Dict, List, Optional
from xml.etree import ElementTree

from ansible.errors import AnsibleFilterError
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import STATUSES

# The host differs from what the roles set: read back otherwise, or check mode would change it.
DRIFT = ("drifted", "would_change")
COLUMNS = ("role", "setting", "status", "expected", "actual", "reason")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _not_run(role: str) -> Dict[str, Any]:
    return {
        "setting": "%s_report" % role,
        "expected": None,
        "actual": None,
        "status": "skipped",
        "reason": "the role did not run in this play",
        "pending_reboot": False,
    }


def verify_rows(reports: Any, roles: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    """{role: [report entries]} -> one flat row per setting, in role order.

    Each of roles that has no report gets one skipped row.
    """
    if not isinstance(reports, dict):
        raise AnsibleFilterError(
            "verify_rows: expected a dict of role name to report list, got %s"
            % type(reports).__name__
        )
    missing = [role for role in roles or [] if role not in reports]
    rows = []
    for role, entries in list(reports.items()) + [(role, [_not_run(role)]) for role in missing]:
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise AnsibleFilterError("verify_rows: the report of %s is not a list" % role)
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or "setting" not in entry or "status" not in entry:
                raise AnsibleFilterError(
                    "verify_rows: %s report entry %d has no setting and status: %r"
                    % (role, index, entry)
                )
            status = entry["status"]
            if status not in STATUSES:
                raise AnsibleFilterError(
                    "verify_rows: %s report entry %d (%s) has status %r, not one of %s"
                    % (role, index, entry["setting"], status, ", ".join(STATUSES))
                )
            pending = bool(entry.get("pending_reboot"))
            # A setting written but not yet in effect is pending, whatever the role called it.
            if pending and status == "applied":
                status = "pending_reboot"
            rows.append(
                {
                    "role": str(role),
                    "setting": _text(entry["setting"]),
                    "expected": entry.get("expected"),
                    "actual": entry.get("actual"),
                    "status": status,
                    "reason": _text(entry.get("reason")),
                    "pending_reboot": pending,
                }
            )
    return rows


def _check_rows(name: str, rows: Any) -> List[Dict[str, Any]]:
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise AnsibleFilterError("%s: expected the list verify_rows returns" % name)
    for row in rows:
        missing = [column for column in COLUMNS if column not in row]
        if missing:
            raise AnsibleFilterError("%s: row %r lacks %s" % (name, row, ", ".join(missing)))
    return rows


def verify_table(rows: Any, width: int = 60) -> List[str]:
    """Rows -> lines of a text table; a cell wider than width wraps onto more lines."""
    rows = _check_rows("verify_table", rows)
    if not isinstance(width, int) or isinstance(width, bool) or width < 8:
        raise AnsibleFilterError(
            "verify_table: width must be an integer of at least 8, got %r" % width
        )
    table = [[[name] for name in COLUMNS]] + [
        [
            textwrap.wrap(_text(row[column]), width, break_on_hyphens=False) or [""]
            for column in COLUMNS
        ]
        for row in rows
    ]
    sizes = [max(len(part) for line in table for part in line[i]) for i in range(len(COLUMNS))]
    lines = []
    for number, cells in enumerate(table):
        for index in range(max(len(cell) for cell in cells)):
            parts = [cell[index] if index < len(cell) else "" for cell in cells]
            lines.append("  ".join(part.ljust(sizes[i]) for i, part in enumerate(parts)).rstrip())
        if number == 0:
            lines.append("  ".join("-" * size for size in sizes))
    return lines


def verify_junit(rows: Any, host: str = "localhost", fail_on: Optional[List[str]] = None) -> str:
    """Rows -> JUnit XML: a test suite per role, a test case per setting."""
    rows = _check_rows("verify_junit", rows)
    failing = list(DRIFT) if fail_on is None else list(fail_on)
    unknown = [status for status in failing if status not in STATUSES]
    if unknown:
        raise AnsibleFilterError(
            "verify_junit: fail_on has unknown statuses %s" % ", ".join(unknown)
        )
    suites = ElementTree.Element("testsuites", name="lowlatency.tuning verify %s" % host)
    by_role: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        by_role.setdefault(row["role"], []).append(row)
    for role, role_rows in by_role.items():
        suite = ElementTree.SubElement(suites, "testsuite", name="%s.%s" % (host, role))
        failures = skipped = 0
        for row in role_rows:
            case = ElementTree.SubElement(
                suite, "testcase", name=_text(row["setting"]), classname="%s.%s" % (host, role)
            )
            detail = "expected %s, actual %s%s" % (
                _text(row["expected"]) or "-",
                _text(row["actual"]) or "-",
                ("; " + row["reason"]) if row["reason"] else "",
            )
            if row["status"] in failing:
                failures += 1
                failure = ElementTree.SubElement(
                    case, "failure", message="%s: %s" % (row["status"], detail)
                )
                failure.text = detail
            elif row["status"] in ("skipped", "pending_reboot"):
                skipped += 1
                ElementTree.SubElement(case, "skipped", message="%s: %s" % (row["status"], detail))
            else:
                ElementTree.SubElement(case, "system-out").text = "%s: %s" % (row["status"], detail)
        suite.set("tests", str(len(role_rows)))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        suite.set("skipped", str(skipped))
    return ElementTree.tostring(suites, encoding="unicode")


class FilterModule:
    """Filters that turn the roles' reports into a table and JUnit XML."""

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {
            "verify_rows": verify_rows,
            "verify_table": verify_table,
            "verify_junit": verify_junit,
        }
