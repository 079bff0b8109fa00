from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from ansible_collections.lowlatency.tuning.plugins.modules import file_record


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


def args(state_dir, path, **extra):
    base = {"owner": "kernel", "state_dir": str(state_dir), "path": str(path)}
    base.update(extra)
    return base


def record_of(state_dir, path):
    entries = json.loads((state_dir / "kernel.json").read_text())["entries"]
    return entries["file"][str(path)]["original"]


def test_record_and_restore_existing_file(module_runner, tmp_path, state_dir):
    grub = tmp_path / "etc/default/grub"
    grub.parent.mkdir(parents=True)
    grub.write_text('GRUB_CMDLINE_LINUX="quiet"\n')
    grub.chmod(0o640)

    first = module_runner(file_record, args(state_dir, grub))
    assert first["changed"] is True
    assert first["status"] == first["report"]["status"] == "applied"
    copy = record_of(state_dir, grub)["copy"]
    assert Path(copy).read_text() == 'GRUB_CMDLINE_LINUX="quiet"\n'
    assert os.stat(copy).st_mode & 0o777 == 0o600

    grub.write_text('GRUB_CMDLINE_LINUX="quiet nosmt"\n')
    grub.chmod(0o644)
    second = module_runner(file_record, args(state_dir, grub))
    assert second["changed"] is False
    assert second["status"] == "applied"
    assert Path(copy).read_text() == 'GRUB_CMDLINE_LINUX="quiet"\n', (
        "a second run must keep the first copy"
    )

    restored = module_runner(file_record, args(state_dir, grub, state="absent"))
    assert restored["changed"] is True
    assert restored["status"] == "restored"
    assert grub.read_text() == 'GRUB_CMDLINE_LINUX="quiet"\n'
    assert grub.stat().st_mode & 0o777 == 0o640
    assert restored["report"]["expected"] == restored["report"]["actual"]
    assert restored["report"]["status"] == "restored"
    assert not os.path.exists(copy)
    assert not (state_dir / "kernel.json").exists()
    assert not (state_dir / "files").exists(), "restoring leaves no empty copy directories"


def test_absent_file_is_deleted_on_restore(module_runner, tmp_path, state_dir):
    dropin = tmp_path / "etc/systemd/system/irqbalance.service.d/50-lowlatency.conf"
    recorded = module_runner(file_record, args(state_dir, dropin))
    assert recorded["changed"] is True
    entry = json.loads((state_dir / "kernel.json").read_text())["entries"]["file"][str(dropin)]
    assert entry["original"] == {"exists": False}

    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\n")
    restored = module_runner(file_record, args(state_dir, dropin, state="absent"))
    assert restored["changed"] is True
    assert not dropin.exists()
    assert restored["report"]["actual"] == "absent"


def test_check_mode_records_nothing(module_runner, tmp_path, state_dir):
    target = tmp_path / "conf"
    target.write_text("x\n")
    result = module_runner(
        file_record, args(state_dir, target, _ansible_check_mode=True, _ansible_diff=True)
    )
    assert result["changed"] is True
    assert result["status"] == "would_change"
    assert result["diff"]["before"] == ""
    assert result["diff"]["after"] == f"{target}: original of {target} recorded\n"
    assert not state_dir.exists()


def test_check_mode_restore_changes_nothing(module_runner, tmp_path, state_dir):
    target = tmp_path / "conf"
    target.write_text("before\n")
    module_runner(file_record, args(state_dir, target))
    target.write_text("after\n")
    result = module_runner(
        file_record,
        args(state_dir, target, state="absent", _ansible_check_mode=True, _ansible_diff=True),
    )
    assert result["changed"] is True
    assert result["status"] == result["report"]["status"] == "would_change"
    assert (result["diff"]["before"], result["diff"]["after"]) == ("after\n", "before\n")
    assert target.read_text() == "after\n"
    assert (state_dir / "kernel.json").exists()


def test_diff_of_restoring_a_file_that_did_not_exist(module_runner, tmp_path, state_dir):
    target = tmp_path / "dropin.conf"
    module_runner(file_record, args(state_dir, target))
    target.write_text("[Service]\n")
    result = module_runner(file_record, args(state_dir, target, state="absent", _ansible_diff=True))
    assert result["status"] == "restored"
    assert (result["diff"]["before"], result["diff"]["after"]) == ("[Service]\n", "")


def test_restore_without_record_is_unchanged(module_runner, tmp_path, state_dir):
    target = tmp_path / "conf"
    target.write_text("mine\n")
    result = module_runner(file_record, args(state_dir, target, state="absent"))
    assert result["changed"] is False
    assert result["status"] == result["report"]["status"] == "skipped"
    assert target.read_text() == "mine\n"


def test_settings_and_files_share_one_record(module_runner, tmp_path, state_dir):
    first = tmp_path / "a"
    second = tmp_path / "b"
    first.write_text("1")
    module_runner(file_record, args(state_dir, first))
    module_runner(file_record, args(state_dir, second))
    module_runner(file_record, args(state_dir, first, state="absent"))
    data = json.loads((state_dir / "kernel.json").read_text())
    assert list(data["entries"]["file"]) == [str(second)]


def test_missing_copy_fails_and_keeps_record(module_runner, tmp_path, state_dir):
    target = tmp_path / "conf"
    target.write_text("x")
    module_runner(file_record, args(state_dir, target))
    copy = record_of(state_dir, target)["copy"]
    os.unlink(copy)
    result = module_runner(file_record, args(state_dir, target, state="absent"))
    assert result["failed"] is True
    assert "is missing" in result["msg"]
    assert (state_dir / "kernel.json").exists()


def test_directory_is_refused(module_runner, tmp_path, state_dir):
    result = module_runner(file_record, args(state_dir, tmp_path))
    assert result["failed"] is True
    assert "not a regular file" in result["msg"]


def test_relative_path_is_refused(module_runner, state_dir):
    result = module_runner(file_record, args(state_dir, "etc/default/grub"))
    assert result["failed"] is True
    assert "must be absolute" in result["msg"]
