from __future__ import annotations

import errno
import json
import os

import pytest
from ansible_collections.lowlatency.tuning.plugins.modules import setting

SWAPPINESS = "/proc/sys/vm/swappiness"
THP = "/sys/kernel/mm/transparent_hugepage/enabled"
WQ_MASK = "/sys/devices/virtual/workqueue/cpumask"
CHECK_DIFF = {"_ansible_check_mode": True, "_ansible_diff": True}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    files = {
        SWAPPINESS: "60\n",
        THP: "always madvise [never]\n",
        WQ_MASK: "0000000f\n",
        "/proc/sys/net/ipv4/tcp_rmem": "4096\t131072\t6291456\n",
    }
    for path, content in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return root


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


def knob(tree, path):
    return tree / path.lstrip("/")


def record(state_dir, owner="kernel"):
    return json.loads((state_dir / f"{owner}.json").read_text())


def args(tree, state_dir, **extra):
    base = {"owner": "kernel", "sysfs_root": str(tree), "state_dir": str(state_dir)}
    base.update(extra)
    return base


def test_write_records_original_and_reports(module_runner, tree, state_dir):
    result = module_runner(
        setting,
        args(tree, state_dir, path=SWAPPINESS, value="10", compare="int", reason="less swapping"),
    )
    assert result["changed"] is True
    assert result["status"] == "applied"
    assert knob(tree, SWAPPINESS).read_text() == "10"
    assert result["original"] == "60"
    assert result["report"] == {
        "setting": SWAPPINESS,
        "expected": "10",
        "actual": "10",
        "status": "applied",
        "reason": "less swapping",
        "pending_reboot": False,
    }
    entry = record(state_dir)["entries"]["setting"][SWAPPINESS]
    assert entry["original"] == "60"
    assert entry["expected"] == "10"
    assert entry["compare"] == "int"
    assert oct((state_dir / "kernel.json").stat().st_mode & 0o777) == "0o600"


def test_second_run_is_unchanged(module_runner, tree, state_dir):
    module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="10"))
    before = (state_dir / "kernel.json").read_text()
    result = module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="10"))
    assert result["changed"] is False
    assert result["status"] == result["report"]["status"] == "applied"
    assert (state_dir / "kernel.json").read_text() == before


def test_original_is_never_overwritten(module_runner, tree, state_dir):
    module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="10"))
    result = module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="5"))
    assert result["changed"] is True
    assert result["original"] == "60"
    entry = record(state_dir)["entries"]["setting"][SWAPPINESS]
    assert entry == {**entry, "original": "60", "expected": "5"}
    restored = module_runner(setting, args(tree, state_dir, path=SWAPPINESS, state="absent"))
    assert restored["status"] == "restored"
    assert knob(tree, SWAPPINESS).read_text() == "60"


def test_check_mode_says_would_change_with_a_diff(module_runner, tree, state_dir):
    result = module_runner(
        setting,
        args(tree, state_dir, path=SWAPPINESS, value="10", reason="less swapping", **CHECK_DIFF),
    )
    assert result["changed"] is True
    assert result["status"] == result["report"]["status"] == "would_change"
    assert (result["report"]["expected"], result["report"]["actual"]) == ("10", "60")
    assert result["report"]["reason"] == "less swapping"
    assert result["diff"] == {
        "before_header": SWAPPINESS,
        "after_header": SWAPPINESS,
        "before": "60\n",
        "after": "10\n",
    }
    assert knob(tree, SWAPPINESS).read_text() == "60\n"
    assert not state_dir.exists()


def test_check_mode_predicts_unchanged(module_runner, tree, state_dir):
    result = module_runner(
        setting,
        args(tree, state_dir, path=SWAPPINESS, value="60", compare="int", **CHECK_DIFF),
    )
    assert result["changed"] is False
    assert result["status"] == "applied"
    assert result["diff"]["before"] == result["diff"]["after"] == "60\n"


