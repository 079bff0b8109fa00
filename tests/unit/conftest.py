"""Make the collection importable as ansible_collections.lowlatency.tuning.

The checkout is not inside an ``ansible_collections/<namespace>/<name>`` tree,
so a symlink tree under build/unit provides one. When the checkout already is
such a tree (the sanity copy), its own parent is used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

REPO = Path(__file__).resolve().parents[2]


def _collections_root() -> Path:
    if REPO.parent.name == "lowlatency" and REPO.parent.parent.name == "ansible_collections":
        return REPO.parent.parent.parent
    root = REPO / "build" / "unit"
    link = root / "ansible_collections" / "lowlatency" / "tuning"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists():
            raise RuntimeError(f"{link} exists and is not a symlink")
        link.symlink_to(REPO)
    return root


sys.path.insert(0, str(_collections_root()))


class ModuleExit(Exception):
    """exit_json or fail_json was called; .result holds what the module returned."""

    def __init__(self, result: dict, failed: bool) -> None:
        super().__init__(json.dumps(result, default=str))
        self.result = result
        self.failed = failed


@pytest.fixture
def module_runner(monkeypatch):
    """Run a module's main() with args; return its result dict (with 'failed' on failure)."""

    def exit_json(self, **kwargs):
        raise ModuleExit(kwargs, failed=False)

    def fail_json(self, msg, **kwargs):
        kwargs["msg"] = msg
        kwargs["failed"] = True
        raise ModuleExit(kwargs, failed=True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def run(module, args: dict) -> dict:
        with patch_module_args(args):
            try:
                module.main()
            except ModuleExit as done:
                return done.result
        raise AssertionError("module returned without exit_json or fail_json")

    return run


def build_sysfs(
    root: Path,
    cores: list[list[int]],
    nodes: dict[int, list[int]] | None = None,
    offline: tuple[int, ...] = (),
    smt_control: str | None = "on",
    nic: dict | None = None,
    default_route: str | None = "eth0",
    mem_kb: int = 1048576,
) -> Path:
    """A fake /sys and /proc: cores are sibling groups, nodes map node -> CPUs."""
    cpu_dir = root / "sys/devices/system/cpu"
    cpu_dir.mkdir(parents=True)
    present = sorted(cpu for core in cores for cpu in core)
    online = [cpu for cpu in present if cpu not in offline]
    (cpu_dir / "present").write_text(_cpulist(present) + "\n")
    (cpu_dir / "possible").write_text(_cpulist(present) + "\n")
    (cpu_dir / "online").write_text(_cpulist(online) + "\n")
    (cpu_dir / "offline").write_text(_cpulist([c for c in present if c in offline]) + "\n")
    for core_id, core in enumerate(cores):
        for cpu in core:
            base = cpu_dir / f"cpu{cpu}"
            base.mkdir()
            (base / "online").write_text("0\n" if cpu in offline else "1\n")
            if cpu in offline:
                continue
            topo = base / "topology"
            topo.mkdir()
            (topo / "core_id").write_text(f"{core_id}\n")
            (topo / "physical_package_id").write_text("0\n")
            siblings = [c for c in core if c not in offline]
            (topo / "thread_siblings_list").write_text(_cpulist(siblings) + "\n")
    if smt_control is not None:
        (cpu_dir / "smt").mkdir()
        (cpu_dir / "smt/control").write_text(smt_control + "\n")
        active = smt_control == "on" and any(len(core) > 1 for core in cores)
        (cpu_dir / "smt/active").write_text("1\n" if active else "0\n")
    if nodes is not None:
        for node, cpus in nodes.items():
            ndir = root / f"sys/devices/system/node/node{node}"
            ndir.mkdir(parents=True)
            (ndir / "cpulist").write_text(_cpulist([c for c in cpus if c not in offline]) + "\n")
            (ndir / "meminfo").write_text(f"Node {node} MemTotal:       {mem_kb} kB\n")
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/meminfo").write_text(f"MemTotal:       {mem_kb * 2} kB\n")
    routes = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
    if default_route:
        routes += f"{default_route}\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\n"
    (root / "proc/net").mkdir(parents=True, exist_ok=True)
    (root / "proc/net/route").write_text(routes)
    nics = dict(nic or {})
    if default_route and default_route not in nics:
        nics[default_route] = {"numa_node": -1}
    for name, spec in nics.items():
        _add_nic(root, name, spec)
    return root


def _add_nic(root: Path, name: str, spec: dict) -> None:
    """spec: numa_node (int or None for no file), parent_numa_node, queues."""
    net_dir = root / "sys/class/net"
    slot = len(list(net_dir.iterdir())) if net_dir.exists() else 0
    pci = root / f"sys/devices/pci0000:00/0000:00:{slot + 3:02x}.0"
    device = pci / "virtio0" if "parent_numa_node" in spec else pci
    device.mkdir(parents=True, exist_ok=True)
    if spec.get("numa_node") is not None:
        (device / "numa_node").write_text(f"{spec['numa_node']}\n")
    if spec.get("parent_numa_node") is not None:
        (pci / "numa_node").write_text(f"{spec['parent_numa_node']}\n")
    net = root / "sys/class/net" / name
    (net / "queues").mkdir(parents=True)
    for index in range(spec.get("queues", 1)):
        (net / "queues" / f"rx-{index}").mkdir()
        (net / "queues" / f"tx-{index}").mkdir()
    (net / "device").symlink_to(device)


def _cpulist(cpus: list[int]) -> str:
    parts, start, prev = [], None, None
    for cpu in sorted(cpus):
        if start is None:
            start = prev = cpu
        elif cpu == prev + 1:
            prev = cpu
        else:
            parts.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = cpu
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(parts)


@pytest.fixture
def fake_sysfs(tmp_path):
    """Factory: fake_sysfs(cores=[[0, 1], [2, 3]], nodes={0: [0, 1], 1: [2, 3]}, ...)."""

    made = []

    def make(**kwargs) -> Path:
        made.append(None)
        return build_sysfs(tmp_path / f"sysroot{len(made)}", **kwargs)

    return make
