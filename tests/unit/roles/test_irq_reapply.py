# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The irq role's re-apply script, run against a fake /proc and /sys."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.lowlatency.tuning.plugins.module_utils import irq as irq_utils

SCRIPT = Path(__file__).resolve().parents[3] / "roles/irq/files/lowlatency-irq-affinity.py"


def load_script():
    spec = importlib.util.spec_from_file_location("lowlatency_irq_affinity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reapply = load_script()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    pci = root / "sys/devices/pci0000:80/0000:80:00.0"
    (pci / "virtio1").mkdir(parents=True)
    (pci / "msi_irqs").mkdir()
    for irq in (40, 41, 42, 43):
        (pci / "msi_irqs" / str(irq)).write_text("msix\n")
    for irq in (9, 40, 41, 42, 43):
        (root / f"proc/irq/{irq}").mkdir(parents=True)
        (root / f"proc/irq/{irq}/smp_affinity_list").write_text("2\n")
    net = root / "sys/class/net/eth1"
    net.mkdir(parents=True)
    (net / "device").symlink_to(pci / "virtio1")
    for index in range(2):
        (net / f"queues/rx-{index}").mkdir(parents=True)
        (net / f"queues/rx-{index}/rps_cpus").write_text("0\n")
        (net / f"queues/tx-{index}").mkdir(parents=True)
        (net / f"queues/tx-{index}/xps_cpus").write_text("0\n")
    (root / "sys/devices/system/cpu").mkdir(parents=True)
    (root / "sys/devices/system/cpu/online").write_text("0-3\n")
    config = tmp_path / "irq-affinity.json"
    spec = {"cpus": "0-1", "rps_cpus": "0-1", "xps_cpus": "spread"}
    config.write_text("#\n# Ansible managed\n#\n" + json.dumps({"interfaces": {"eth1": spec}}))
    return root, config


def run(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_apply_pins_irqs_rps_and_xps(tree):
    root, config = tree
    done = run("--config", str(config), "--root", str(root), "apply")
    assert done.returncode == 0, done.stderr
    for irq in (40, 41, 42, 43):
        assert (root / f"proc/irq/{irq}/smp_affinity_list").read_text() == "0,1"
    assert (root / "proc/irq/9/smp_affinity_list").read_text() == "2\n"
    assert (root / "sys/class/net/eth1/queues/rx-1/rps_cpus").read_text() == "3"
    assert (root / "sys/class/net/eth1/queues/tx-0/xps_cpus").read_text() == "5"
    assert (root / "sys/class/net/eth1/queues/tx-1/xps_cpus").read_text() == "a"
    assert "eth1: /proc/irq/40/smp_affinity_list: 2 -> 0,1" in done.stdout
    again = run("--config", str(config), "--root", str(root), "apply")
    assert again.stdout == ""


def test_apply_skips_an_interface_that_is_not_there(tree):
    root, config = tree
    done = run("--config", str(config), "--root", str(root), "apply", "eth7")
    assert done.returncode == 0
    assert (root / "proc/irq/40/smp_affinity_list").read_text() == "2\n"


def test_policy_bans_only_the_nic_irqs(tree):
    root, config = tree
    nic = run("--config", str(config), "--root", str(root), "policy", "/sys/devices/x", "41")
    assert nic.stdout.strip() == "ban=true"
    other = run("--config", str(config), "--root", str(root), "policy", "/sys/devices/x", "9")
    assert other.stdout == ""


def test_missing_config_fails_apply_but_never_the_policy(tmp_path):
    missing = str(tmp_path / "nope.json")
    assert run("--config", missing, "apply").returncode == 2
    assert run("--config", missing, "policy", "/sys/x", "1").returncode == 0


def test_bad_command_is_refused():
    assert run("sideways").returncode == 2


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("3: eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP", "eth1"),
        ("Deleted 3: eth1: <BROADCAST,MULTICAST> mtu 1500", "eth1"),
        ("5: vlan7@eth1: <BROADCAST> mtu 1500", "vlan7"),
    ],
)
def test_link_lines(line, name):
    assert reapply.LINK_RE.match(line).group(1) == name


def test_spread_matches_the_module():
    for cpus, count in (([0, 1, 2, 3], 2), ([0, 1], 4), ([0, 1, 2], 3), ([], 2)):
        assert reapply.spread(cpus, count) == irq_utils.spread(cpus, count)