def test_diff_after_a_write_shows_what_the_kernel_reads_back(module_runner, tree, state_dir):
    result = module_runner(
        setting, args(tree, state_dir, path=SWAPPINESS, value="10", _ansible_diff=True)
    )
    assert (result["diff"]["before"], result["diff"]["after"]) == ("60\n", "10\n")
    assert "diff" not in module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="10"))


def test_already_set_records_nothing(module_runner, tree, state_dir):
    result = module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="60"))
    assert result["changed"] is False
    assert not (state_dir / "kernel.json").exists()
    undo = module_runner(setting, args(tree, state_dir, path=SWAPPINESS, state="absent"))
    assert undo["changed"] is False
    assert undo["status"] == undo["report"]["status"] == "skipped"
    assert "nothing recorded" in undo["reason"]
    assert knob(tree, SWAPPINESS).read_text() == "60\n"


def test_missing_knob_is_skipped_not_failed(module_runner, tree, state_dir):
    path = "/sys/kernel/mm/ksm/run"
    result = module_runner(setting, args(tree, state_dir, path=path, value="0"))
    assert not result.get("failed")
    assert result["changed"] is False
    assert result["status"] == "skipped"
    assert result["reason"] == f"absent on this host: {path}"
    assert result["report"]["status"] == "skipped"
    assert not (tree / path.lstrip("/")).exists()
    assert not state_dir.exists()


@pytest.mark.parametrize("code", [errno.EROFS, errno.EINVAL, errno.EBUSY, errno.EPERM])
def test_refused_write_is_skipped_and_not_recorded(
    module_runner, tree, state_dir, monkeypatch, code
):
    def refuse(path, value):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(setting, "write_knob", refuse)
    result = module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="10"))
    assert not result.get("failed")
    assert result["status"] == "skipped"
    assert result["changed"] is False
    assert errno.errorcode[code] in result["reason"]
    assert not (state_dir / "kernel.json").exists()


def test_read_only_file_is_skipped(module_runner, tmp_path, state_dir):
    if os.geteuid() == 0:
        pytest.skip("root writes to a 0444 file; the EROFS case is covered by monkeypatch")
    root = tmp_path / "ro"
    target = root / "proc/sys/vm/swappiness"
    target.parent.mkdir(parents=True)
    target.write_text("60\n")
    target.chmod(0o444)
    result = module_runner(setting, args(root, state_dir, path=SWAPPINESS, value="10"))
    assert result["status"] == "skipped"
    assert "EACCES" in result["reason"]


def test_bracketed_thp(module_runner, tree, state_dir):
    result = module_runner(
        setting, args(tree, state_dir, path=THP, value="madvise", compare="bracketed")
    )
    assert result["changed"] is True
    assert result["original"] == "never"
    # A real THP file would now read "always [madvise] never"; the fake holds what was written.
    knob(tree, THP).write_text("always [madvise] never\n")
    again = module_runner(
        setting, args(tree, state_dir, path=THP, value="madvise", compare="bracketed")
    )
    assert again["changed"] is False
    undo = module_runner(setting, args(tree, state_dir, path=THP, state="absent"))
    assert undo["status"] == "restored"
    assert knob(tree, THP).read_text() == "never"


def test_mask_compare_accepts_other_notation(module_runner, tree, state_dir):
    result = module_runner(setting, args(tree, state_dir, path=WQ_MASK, value="f", compare="mask"))
    assert result["changed"] is False
    result = module_runner(
        setting, args(tree, state_dir, path=WQ_MASK, value="0x3", compare="mask")
    )
    assert result["changed"] is True
    assert result["original"] == "0000000f"


def test_exact_compare_collapses_whitespace(module_runner, tree, state_dir):
    result = module_runner(
        setting,
        args(tree, state_dir, path="/proc/sys/net/ipv4/tcp_rmem", value="4096 131072 6291456"),
    )
    assert result["changed"] is False


