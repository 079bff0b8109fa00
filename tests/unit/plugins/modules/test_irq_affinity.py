from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from ansible_collections.lowlatency.tuning.plugins.module_utils import irq as irq_utils
from ansible_collections.lowlatency.tuning.plugins.modules import irq_affinity

INTERRUPTS = """\
           CPU0       CPU1       CPU2       CPU3
  0:         40          0          0          0   IO-APIC   2-edge      timer
  1:          9          0          0          0   IO-APIC   1-edge      i8042
 24:          0          0          0          0   PCI-MSI 65536-edge      virtio0-config
 25:        100          0          0          0   PCI-MSI 65537-edge      virtio0-input.0
 30:          0          0          0          0   PCI-MSI 1048576-edge      virtio1-config
 31:          5          0          0          0   PCI-MSI 1048577-edge      virtio1-input.0
 32:          5          0          0          0   PCI-MSI 1048578-edge      virtio1-output.0
 33:          5          0          0          0   PCI-MSI 1048579-edge      virtio1-input.1
 34:          5          0          0          0   PCI-MSI 1048580-edge      virtio1-output.1
NMI:          0          0          0          0   Non-maskable interrupts
LOC:       1000       1000       1000       1000   Local timer interrupts
"""


def build(root: Path, eth1_msi=(30, 31, 32, 33, 34), eth0_msi=(24, 25)) -> Path:
    (root / "proc/irq").mkdir(parents=True)
    (root / "proc/interrupts").write_text(INTERRUPTS)
    (root / "proc/irq/default_smp_affinity").write_text("f\n")
    for irq in (0, 1, 24, 25, 30, 31, 32, 33, 34):
        (root / f"proc/irq/{irq}").mkdir()
        (root / f"proc/irq/{irq}/smp_affinity_list").write_text("0-3\n")
        (root / f"proc/irq/{irq}/effective_affinity_list").write_text("0\n")
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True)
    (cpu / "online").write_text("0-3\n")
    for name, msi, slot in (("eth0", eth0_msi, 3), ("eth1", eth1_msi, 4)):
        pci = root / f"sys/devices/pci0000:00/0000:00:{slot:02x}.0"
        virtio = pci / f"virtio{slot - 3}"
        virtio.mkdir(parents=True)
        if msi is not None:
            (pci / "msi_irqs").mkdir()
            for irq in msi:
                (pci / "msi_irqs" / str(irq)).write_text("msix\n")
        net = root / "sys/class/net" / name
        net.mkdir(parents=True)
        (net / "device").symlink_to(virtio)
        for index in range(2):
            (net / f"queues/rx-{index}").mkdir(parents=True)
            (net / f"queues/rx-{index}/rps_cpus").write_text("0\n")
            (net / f"queues/tx-{index}").mkdir(parents=True)
            (net / f"queues/tx-{index}/xps_cpus").write_text(f"{1 << (index * 2):x}\n")
    return root


@pytest.fixture
def root(tmp_path):
    return build(tmp_path / "root")


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


def args(root, state_dir, **extra):
    base = {"root": str(root), "state_dir": str(state_dir)}
    base.update(extra)
    return base


def affinity(root, irq):
    return (root / f"proc/irq/{irq}/smp_affinity_list").read_text().strip()


def test_interface_irqs_from_the_pci_function_above_virtio(root):
    names = irq_utils.irq_names(str(root))
    assert names[31] == "virtio1-input.0"
    assert names[0] == "timer"
    found = irq_utils.interface_irqs(str(root), "eth1", names)
    assert [item["irq"] for item in found] == [30, 31, 32, 33, 34]
    assert [item["queue"] for item in found] == [False, True, True, True, True]


def test_interface_without_msi_falls_back_to_names(tmp_path):
    root = build(tmp_path / "r", eth1_msi=None)
    (root / "proc/interrupts").write_text(
        INTERRUPTS + " 40:  1  0  0  0   PCI-MSI 1-edge      eth1-TxRx-0\n"
    )
    found = irq_utils.interface_irqs(str(root), "eth1", irq_utils.irq_names(str(root)))
    assert [(item["irq"], item["queue"]) for item in found] == [(40, True)]


def test_spread_deals_cpus_over_queues():
    assert irq_utils.spread([0, 1, 2, 3], 2) == [[0, 2], [1, 3]]
    assert irq_utils.spread([0, 1], 4) == [[0], [1], [0], [1]]
    assert irq_utils.spread([], 2) == [[], []]


