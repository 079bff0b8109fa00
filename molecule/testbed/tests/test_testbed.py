"""Read the guest's kernel state back: what every role scenario relies on."""

from __future__ import annotations

import re

import pytest

KERNEL_ARGS = ("skew_tick=1", "hugepages=64")
QUEUE_IRQ = re.compile(r"^\s*\d+:.*\s(virtio\d+-(?:input|output)\.\d+)$", re.MULTILINE)


def read(host, path: str) -> str:
    return host.file(path).content_string.strip()


def test_booted_by_grub_with_the_new_arguments(host):
    cmdline = read(host, "/proc/cmdline").split()
    assert cmdline[0].startswith("BOOT_IMAGE=")
    for arg in KERNEL_ARGS:
        assert arg in cmdline


def test_boot_time_hugepages_granted(host):
    meminfo = read(host, "/proc/meminfo")
    assert re.search(r"^HugePages_Total:\s+64$", meminfo, re.MULTILINE)
    per_node = [
        int(read(host, f"/sys/devices/system/node/node{n}/hugepages/hugepages-2048kB/nr_hugepages"))
        for n in (0, 1)
    ]
    assert sum(per_node) == 64


def test_smt_siblings(host):
    assert read(host, "/sys/devices/system/cpu/smt/active") == "1"
    assert read(host, "/sys/devices/system/cpu/online") == "0-3"
    siblings = {
        read(host, f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        for cpu in range(4)
    }
    assert siblings == {"0-1", "2-3"}


def test_smt_switches_off_and_on(host):
    control = "/sys/devices/system/cpu/smt/control"
    try:
        host.run_test(f"echo off > {control}")
        assert read(host, "/sys/devices/system/cpu/smt/active") == "0"
        assert read(host, "/sys/devices/system/cpu/online") == "0,2"
    finally:
        host.run_test(f"echo on > {control}")
    assert read(host, "/sys/devices/system/cpu/smt/active") == "1"


def test_two_numa_nodes(host):
    assert read(host, "/sys/devices/system/node/online") == "0-1"
    assert read(host, "/sys/devices/system/node/node0/cpulist") == "0-1"
    assert read(host, "/sys/devices/system/node/node1/cpulist") == "2-3"


def test_multiqueue_nic_queue_irqs(host):
    irqs = QUEUE_IRQ.findall(read(host, "/proc/interrupts"))
    assert len(irqs) >= 8, irqs
    queues = host.run_test("ls /sys/class/net/eth1/queues").stdout.split()
    assert sorted(queues) == ["rx-0", "rx-1", "rx-2", "rx-3", "tx-0", "tx-1", "tx-2", "tx-3"]


def test_nic_has_a_numa_node(host):
    # virtio-net's netdev parent is the virtio device; its PCI function is one up.
    pci = host.run_test("readlink -f /sys/class/net/eth1/device/..").stdout.strip()
    assert read(host, f"{pci}/numa_node") == "1"


@pytest.mark.parametrize("unit", ["ssh", "irqbalance", "systemd-networkd"])
def test_services_running(host, unit):
    assert host.service(unit).is_running


@pytest.mark.parametrize(
    "tool", ["python3", "numactl", "ethtool", "cpupower", "cyclictest", "update-grub"]
)
def test_tools_present(host, tool):
    assert host.exists(tool)
