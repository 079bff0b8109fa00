"""Compare the layout cpu_layout published with the guest's own /sys."""

from __future__ import annotations

import json

import pytest

CPU = "/sys/devices/system/cpu"
NODE = "/sys/devices/system/node"


def read(host, path: str) -> str:
    return host.file(path).content_string.strip()


def cpulist(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _sep, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


@pytest.fixture(scope="module")
def published(host):
    return json.loads(read(host, "/root/cpu_layout.json"))


@pytest.fixture(scope="module")
def online(host):
    return cpulist(read(host, f"{CPU}/online"))


def test_sets_cover_the_online_cpus_once(published, online):
    result = published["result"]
    housekeeping = cpulist(result["housekeeping"])
    isolated = cpulist(result["isolated"])
    assert housekeeping and isolated
    assert not housekeeping & isolated
    assert housekeeping | isolated == online
    assert result["housekeeping_list"] == sorted(housekeeping)
    assert int(result["isolated_mask"], 16) == sum(1 << cpu for cpu in isolated)
    assert int(result["housekeeping_mask"], 16) == sum(1 << cpu for cpu in housekeeping)


def test_whole_smt_cores_stay_together(host, published, online):
    housekeeping = cpulist(published["result"]["housekeeping"])
    for cpu in online:
        siblings = cpulist(read(host, f"{CPU}/cpu{cpu}/topology/thread_siblings_list"))
        assert len(siblings) == 2, "the test bed has two threads per core"
        assert siblings <= housekeeping or not siblings & housekeeping, (cpu, siblings)


def test_siblings_match_sysfs(host, published, online):
    real = {read(host, f"{CPU}/cpu{cpu}/topology/thread_siblings_list") for cpu in online}
    assert set(published["result"]["siblings"]) == real


def test_nic_node_is_the_pci_device_node(host, published):
    pci = host.run_test("readlink -f /sys/class/net/eth1/device/..").stdout.strip()
    node = int(read(host, f"{pci}/numa_node"))
    assert published["result"]["nic_node"] == node == 1
    assert published["topology"]["interface"]["numa_node_source"] == "parent device"
    queues = host.run_test("ls /sys/class/net/eth1/queues").stdout.split()
    rx_queues = sum(queue.startswith("rx-") for queue in queues)
    assert published["topology"]["interface"]["rx_queues"] == rx_queues


def test_isolated_cpus_are_on_the_nic_node(host, published):
    node = published["result"]["nic_node"]
    node_cpus = cpulist(read(host, f"{NODE}/node{node}/cpulist"))
    assert cpulist(published["result"]["isolated"]) <= node_cpus


def test_per_node_split_matches_sysfs(host, published):
    nodes = published["result"]["numa"]["nodes"]
    assert [n["node"] for n in nodes] == [0, 1]
    for entry in nodes:
        real = cpulist(read(host, f"{NODE}/node{entry['node']}/cpulist"))
        assert cpulist(entry["cpus"]) == real
        assert cpulist(entry["housekeeping"]) | cpulist(entry["isolated"]) == real
        meminfo = read(host, f"{NODE}/node{entry['node']}/meminfo")
        total = int(meminfo.split("MemTotal:")[1].split()[0])
        assert entry["mem_total_kb"] == total


def test_smt_facts_match_sysfs(host, published):
    smt = published["topology"]["smt"]
    assert smt["control"] == read(host, f"{CPU}/smt/control") == "on"
    assert smt["active"] is (read(host, f"{CPU}/smt/active") == "1")


def test_role_changed_nothing(host):
    assert read(host, f"{CPU}/online") == "0-3"
    assert read(host, f"{CPU}/smt/active") == "1"
    assert not host.file("/var/lib/lowlatency-tuning/cpu_layout.json").exists