def test_pins_nic_irqs_rps_xps_and_records(module_runner, root, state_dir):
    result = module_runner(
        irq_affinity,
        args(root, state_dir, interfaces=["eth1"], cpus="0-1", rps_cpus="0-1", xps_cpus="spread"),
    )
    assert result["changed"] is True
    for irq in (30, 31, 32, 33, 34):
        assert affinity(root, irq) == "0-1"
    # Not the interface's: untouched without other_irqs.
    assert affinity(root, 25) == "0-3"
    queues = root / "sys/class/net/eth1/queues"
    assert (queues / "rx-0/rps_cpus").read_text() == "3"
    assert (queues / "rx-1/rps_cpus").read_text() == "3"
    assert (queues / "tx-0/xps_cpus").read_text() == "5"
    assert (queues / "tx-1/xps_cpus").read_text() == "a"
    record = json.loads((state_dir / "irq.json").read_text())["entries"]["setting"]
    assert record["/proc/irq/31/smp_affinity_list"]["original"] == "0-3"
    assert record["/sys/class/net/eth1/queues/tx-1/xps_cpus"]["original"] == "4"
    queue_irq = next(item for item in result["irqs"] if item["irq"] == 31)
    assert queue_irq["queue"] is True
    assert queue_irq["before"] == "0-3"
    assert queue_irq["actual"] == "0-1"
    assert {entry["status"] for entry in result["report"]} == {"applied"}


def test_second_run_changes_nothing(module_runner, root, state_dir):
    options = args(root, state_dir, interfaces=["eth1"], cpus="0-1", rps_cpus="0-1", xps_cpus="0-1")
    module_runner(irq_affinity, options)
    again = module_runner(irq_affinity, options)
    assert again["changed"] is False
    assert {entry["status"] for entry in again["report"]} == {"applied"}


def test_check_mode_predicts_without_writing(module_runner, root, state_dir):
    (root / "proc/irq/30/smp_affinity_list").write_text("0-1\n")
    result = module_runner(
        irq_affinity,
        args(
            root,
            state_dir,
            interfaces=["eth1"],
            cpus="0-1",
            _ansible_check_mode=True,
            _ansible_diff=True,
        ),
    )
    assert result["changed"] is True
    assert affinity(root, 31) == "0-3"
    assert not (state_dir / "irq.json").exists()
    statuses = {entry["setting"]: entry["status"] for entry in result["report"]}
    assert statuses["/proc/irq/30/smp_affinity_list"] == "applied"
    assert statuses["/proc/irq/31/smp_affinity_list"] == "would_change"
    assert result["report"][1]["actual"] == "0-3"
    # Only what would change is in the diff.
    assert [item["before_header"] for item in result["diff"]] == [
        f"/proc/irq/{irq}/smp_affinity_list" for irq in (31, 32, 33, 34)
    ]
    assert (result["diff"][0]["before"], result["diff"][0]["after"]) == ("0-3\n", "0-1\n")


def test_diff_of_a_restore(module_runner, root, state_dir):
    module_runner(irq_affinity, args(root, state_dir, interfaces=["eth1"], cpus="0"))
    check = module_runner(
        irq_affinity,
        args(root, state_dir, state="absent", _ansible_check_mode=True, _ansible_diff=True),
    )
    assert {entry["status"] for entry in check["report"]} == {"would_change"}
    assert affinity(root, 31) == "0"
    done = module_runner(irq_affinity, args(root, state_dir, state="absent", _ansible_diff=True))
    assert done["diff"] == check["diff"]
    assert (done["diff"][0]["before"], done["diff"][0]["after"]) == ("0\n", "0-3\n")


def test_other_irqs_moved_only_when_outside(module_runner, root, state_dir):
    (root / "proc/irq/1/smp_affinity_list").write_text("1\n")
    result = module_runner(
        irq_affinity,
        args(root, state_dir, interfaces=["eth1"], cpus="0", other_irqs=True, other_cpus="0-1"),
    )
    assert affinity(root, 0) == "0-1"
    assert affinity(root, 25) == "0-1"
    # Already inside the housekeeping CPUs: left where irqbalance put it.
    assert affinity(root, 1) == "1"
    assert affinity(root, 31) == "0"
    assert (root / "proc/irq/default_smp_affinity").read_text() == "3"
    record = json.loads((state_dir / "irq.json").read_text())["entries"]["setting"]
    assert "/proc/irq/1/smp_affinity_list" not in record
    assert result["changed"] is True


