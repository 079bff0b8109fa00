from __future__ import annotations

from ansible_collections.lowlatency.tuning.plugins.modules import cpu_topology

TWO_NODES_SMT = {
    "cores": [[0, 1], [2, 3]],
    "nodes": {0: [0, 1], 1: [2, 3]},
}


def facts(module_runner, root, **extra):
    result = module_runner(cpu_topology, {"sysfs_root": str(root), **extra})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    return result["ansible_facts"]["cpu_topology"]


def test_two_nodes_with_smt(module_runner, fake_sysfs):
    root = fake_sysfs(**TWO_NODES_SMT, nic={"eth0": {"numa_node": 1, "queues": 4}})
    topo = facts(module_runner, root)
    assert topo["online"] == "0-3"
    assert topo["online_list"] == [0, 1, 2, 3]
    assert topo["offline"] == ""
    assert topo["siblings"] == ["0-1", "2-3"]
    assert topo["threads_per_core"] == 2
    assert topo["node_ids"] == [0, 1]
    assert topo["numa"] is True
    assert [n["cpulist"] for n in topo["nodes"]] == ["0-1", "2-3"]
    assert topo["nodes"][1]["mem_total_kb"] == 1048576
    assert topo["cores"][1] == {
        "package_id": 0,
        "core_id": 1,
        "node": 1,
        "cpus": [2, 3],
        "cpulist": "2-3",
    }
    assert topo["cpus"][3] == {
        "cpu": 3,
        "online": True,
        "core_id": 1,
        "package_id": 0,
        "siblings": "2-3",
        "node": 1,
    }
    assert topo["smt"] == {"control": "on", "active": True}
    assert topo["interface"]["name"] == "eth0"
    assert topo["interface"]["numa_node"] == 1
    assert topo["interface"]["numa_node_source"] == "device"
    assert topo["interface"]["rx_queues"] == 4


def test_offline_cpu(module_runner, fake_sysfs):
    root = fake_sysfs(cores=[[0, 1], [2, 3]], nodes={0: [0, 1, 2, 3]}, offline=(3,))
    topo = facts(module_runner, root)
    assert topo["online"] == "0-2"
    assert topo["offline"] == "3"
    assert topo["offline_list"] == [3]
    assert topo["present"] == "0-3"
    assert topo["cpus"][3]["online"] is False
    assert topo["cpus"][3]["siblings"] is None
    assert topo["siblings"] == ["0-1", "2"]


def test_nic_without_affinity_goes_to_first_node(module_runner, fake_sysfs):
    root = fake_sysfs(**TWO_NODES_SMT, nic={"eth0": {"numa_node": -1}})
    nic = facts(module_runner, root)["interface"]
    assert nic["numa_node"] == 0
    assert nic["numa_node_raw"] == -1
    assert nic["numa_node_source"] == "first node"


def test_virtio_nic_reads_parent_pci_device(module_runner, fake_sysfs):
    root = fake_sysfs(**TWO_NODES_SMT, nic={"ens3": {"parent_numa_node": 1}}, default_route="ens3")
    nic = facts(module_runner, root)["interface"]
    assert nic == {**nic, "name": "ens3", "numa_node": 1, "numa_node_source": "parent device"}


def test_explicit_interface_overrides_default_route(module_runner, fake_sysfs):
    root = fake_sysfs(**TWO_NODES_SMT, nic={"eth0": {"numa_node": 0}, "eth1": {"numa_node": 1}})
    assert facts(module_runner, root, interface="eth1")["interface"]["numa_node"] == 1
    assert facts(module_runner, root)["interface"]["numa_node"] == 0


def test_missing_interface_fails(module_runner, fake_sysfs):
    root = fake_sysfs(**TWO_NODES_SMT)
    result = module_runner(cpu_topology, {"sysfs_root": str(root), "interface": "nope0"})
    assert result["failed"] is True
    assert "interface nope0 does not exist" in result["msg"]


def test_no_default_route(module_runner, fake_sysfs):
    root = fake_sysfs(**TWO_NODES_SMT, default_route=None)
    nic = facts(module_runner, root)["interface"]
    assert nic["name"] is None
    assert nic["numa_node"] == 0


def test_no_numa_directory_gives_one_node(module_runner, fake_sysfs):
    root = fake_sysfs(cores=[[0], [1]], nodes=None, smt_control="notsupported")
    topo = facts(module_runner, root)
    assert topo["numa"] is False
    assert topo["nodes"] == [{"node": 0, "cpus": [0, 1], "cpulist": "0-1", "mem_total_kb": 2097152}]
    assert topo["smt"] == {"control": "notsupported", "active": False}
    assert topo["threads_per_core"] == 1


def test_more_than_32_cpus(module_runner, fake_sysfs):
    cores = [[cpu, cpu + 40] for cpu in range(40)]
    nodes = {0: list(range(20)) + list(range(40, 60)), 1: list(range(20, 40)) + list(range(60, 80))}
    topo = facts(module_runner, fake_sysfs(cores=cores, nodes=nodes))
    assert topo["online"] == "0-79"
    assert len(topo["cores"]) == 40
    assert topo["siblings"][0] == "0,40"
    assert topo["nodes"][1]["cpulist"] == "20-39,60-79"
    assert topo["cpus"][65]["node"] == 1


def test_smt_files_absent(module_runner, fake_sysfs):
    root = fake_sysfs(cores=[[0]], nodes={0: [0]}, smt_control=None)
    assert facts(module_runner, root)["smt"] == {"control": None, "active": None}


def test_missing_sysfs_fails(module_runner, tmp_path):
    result = module_runner(cpu_topology, {"sysfs_root": str(tmp_path)})
    assert result["failed"] is True
    assert "is sysfs mounted" in result["msg"]
