"""Override detection and the host-side check's metrics (module_utils/drift.py)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from ansible_collections.lowlatency.tuning.plugins.module_utils import drift
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import RoleState
from prometheus_client.parser import text_string_to_metric_families

OURS = "/etc/sysctl.d/90-lowlatency-tuning.conf"
DROPIN = "/etc/systemd/system/app.service.d/50-lowlatency-pinning.conf"
REPO = Path(__file__).resolve().parents[4]


def put(root: Path, path: str, text: str) -> None:
    real = root / path.lstrip("/")
    real.parent.mkdir(parents=True, exist_ok=True)
    real.write_text(text)


def link(root: Path, path: str, target: str) -> None:
    real = root / path.lstrip("/")
    real.parent.mkdir(parents=True, exist_ok=True)
    real.symlink_to(target)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    put(root, OURS, "# managed\nvm.swappiness = 10\nkernel.numa_balancing = 0\n")
    return root


def row_of(host: Path) -> dict:
    row = drift.check_conf_dir("kernel", OURS, drift.SYSCTL_DIRS, str(host))
    assert row is not None
    return row


# --- sysctl.d order -------------------------------------------------------------


def test_order_is_by_file_name_across_directories(host):
    put(host, "/usr/lib/sysctl.d/50-default.conf", "")
    put(host, "/run/sysctl.d/95-run.conf", "")
    put(host, "/usr/lib/sysctl.d/99-vendor.conf", "")
    put(host, "/etc/sysctl.d/README", "not a .conf file")
    ordered, masked = drift.sysctl_order(str(host))
    assert ordered == [
        "/usr/lib/sysctl.d/50-default.conf",
        OURS,
        "/run/sysctl.d/95-run.conf",
        "/usr/lib/sysctl.d/99-vendor.conf",
    ]
    assert masked == {}


def test_etc_masks_the_same_name_further_down(host):
    put(host, "/usr/lib/sysctl.d/99-vendor.conf", "vm.swappiness = 60\n")
    put(host, "/etc/sysctl.d/99-vendor.conf", "vm.swappiness = 10\n")
    ordered, masked = drift.sysctl_order(str(host))
    assert "/usr/lib/sysctl.d/99-vendor.conf" not in ordered
    assert masked == {"/usr/lib/sysctl.d/99-vendor.conf": "/etc/sysctl.d/99-vendor.conf"}
    assert row_of(host)["status"] == "applied"


def test_a_dev_null_link_masks_without_being_read(host):
    put(host, "/usr/lib/sysctl.d/99-vendor.conf", "vm.swappiness = 60\n")
    link(host, "/etc/sysctl.d/99-vendor.conf", "/dev/null")
    ordered = drift.sysctl_order(str(host))[0]
    assert ordered == [OURS]
    assert row_of(host)["status"] == "applied"


def test_a_later_file_that_sets_our_key_otherwise_is_named(host):
    put(host, "/etc/sysctl.d/99-local.conf", "vm.swappiness=60\nvm.dirty_ratio = 5\n")
    row = row_of(host)
    assert row["status"] == "drifted"
    assert row["setting"] == "overrides of " + OURS
    assert row["owner"] == "kernel"
    assert row["actual"] == "vm.swappiness=60 by /etc/sysctl.d/99-local.conf"
    assert row["reason"] == "overridden by /etc/sysctl.d/99-local.conf; ours: vm.swappiness=10"


def test_an_earlier_file_or_the_same_value_is_no_override(host):
    put(host, "/etc/sysctl.d/10-early.conf", "vm.swappiness = 60\n")
    put(host, "/usr/lib/sysctl.d/99-same.conf", "vm.swappiness =  10\n")
    row = row_of(host)
    assert row["status"] == "applied"
    assert row["reason"] == "no file applied after it sets its 2 key(s) otherwise"


def test_the_last_file_decides(host):
    put(host, "/etc/sysctl.d/95-a.conf", "vm.swappiness = 60\n")
    put(host, "/usr/lib/sysctl.d/97-b.conf", "vm.swappiness = 10\n")
    assert row_of(host)["status"] == "applied"
    put(host, "/run/sysctl.d/98-c.conf", "kernel/numa_balancing = 1\n")
    assert row_of(host)["actual"] == "kernel.numa_balancing=1 by /run/sysctl.d/98-c.conf"


def test_globs_and_ignored_failure_prefix_match_our_keys(host):
    put(host, "/usr/lib/sysctl.d/99-glob.conf", "-vm.swap*ss = 1\n")
    assert row_of(host)["actual"] == "vm.swappiness=1 by /usr/lib/sysctl.d/99-glob.conf"


def test_sysctl_conf_is_read_last_once(host):
    put(host, "/etc/sysctl.conf", "kernel.numa_balancing = 1\n")
    link(host, "/etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")
    ordered = drift.sysctl_order(str(host))[0]
    assert ordered == [OURS, "/etc/sysctl.d/99-sysctl.conf"]
    assert "by /etc/sysctl.d/99-sysctl.conf" in row_of(host)["actual"]
    (host / "etc/sysctl.d/99-sysctl.conf").unlink()
    assert drift.sysctl_order(str(host))[0] == [OURS, "/etc/sysctl.conf"]
    assert row_of(host)["status"] == "drifted"


def test_our_file_masked_is_drifted(tmp_path):
    root = tmp_path / "root"
    ours = "/usr/lib/sysctl.d/90-lowlatency-tuning.conf"
    put(root, ours, "vm.swappiness = 10\n")
    put(root, "/etc/sysctl.d/90-lowlatency-tuning.conf", "")
    row = drift.check_conf_dir("kernel", ours, drift.SYSCTL_DIRS, str(root))
    assert row["status"] == "drifted"
    assert row["reason"].startswith("/etc/sysctl.d/90-lowlatency-tuning.conf masks it")


def test_system_conf_d_by_section_and_key(tmp_path):
    root = tmp_path / "root"
    ours = "/etc/systemd/system.conf.d/50-lowlatency-pinning.conf"
    put(root, ours, "[Manager]\nCPUAffinity=0-1\n")
    put(root, "/usr/lib/systemd/system.conf.d/60-vendor.conf", "[Manager]\nCPUAffinity=0-3\n")
    row = drift.check_conf_dir(
        "service_pinning", ours, drift.MANAGER_DIRS, str(root), kind="manager"
    )
    assert (
        row["actual"] == "Manager.CPUAffinity=0-3 by /usr/lib/systemd/system.conf.d/60-vendor.conf"
    )


# --- unit drop-ins and environment files ------------------------------------------


class FakeSystemctl:
    """systemctl show answers per unit; records each command line."""

    def __init__(self, blocks: dict[str, str], rc: int = 0) -> None:
        self.blocks = blocks
        self.rc = rc
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        if self.rc:
            return self.rc, "", "Failed to connect to bus"
        units = argv[argv.index("--") + 1 :]
        out = "\n".join(f"Id={unit}\n{self.blocks[unit].strip()}\n" for unit in units)
        return 0, out, ""


def pinned(root: Path) -> None:
    put(
        root,
        DROPIN,
        "[Service]\nCPUAffinity=2-3\nNice=-5\nCPUSchedulingPolicy=fifo\nLimitMEMLOCK=64M\n"
        "Environment=LD_PRELOAD=/usr/lib/libjemalloc.so.2\n",
    )


def show(dropins: list[str], affinity: str = "2 3", nice: str = "-5", policy: str = "1") -> str:
    return (
        "LoadState=loaded\nFragmentPath=/etc/systemd/system/app.service\n"
        f"DropInPaths={' '.join(dropins)}\nCPUAffinity={affinity}\nNice={nice}\n"
        f"CPUSchedulingPolicy={policy}\nLimitMEMLOCK=67108864\n"
        "Environment=LD_PRELOAD=/usr/lib/libjemalloc.so.2\nEnvironmentFiles=\n"
    )


def test_dropin_in_force_is_applied(tmp_path):
    pinned(tmp_path)
    block = drift.parse_show(show([DROPIN]))[0]
    row = drift.check_dropin("service_pinning", DROPIN, block, str(tmp_path))
    assert row["status"] == "applied", row


def test_a_later_dropin_is_named_with_the_effective_value(tmp_path):
    pinned(tmp_path)
    later = "/etc/systemd/system/app.service.d/60-local.conf"
    put(tmp_path, later, "[Service]\nCPUAffinity=\nCPUAffinity=0-1\nNice=0\n")
    block = drift.parse_show(show([DROPIN, later], affinity="0-1", nice="0"))[0]
    row = drift.check_dropin("service_pinning", DROPIN, block, str(tmp_path))
    assert row["status"] == "drifted"
    assert row["actual"] == (
        f"CPUAffinity=0-1 by {later} (in effect: 0-1); Nice=0 by {later} (in effect: 0)"
    )
    assert row["reason"] == f"overridden by {later}; ours: CPUAffinity=2-3, Nice=-5"


def test_an_earlier_file_merged_into_the_affinity_is_named(tmp_path):
    pinned(tmp_path)
    earlier = "/usr/lib/systemd/system/app.service.d/10-vendor.conf"
    put(tmp_path, earlier, "[Service]\nCPUAffinity=0\n")
    block = drift.parse_show(show([earlier, DROPIN], affinity="0 2 3"))[0]
    row = drift.check_dropin("service_pinning", DROPIN, block, str(tmp_path))
    assert row["status"] == "drifted"
    assert row["actual"] == f"CPUAffinity=0 2 3 by {earlier} (in effect: 0 2 3)"


def test_a_dropin_systemd_has_not_loaded_is_drifted(tmp_path):
    pinned(tmp_path)
    block = drift.parse_show(show([]))[0]
    row = drift.check_dropin("service_pinning", DROPIN, block, str(tmp_path))
    assert row["status"] == "drifted"
    assert "daemon-reload" in row["reason"]


@pytest.mark.parametrize(
    ("key", "ours", "shown", "differs"),
    [
        ("CPUAffinity", "2-3", "2 3", False),
        ("AllowedCPUs", "2,3", "2-3", False),
        ("CPUSchedulingPolicy", "fifo", "1", False),
        ("CPUSchedulingPolicy", "rr", "1", True),
        ("LimitMEMLOCK", "64M", "67108864", False),
        ("LimitMEMLOCK", "infinity", "infinity", False),
        ("NUMAPolicy", "preferred", "1", False),
        ("Nice", "-5", "0", True),
        ("Slice", "lowlatency.slice", "system.slice", True),
    ],
)
def test_unit_values_compare_as_systemctl_prints_them(key, ours, shown, differs):
    assert drift._differs(key, ours, shown) is differs


IRQBALANCE = "/etc/default/irqbalance"


def irqbalance(root: Path, files: str, dropins: str = "") -> dict:
    put(root, IRQBALANCE, 'IRQBALANCE_BANNED_CPULIST=2-3\nIRQBALANCE_ARGS="--policyscript=/x"\n')
    return drift.parse_show(
        f"Id=irqbalance.service\nLoadState=loaded\nDropInPaths={dropins}\n{files}"
    )[0]


def test_an_environment_file_loaded_later_is_named(tmp_path):
    later = "/etc/irqbalance.env"
    put(tmp_path, later, "IRQBALANCE_BANNED_CPULIST=\n")
    block = irqbalance(
        tmp_path,
        f"EnvironmentFiles={IRQBALANCE} (ignore_errors=yes)\n"
        f"EnvironmentFiles={later} (ignore_errors=no)\n",
    )
    row = drift.check_env_file("irq", IRQBALANCE, block, str(tmp_path))
    assert row["status"] == "drifted"
    assert row["actual"] == f"IRQBALANCE_BANNED_CPULIST= by {later}"


def test_a_dropin_that_replaces_the_environment_file_is_named(tmp_path):
    dropin = "/etc/systemd/system/irqbalance.service.d/override.conf"
    put(tmp_path, dropin, "[Service]\nEnvironmentFile=\nEnvironmentFile=/etc/irqbalance.env\n")
    block = irqbalance(
        tmp_path, "EnvironmentFiles=/etc/irqbalance.env (ignore_errors=no)\n", dropin
    )
    row = drift.check_env_file("irq", IRQBALANCE, block, str(tmp_path))
    assert row["status"] == "drifted"
    assert f"{dropin} sets EnvironmentFile=" in row["reason"]


def test_a_file_the_unit_does_not_load_gives_no_row(tmp_path):
    block = irqbalance(
        tmp_path, "EnvironmentFiles=/usr/lib/irqbalance/defaults.env (ignore_errors=yes)\n"
    )
    assert drift.check_env_file("irq", IRQBALANCE, block, str(tmp_path)) is None


# --- the records drive it ------------------------------------------------------------


def record(state_dir: Path, owner: str, files=(), settings=()) -> None:
    state = RoleState(owner, str(state_dir))
    for path in files:
        state.record("file", path, {"exists": False}, None)
    for path, expected, compare in settings:
        state.record("setting", path, "0", expected, compare=compare)
    state.save()


def test_one_systemctl_call_for_every_unit(tmp_path, host):
    state_dir = tmp_path / "state"
    pinned(host)
    other = "/etc/systemd/system/system.slice.d/50-lowlatency-pinning.conf"
    put(host, other, "[Slice]\nAllowedCPUs=0-1\n")
    record(state_dir, "kernel", files=[OURS, "/etc/default/grub"])
    record(state_dir, "service_pinning", files=[DROPIN, other])
    put(host, "/etc/sysctl.d/99-local.conf", "vm.swappiness = 60\n")
    systemctl = FakeSystemctl(
        {"app.service": show([DROPIN]), "system.slice": f"DropInPaths={other}\nAllowedCPUs=0-1\n"}
    )
    rows = drift.check_overrides(str(state_dir), root=str(host), run=systemctl)
    assert len(systemctl.calls) == 1
    assert systemctl.calls[0][-3:] == ["--", "app.service", "system.slice"]
    assert {"CPUAffinity", "AllowedCPUs", "DropInPaths"} <= set(systemctl.calls[0])
    by_file = {row["setting"]: (row["owner"], row["status"]) for row in rows}
    assert by_file == {
        f"overrides of {OURS}": ("kernel", "drifted"),
        f"overrides of {DROPIN}": ("service_pinning", "applied"),
        f"overrides of {other}": ("service_pinning", "applied"),
    }


def test_without_systemd_the_unit_rows_are_skipped(tmp_path, host):
    state_dir = tmp_path / "state"
    pinned(host)
    record(state_dir, "service_pinning", files=[DROPIN])
    rows = drift.check_overrides(str(state_dir), root=str(host), run=FakeSystemctl({}, rc=1))
    assert [row["status"] for row in rows] == ["skipped"]
    assert "Failed to connect to bus" in rows[0]["reason"]


def test_unreadable_records_are_one_skipped_row(tmp_path):
    (tmp_path / "kernel.json").write_text("{not json")
    rows = drift.check_host(str(tmp_path), root=str(tmp_path))
    assert [(row["status"], row["owner"]) for row in rows] == [("skipped", "verify")]
    assert "not valid JSON" in rows[0]["reason"]


def test_recorded_knobs_read_now(tmp_path):
    root = tmp_path / "root"
    put(root, "/proc/sys/vm/swappiness", "60\n")
    put(root, "/proc/sys/kernel/numa_balancing", "0\n")
    put(root, "/proc/irq/30/smp_affinity_list", "1\n")
    record(
        tmp_path / "state",
        "kernel",
        settings=[
            ("/proc/sys/vm/swappiness", "10", "int"),
            ("/proc/sys/kernel/numa_balancing", "0", "int"),
            ("/sys/kernel/mm/ksm/run", "0", "exact"),
        ],
    )
    record(
        tmp_path / "state", "irq", settings=[("/proc/irq/30/smp_affinity_list", "0-1", "cpulist")]
    )
    record(tmp_path / "state", "nic", settings=[("ethtool:eth1:coalesce:rx-usecs", "0", "exact")])
    rows = {
        row["setting"]: row for row in drift.check_settings(str(tmp_path / "state"), root=str(root))
    }
    assert rows["/proc/sys/vm/swappiness"]["status"] == "drifted"
    assert rows["/proc/sys/vm/swappiness"]["actual"] == "60"
    assert rows["/proc/sys/kernel/numa_balancing"]["status"] == "applied"
    assert rows["/sys/kernel/mm/ksm/run"]["status"] == "skipped"
    assert rows["/proc/irq/30/smp_affinity_list"]["status"] == "applied"
    assert rows["ethtool:eth1:coalesce:rx-usecs"]["status"] == "skipped"


# --- the textfile --------------------------------------------------------------------


def metrics(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_textfile_has_a_gauge_per_setting_status_and_the_run_time():
    rows = [
        dict(drift.report_entry('a "quoted"\\path', "1", "1", "applied"), owner="kernel"),
        dict(drift.report_entry("overrides of " + OURS, "none", "x", "drifted"), owner="kernel"),
        dict(drift.report_entry("ethtool:eth1", "0", None, "skipped"), owner="nic"),
    ]
    families = metrics(drift.textfile(rows, 1700000000.5))
    status = families["lowlatency_tuning_setting_status"]
    assert status.type == "gauge"
    ones = {(s.labels["setting"], s.labels["status"]) for s in status.samples if s.value == 1}
    assert ones == {
        ('a "quoted"\\path', "applied"),
        ("overrides of " + OURS, "drifted"),
        ("ethtool:eth1", "skipped"),
    }
    assert len(status.samples) == 9
    counts = {s.labels["status"]: s.value for s in families["lowlatency_tuning_settings"].samples}
    assert counts == {"applied": 1, "drifted": 1, "skipped": 1}
    last = families["lowlatency_tuning_verify_last_run_timestamp_seconds"]
    assert last.samples[0].value == 1700000000.5


def load_checker():
    path = REPO / "roles/verify/files/lowlatency-tuning-verify.py"
    spec = importlib.util.spec_from_file_location("lowlatency_tuning_verify", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checker_writes_the_textfile_through_a_rename(tmp_path, capsys):
    state_dir, out = tmp_path / "state", tmp_path / "textfile"
    out.mkdir()
    # Real knobs of the machine running the test: one as recorded, one not.
    ostype = Path("/proc/sys/kernel/ostype").read_text().strip()
    record(
        state_dir,
        "kernel",
        settings=[
            ("/proc/sys/kernel/ostype", ostype, "exact"),
            ("/proc/sys/kernel/osrelease", "0.0", "exact"),
        ],
    )
    (out / "lowlatency_tuning.prom").write_text("old\n")
    before = os.stat(out / "lowlatency_tuning.prom").st_ino
    assert load_checker().main(["--state-dir", str(state_dir), "--textfile-dir", str(out)]) == 0
    assert os.listdir(out) == ["lowlatency_tuning.prom"], "no temporary file left behind"
    assert os.stat(out / "lowlatency_tuning.prom").st_ino != before, (
        "replaced, not rewritten in place"
    )
    families = metrics((out / "lowlatency_tuning.prom").read_text())
    counts = {s.labels["status"]: s.value for s in families["lowlatency_tuning_settings"].samples}
    assert counts == {"applied": 1, "drifted": 1, "skipped": 0}
    assert "drifted: kernel /proc/sys/kernel/osrelease" in capsys.readouterr().out


def test_checker_fails_when_it_cannot_write(tmp_path, capsys):
    assert (
        load_checker().main(["--state-dir", str(tmp_path), "--textfile-dir", str(tmp_path / "no")])
        == 1
    )
    assert "cannot write" in capsys.readouterr().err
