from __future__ import annotations

import json
import os

import pytest
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import (
    RoleState,
    StateError,
    list_owners,
    recorded,
    report_entry,
    text_diff,
)


def test_record_keeps_first_original(tmp_path):
    state = RoleState("kernel", str(tmp_path))
    assert state.record("setting", "/proc/sys/vm/swappiness", "60", "10") is True
    assert state.record("setting", "/proc/sys/vm/swappiness", "10", "5") is True
    assert state.record("setting", "/proc/sys/vm/swappiness", "5", "5") is False
    state.save()
    again = RoleState("kernel", str(tmp_path))
    entry = again.get("setting", "/proc/sys/vm/swappiness")
    assert entry["original"] == "60"
    assert entry["expected"] == "5"


def test_save_is_atomic_and_private(tmp_path):
    state = RoleState("smt", str(tmp_path / "new"))
    state.record("setting", "/sys/devices/system/cpu/smt/control", "on", "off")
    state.save()
    path = tmp_path / "new" / "smt.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path / "new") == ["smt.json"], "no temporary file left behind"
    assert json.loads(path.read_text())["owner"] == "smt"


def test_forget_last_entry_removes_file(tmp_path):
    state = RoleState("smt", str(tmp_path))
    state.record("setting", "/a", "1", "0")
    state.record("file", "/etc/x", {"exists": False})
    state.save()
    assert state.keys() == ["/a", "/etc/x"]
    assert state.forget("setting", "/a") is True
    assert state.forget("setting", "/a") is False
    state.save()
    assert (tmp_path / "smt.json").exists()
    state.forget("file", "/etc/x")
    state.save()
    assert not (tmp_path / "smt.json").exists()


def test_list_owners_and_recorded(tmp_path):
    for owner in ("kernel", "smt"):
        state = RoleState(owner, str(tmp_path))
        state.record("setting", f"/sys/{owner}", "1", "0")
        state.save()
    (tmp_path / "notes.txt").write_text("")
    assert list_owners(str(tmp_path)) == ["kernel", "smt"]
    assert list_owners(str(tmp_path / "missing")) == []
    assert list(recorded("smt", str(tmp_path))["setting"]) == ["/sys/smt"]
    assert recorded("nobody", str(tmp_path)) == {"setting": {}, "file": {}}


@pytest.mark.parametrize("owner", ["", "../etc", "a/b", ".hidden", None])
def test_bad_owner(tmp_path, owner):
    with pytest.raises(StateError, match="not a valid record name"):
        RoleState(owner, str(tmp_path))


def test_corrupt_record_is_not_overwritten(tmp_path):
    (tmp_path / "kernel.json").write_text("{not json")
    with pytest.raises(StateError, match="not valid JSON"):
        RoleState("kernel", str(tmp_path))
    assert (tmp_path / "kernel.json").read_text() == "{not json"


def test_unknown_version_refused(tmp_path):
    (tmp_path / "kernel.json").write_text(json.dumps({"version": 99, "entries": {}}))
    with pytest.raises(StateError, match="format version 99"):
        RoleState("kernel", str(tmp_path))


def test_unknown_kind_refused(tmp_path):
    with pytest.raises(StateError, match="unknown record kind"):
        RoleState("kernel", str(tmp_path)).record("grub", "/x", "1")


def test_report_entry_takes_only_the_contract_statuses():
    entry = report_entry("/x", "1", "0", "would_change", reason="why")
    assert entry == {
        "setting": "/x",
        "expected": "1",
        "actual": "0",
        "status": "would_change",
        "reason": "why",
        "pending_reboot": False,
    }
    with pytest.raises(ValueError, match="'changed' is not one of applied, would_change"):
        report_entry("/x", "1", "0", "changed")


def test_text_diff_shows_absent_as_empty():
    assert text_diff("/x", None, "1") == {
        "before_header": "/x",
        "after_header": "/x",
        "before": "",
        "after": "1\n",
    }