def test_drift_is_reported(module_runner, tree, state_dir, monkeypatch):
    def kernel_clamps(path, value):
        with open(path, "w") as handle:
            handle.write("1\n")

    monkeypatch.setattr(setting, "write_knob", kernel_clamps)
    result = module_runner(
        setting, args(tree, state_dir, path=SWAPPINESS, value="10", compare="int")
    )
    assert result["changed"] is True
    assert result["report"]["status"] == "drifted"
    assert "reads back '1'" in result["reason"]


def test_restore_check_mode_keeps_record(module_runner, tree, state_dir):
    module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="10"))
    result = module_runner(
        setting,
        args(tree, state_dir, path=SWAPPINESS, state="absent", **CHECK_DIFF),
    )
    assert result["changed"] is True
    assert result["status"] == "would_change"
    assert (result["diff"]["before"], result["diff"]["after"]) == ("10\n", "60\n")
    assert knob(tree, SWAPPINESS).read_text() == "10"
    assert SWAPPINESS in record(state_dir)["entries"]["setting"]


def test_restore_drops_record_file(module_runner, tree, state_dir):
    module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="10"))
    result = module_runner(setting, args(tree, state_dir, path=SWAPPINESS, state="absent"))
    assert result["changed"] is True
    assert result["report"]["status"] == "restored"
    assert result["report"]["expected"] == "60"
    assert not (state_dir / "kernel.json").exists()
    again = module_runner(setting, args(tree, state_dir, path=SWAPPINESS, state="absent"))
    assert again["changed"] is False


def test_restore_refused_keeps_record(module_runner, tree, state_dir, monkeypatch):
    module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="10"))

    def refuse(path, value):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(setting, "write_knob", refuse)
    result = module_runner(setting, args(tree, state_dir, path=SWAPPINESS, state="absent"))
    assert result["status"] == "skipped"
    assert "EROFS" in result["reason"]
    assert SWAPPINESS in record(state_dir)["entries"]["setting"]


@pytest.mark.parametrize(
    "path", ["/etc/sysctl.conf", "/sys", "/sys/../etc/passwd", "/proc/cmdline"]
)
def test_path_outside_sys_fails(module_runner, tree, state_dir, path):
    result = module_runner(setting, args(tree, state_dir, path=path, value="1"))
    assert result["failed"] is True
    assert "must be under /sys/ or /proc/sys/" in result["msg"]


def test_invalid_value_for_compare_fails(module_runner, tree, state_dir):
    result = module_runner(setting, args(tree, state_dir, path=WQ_MASK, value="zz", compare="mask"))
    assert result["failed"] is True
    assert "not valid for compare=mask" in result["msg"]


def test_bad_owner_fails(module_runner, tree, state_dir):
    result = module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="1", owner="../x"))
    assert result["failed"] is True
    assert "not a valid record name" in result["msg"]


def test_value_required_when_present(module_runner, tree, state_dir):
    result = module_runner(setting, args(tree, state_dir, path=SWAPPINESS))
    assert result["failed"] is True
    assert "value" in result["msg"]


def test_refused_write_keeps_the_earlier_record(module_runner, tree, state_dir, monkeypatch):
    module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="10"))
    before = record(state_dir)

    def refuse(path, value):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(setting, "write_knob", refuse)
    result = module_runner(setting, args(tree, state_dir, path=SWAPPINESS, value="5"))
    assert result["status"] == "skipped"
    assert record(state_dir) == before


def workqueues(tree, masks):
    for name, mask in masks.items():
        target = tree / "sys/devices/virtual/workqueue" / name / "cpumask"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(mask + "\n")


WQ_PATHS = [WQ_MASK, "/sys/devices/virtual/workqueue/*/cpumask"]


