from __future__ import annotations

from xml.etree import ElementTree

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.lowlatency.tuning.plugins.filter import verify
from ansible_collections.lowlatency.tuning.plugins.filter.verify import (
    verify_junit,
    verify_rows,
    verify_table,
)

REPORTS = {
    "kernel": [
        {
            "setting": "/proc/sys/vm/swappiness",
            "expected": "10",
            "actual": "10",
            "status": "applied",
            "reason": "sysctl vm.swappiness",
            "pending_reboot": False,
        },
        {
            "setting": "kernel command line",
            "expected": {"nohz_full": "1"},
            "actual": None,
            "status": "applied",
            "reason": "",
            "pending_reboot": True,
        },
        {
            "setting": "/sys/kernel/mm/ksm/run",
            "expected": "0",
            "actual": "1",
            "status": "drifted",
            "reason": "the kernel reads back 1",
            "pending_reboot": False,
        },
    ],
    "smt": [
        {
            "setting": "/sys/devices/system/cpu/smt/control",
            "expected": "off",
            "actual": "notsupported",
            "status": "skipped",
            "reason": "no SMT here",
            "pending_reboot": False,
        }
    ],
    "hugepages": None,
}


def test_rows_flatten_in_role_order_and_mark_pending_reboot():
    rows = verify_rows(REPORTS)
    assert [row["role"] for row in rows] == ["kernel", "kernel", "kernel", "smt"]
    assert [row["status"] for row in rows] == ["applied", "pending_reboot", "drifted", "skipped"]
    assert rows[1]["expected"] == {"nohz_full": "1"}
    assert rows[0]["reason"] == "sysctl vm.swappiness"


@pytest.mark.parametrize(
    ("reports", "message"),
    [
        ([], "expected a dict"),
        ({"kernel": "applied"}, "report of kernel is not a list"),
        ({"kernel": [{"status": "applied"}]}, "kernel report entry 0 has no setting"),
        ({"smt": [{"setting": "x", "status": "done"}]}, "status 'done'"),
    ],
)
def test_rows_refuse_bad_reports(reports, message):
    with pytest.raises(AnsibleFilterError, match=message):
        verify_rows(reports)


def test_rows_add_a_skipped_row_per_role_that_did_not_report():
    rows = verify_rows({"smt": REPORTS["smt"]}, roles=["kernel", "smt"])
    assert [(row["role"], row["setting"], row["status"]) for row in rows] == [
        ("smt", "/sys/devices/system/cpu/smt/control", "skipped"),
        ("kernel", "kernel_report", "skipped"),
    ]
    assert rows[1]["reason"] == "the role did not run in this play"


def test_rows_take_would_change():
    entry = dict(REPORTS["smt"][0], status="would_change")
    assert verify_rows({"smt": [entry]})[0]["status"] == "would_change"


def test_table_has_header_rule_and_a_line_per_short_row():
    lines = verify_table(verify_rows(REPORTS), width=40)
    assert lines[0].split() == ["role", "setting", "status", "expected", "actual", "reason"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 2 + 4
    assert "pending_reboot" in lines[3]
    assert '{"nohz_full": "1"}' in lines[3]


def test_table_wraps_long_text_and_keeps_every_word():
    reason = "irqbalance does not run: its unit's start conditions failed (ConditionCPUs=>1)"
    row = dict(REPORTS["smt"][0], setting="irqbalance", reason=reason)
    lines = verify_table(verify_rows({"irq": [row]}), width=20)
    body = lines[2:]
    assert len(body) > 1
    start = lines[0].index("reason")
    assert " ".join(line[start:].strip() for line in body) == reason
    assert all(len(line[start:]) <= 20 for line in body)
    # Continuation lines leave the other columns blank.
    assert body[1][:start].strip() == ""
    assert body[0].startswith("irq")


@pytest.mark.parametrize("width", [3, "wide", True])
def test_table_refuses_a_bad_width(width):
    with pytest.raises(AnsibleFilterError, match="width"):
        verify_table([], width=width)


def test_table_refuses_rows_that_are_not_rows():
    with pytest.raises(AnsibleFilterError, match="lacks"):
        verify_table([{"role": "kernel"}])
    with pytest.raises(AnsibleFilterError, match="expected the list"):
        verify_table("kernel")


def test_junit_suites_failures_and_skips():
    xml = verify_junit(verify_rows(REPORTS), host="h1")
    root = ElementTree.fromstring(xml)
    suites = {suite.get("name"): suite for suite in root.findall("testsuite")}
    assert set(suites) == {"h1.kernel", "h1.smt"}
    kernel = suites["h1.kernel"]
    # Drift fails by default: drifted and would_change.
    assert verify.DRIFT == ("drifted", "would_change")
    assert (kernel.get("tests"), kernel.get("failures"), kernel.get("skipped")) == ("3", "1", "1")
    failure = kernel.find("testcase[@name='/sys/kernel/mm/ksm/run']/failure")
    assert failure is not None
    assert "expected 0, actual 1; the kernel reads back 1" in failure.get("message")
    skipped = suites["h1.smt"].find("testcase/skipped")
    assert skipped.get("message").startswith("skipped: expected off, actual notsupported")


def test_junit_fail_on_more_statuses():
    root = ElementTree.fromstring(
        verify_junit(verify_rows(REPORTS), fail_on=["drifted", "pending_reboot", "skipped"])
    )
    assert sum(int(suite.get("failures")) for suite in root.findall("testsuite")) == 3


def test_junit_refuses_unknown_statuses():
    with pytest.raises(AnsibleFilterError, match="unknown statuses bogus"):
        verify_junit([], fail_on=["bogus"])


def test_filters_are_registered():
    assert set(verify.FilterModule().filters()) == {"verify_rows", "verify_table", "verify_junit"}