def test_refused_irq_is_reported_not_fatal(module_runner, root, state_dir, monkeypatch):
    real_write = irq_affinity.Pinner.write

    def write(self, path, value):
        if path == "/proc/irq/0/smp_affinity_list":
            raise OSError(errno.EIO, "Input/output error")
        real_write(self, path, value)

    monkeypatch.setattr(irq_affinity.Pinner, "write", write)
    result = module_runner(irq_affinity, args(root, state_dir, other_irqs=True, other_cpus="0-1"))
    assert "failed" not in result
    entry = next(e for e in result["report"] if e["setting"] == "/proc/irq/0/smp_affinity_list")
    assert entry["status"] == "skipped"
    assert entry["reason"] == "the kernel refuses to move this IRQ: EIO (managed or per-CPU IRQ)"
    assert affinity(root, 0) == "0-3"
    record = json.loads((state_dir / "irq.json").read_text())["entries"]["setting"]
    assert "/proc/irq/0/smp_affinity_list" not in record
    assert affinity(root, 24) == "0-1"


def test_readback_mismatch_is_drifted(module_runner, root, state_dir, monkeypatch):
    def write(self, path, value):
        Path(irq_affinity.under(self.root, path)).write_text("2\n")

    monkeypatch.setattr(irq_affinity.Pinner, "write", write)
    result = module_runner(irq_affinity, args(root, state_dir, interfaces=["eth1"], cpus="0-1"))
    assert {entry["status"] for entry in result["report"]} == {"drifted"}


def test_absent_restores_originals_and_drops_record(module_runner, root, state_dir):
    module_runner(
        irq_affinity,
        args(
            root,
            state_dir,
            interfaces=["eth1"],
            cpus="0-1",
            rps_cpus="0-1",
            xps_cpus="spread",
            other_irqs=True,
            other_cpus="0-1",
        ),
    )
    result = module_runner(irq_affinity, args(root, state_dir, state="absent"))
    assert result["changed"] is True
    for irq in (0, 24, 25, 31, 34):
        assert affinity(root, irq) == "0-3"
    assert (root / "sys/class/net/eth1/queues/rx-0/rps_cpus").read_text() == "0"
    assert (root / "sys/class/net/eth1/queues/tx-1/xps_cpus").read_text() == "4"
    assert (root / "proc/irq/default_smp_affinity").read_text() == "f"
    assert not (state_dir / "irq.json").exists()
    assert {entry["status"] for entry in result["report"]} == {"restored"}
    again = module_runner(irq_affinity, args(root, state_dir, state="absent"))
    assert again["changed"] is False
    assert again["report"] == []


def test_absent_drops_irqs_that_are_gone(module_runner, root, state_dir):
    module_runner(irq_affinity, args(root, state_dir, interfaces=["eth1"], cpus="0-1"))
    (root / "proc/irq/31/smp_affinity_list").unlink()
    result = module_runner(irq_affinity, args(root, state_dir, state="absent"))
    gone = next(e for e in result["report"] if e["setting"] == "/proc/irq/31/smp_affinity_list")
    assert gone["status"] == "skipped"
    assert "gone" in gone["reason"]
    assert not (state_dir / "irq.json").exists()


def test_missing_interface_is_skipped(module_runner, root, state_dir):
    result = module_runner(irq_affinity, args(root, state_dir, interfaces=["eth9"], cpus="0"))
    assert result["changed"] is False
    assert result["report"][0]["status"] == "skipped"
    assert "no interface eth9" in result["report"][0]["reason"]


def test_interface_without_irqs_is_skipped(module_runner, tmp_path, state_dir):
    root = build(tmp_path / "r", eth1_msi=())
    result = module_runner(irq_affinity, args(root, state_dir, interfaces=["eth1"], cpus="0"))
    assert result["report"][0]["status"] == "skipped"
    assert "no IRQs" in result["report"][0]["reason"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"interfaces": ["eth1"], "cpus": "0-x"}, "cpus:"),
        ({"interfaces": ["eth1"]}, "cpus is required"),
        ({"other_irqs": True}, "other_cpus is required"),
        ({"interfaces": ["eth1"], "cpus": "0", "xps_cpus": "sideways"}, "xps_cpus:"),
        ({"interfaces": ["../x"], "cpus": "0"}, "not valid"),
        ({"interfaces": ["eth1"], "cpus": ""}, "cpus"),
    ],
)
def test_bad_input_refused_before_any_change(module_runner, root, state_dir, extra, message):
    result = module_runner(irq_affinity, args(root, state_dir, **extra))
    assert result["failed"] is True
    assert message in result["msg"]
    assert affinity(root, 31) == "0-3"
    assert not state_dir.exists()
