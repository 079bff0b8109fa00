# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The irq role's re-apply script, installed as the role installs it, on a fake /proc and /sys."""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.lowlatency.tuning.plugins.modules import irq_affinity

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles/irq"
MODULE_UTILS = REPO / "plugins/module_utils"
FILES = yaml.safe_load((ROLE / "vars/main.yml").read_text())["__irq_script_files"]
SPEC = {"cpus": "0-1", "rps_cpus": "0-1", "xps_cpus": "spread"}


def build(root: Path) -> Path:
    """A virtio NIC eth1 (MSI vectors on the PCI function above it) on four CPUs."""
    pci = root / "sys/devices/pci0000:80/0000:80:00.0"
    (pci / "virtio1").mkdir(parents=True)
    (pci / "msi_irqs").mkdir()
    lines = ["           CPU0       CPU1       CPU2       CPU3"]
    for irq, name in (
        (9, "acpi"),
        (40, "virtio1-config"),
        (41, "virtio1-input.0"),
        (42, "virtio1-output.0"),
    ):
        if irq != 9:
            (pci / "msi_irqs" / str(irq)).write_text("msix\n")
        (root / f"proc/irq/{irq}").mkdir(parents=True)
        (root / f"proc/irq/{irq}/smp_affinity_list").write_text("2\n")
        lines.append(f" {irq}:  0  0  0  0   PCI-MSI {irq}-edge      {name}")
    (root / "proc/interrupts").write_text("\n".join(lines) + "\n")
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
    return root


def contents(root: Path) -> dict:
    return {
        str(path.relative_to(root)): path.read_text().strip()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


@pytest.fixture
def script(tmp_path):
    """The script and its module_utils in one directory, from where persist.yml copies them."""
    libexec = tmp_path / "libexec"
    libexec.mkdir()
    for name in FILES:
        source = ROLE / "files" / name if name == FILES[0] else MODULE_UTILS / name
        shutil.copy(source, libexec / name)
    return libexec / FILES[0]


@pytest.fixture
def tree(tmp_path):
    config = tmp_path / "irq-affinity.json"
    config.write_text("#\n# Ansible managed\n#\n" + json.dumps({"interfaces": {"eth1": SPEC}}))
    return build(tmp_path / "root"), config


def run(script, *args):
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False
    )


def test_the_role_ships_module_utils_not_a_copy():
    persist = (ROLE / "tasks/persist.yml").read_text()
    assert "role_path ~ '/../../plugins/module_utils/' ~ item" in persist
    assert sorted(FILES[1:]) == ["cpus.py", "irq.py", "linkwatch.py"]
    tree = ast.parse((ROLE / "files" / FILES[0]).read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    shared = set()
    for name in FILES[1:]:
        module = ast.parse((MODULE_UTILS / name).read_text())
        shared |= {node.name for node in module.body if isinstance(node, ast.FunctionDef)}
    assert defined & shared == set()


def test_script_writes_what_the_module_writes(script, tree, tmp_path, module_runner):
    root, config = tree
    done = run(script, "--config", str(config), "--root", str(root), "apply")
    assert done.returncode == 0, done.stderr
    assert "eth1: /proc/irq/41/smp_affinity_list: 2 -> 0-1" in done.stdout
    by_module = build(tmp_path / "module")
    result = module_runner(
        irq_affinity,
        {
            "root": str(by_module),
            "state_dir": str(tmp_path / "state"),
            "interfaces": ["eth1"],
            **SPEC,
        },
    )
    assert not result.get("failed"), result
    assert contents(root) == contents(by_module)
    # What both wrote, worked out here: the NIC IRQs on 0-1, RPS 0-1, XPS spread over 0-3.
    assert contents(root)["proc/irq/41/smp_affinity_list"] == "0-1"
    assert contents(root)["proc/irq/9/smp_affinity_list"] == "2"
    assert contents(root)["sys/class/net/eth1/queues/rx-1/rps_cpus"] == "3"
    assert contents(root)["sys/class/net/eth1/queues/tx-0/xps_cpus"] == "5"
    assert contents(root)["sys/class/net/eth1/queues/tx-1/xps_cpus"] == "a"
    again = run(script, "--config", str(config), "--root", str(root), "apply")
    assert again.stdout == ""


def test_apply_skips_an_interface_that_is_not_there(script, tree):
    root, config = tree
    done = run(script, "--config", str(config), "--root", str(root), "apply", "eth7")
    assert done.returncode == 0
    assert (root / "proc/irq/41/smp_affinity_list").read_text() == "2\n"


def test_missing_config_fails(script, tmp_path):
    done = run(script, "--config", str(tmp_path / "nope.json"), "apply")
    assert done.returncode == 2
    assert "cannot read" in done.stderr


def test_bad_command_is_refused(script):
    assert run(script, "sideways").returncode == 2