def test_paths_set_every_match_in_one_call(module_runner, tree, state_dir):
    workqueues(tree, {"writeback": "f", "blkcg_punt_bio": "f", "already": "3"})
    result = module_runner(
        setting, args(tree, state_dir, paths=WQ_PATHS, value="3", compare="mask")
    )
    assert result["changed"] is True
    assert "status" not in result
    by_path = {item["path"]: item for item in result["results"]}
    assert list(by_path) == [
        WQ_MASK,
        "/sys/devices/virtual/workqueue/already/cpumask",
        "/sys/devices/virtual/workqueue/blkcg_punt_bio/cpumask",
        "/sys/devices/virtual/workqueue/writeback/cpumask",
    ]
    assert [item["report"]["status"] for item in result["results"]] == ["applied"] * 4
    assert by_path["/sys/devices/virtual/workqueue/already/cpumask"]["changed"] is False
    assert knob(tree, "/sys/devices/virtual/workqueue/writeback/cpumask").read_text() == "3"
    entries = record(state_dir)["entries"]["setting"]
    assert sorted(entries) == sorted(
        set(by_path) - {"/sys/devices/virtual/workqueue/already/cpumask"}
    )
    assert entries["/sys/devices/virtual/workqueue/blkcg_punt_bio/cpumask"]["original"] == "f"


def test_paths_second_run_and_check_mode_are_unchanged(module_runner, tree, state_dir):
    workqueues(tree, {"writeback": "f"})
    module_runner(setting, args(tree, state_dir, paths=WQ_PATHS, value="3", compare="mask"))
    again = module_runner(setting, args(tree, state_dir, paths=WQ_PATHS, value="3", compare="mask"))
    assert again["changed"] is False
    check = module_runner(
        setting,
        args(tree, state_dir, paths=WQ_PATHS, value="1", compare="mask", _ansible_check_mode=True),
    )
    assert check["changed"] is True
    assert {item["status"] for item in check["results"]} == {"would_change"}
    assert knob(tree, "/sys/devices/virtual/workqueue/writeback/cpumask").read_text() == "3"


def test_paths_restore_each_original(module_runner, tree, state_dir):
    workqueues(tree, {"writeback": "f", "blkcg_punt_bio": "e"})
    module_runner(setting, args(tree, state_dir, paths=WQ_PATHS, value="3", compare="mask"))
    recorded = sorted(record(state_dir)["entries"]["setting"])
    result = module_runner(setting, args(tree, state_dir, paths=recorded, state="absent"))
    assert {item["status"] for item in result["results"]} == {"restored"}
    assert knob(tree, "/sys/devices/virtual/workqueue/blkcg_punt_bio/cpumask").read_text() == "e"
    assert knob(tree, WQ_MASK).read_text() == "0000000f"
    assert not (state_dir / "kernel.json").exists()


def test_paths_missing_plain_path_skipped_and_unmatched_pattern_adds_nothing(
    module_runner, tree, state_dir
):
    result = module_runner(
        setting,
        args(
            tree,
            state_dir,
            paths=["/sys/devices/virtual/workqueue/*/cpumask", "/sys/kernel/mm/ksm/run"],
            value="0",
        ),
    )
    assert [(item["path"], item["status"]) for item in result["results"]] == [
        ("/sys/kernel/mm/ksm/run", "skipped")
    ]


def test_paths_outside_sys_fail_before_any_write(module_runner, tree, state_dir):
    result = module_runner(
        setting, args(tree, state_dir, paths=[SWAPPINESS, "/etc/passwd"], value="10")
    )
    assert result["failed"] is True
    assert "/etc/passwd" in result["msg"]
    assert knob(tree, SWAPPINESS).read_text() == "60\n"


def test_path_and_paths_are_exclusive(module_runner, tree, state_dir):
    result = module_runner(
        setting, args(tree, state_dir, path=SWAPPINESS, paths=[SWAPPINESS], value="10")
    )
    assert result["failed"] is True
    assert "mutually exclusive" in result["msg"]
