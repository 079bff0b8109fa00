from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.lowlatency.tuning.plugins.filter.layout import cpu_layout_plan
from ansible_collections.lowlatency.tuning.plugins.modules.cpu_topology import read_topology


@pytest.fixture
def topo(fake_sysfs):
    """Topology of a fake host; defaults to the test bed: 2 cores x 2 threads, 2 nodes, NIC on 1."""

    def make(cores=None, nodes=None, nic_node=1, **kwargs):
        cores = cores or [[0, 1], [2, 3]]
        nodes = nodes or {0: [0, 1], 1: [2, 3]}
        root = fake_sysfs(cores=cores, nodes=nodes, nic={"eth0": {"numa_node": nic_node}}, **kwargs)
        return read_topology(str(root), None)

    return make


def big_host(topo):
    """2 nodes x 4 cores x 2 threads; siblings n and n+8."""
    cores = [[cpu, cpu + 8] for cpu in range(8)]
    nodes = {0: [0, 1, 2, 3, 8, 9, 10, 11], 1: [4, 5, 6, 7, 12, 13, 14, 15]}
    return topo(cores=cores, nodes=nodes, nic_node=1)


def errors_of(plan):
    assert plan["result"] is None
    return "\n".join(plan["errors"])


def test_derived_keeps_whole_cores_and_isolates_on_nic_node(topo):
    plan = cpu_layout_plan(big_host(topo))
    assert plan["errors"] == []
    result = plan["result"]
    assert result["housekeeping"] == "0-4,8-12"
    assert result["isolated"] == "5-7,13-15"
    assert result["isolated_mask"] == "e0e0"
    assert result["housekeeping_mask"] == "1f1f"
    assert result["nic_node"] == 1
    assert result["source"] == "derived"
    assert result["numa"]["nodes"][1]["housekeeping"] == "4,12"
    assert result["numa"]["nodes"][1]["isolated"] == "5-7,13-15"
    assert result["siblings"][0] == "0,8"
    assert result["smt_offlined"] == ""


def test_derived_two_cores_per_node(topo):
    result = cpu_layout_plan(big_host(topo), housekeeping_cores_per_node=2)["result"]
    assert result["isolated"] == "6-7,14-15"


def test_derived_nic_on_node_0(fake_sysfs):
    cores = [[cpu, cpu + 8] for cpu in range(8)]
    nodes = {0: [0, 1, 2, 3, 8, 9, 10, 11], 1: [4, 5, 6, 7, 12, 13, 14, 15]}
    root = fake_sysfs(cores=cores, nodes=nodes, nic={"eth0": {"numa_node": 0}})
    result = cpu_layout_plan(read_topology(str(root), None))["result"]
    assert result["isolated"] == "1-3,9-11"


def test_derived_with_smt_off_uses_first_threads(topo):
    result = cpu_layout_plan(big_host(topo), smt="off")["result"]
    assert result["housekeeping"] == "0-4"
    assert result["isolated"] == "5-7"
    assert result["smt_offlined"] == "8-15"


def test_derived_is_stable_across_smt_off(topo):
    """The layout planned with smt=off is the same before and after SMT goes off."""
    before = cpu_layout_plan(big_host(topo), smt="off")["result"]
    cores = [[cpu, cpu + 8] for cpu in range(8)]
    nodes = {0: [0, 1, 2, 3, 8, 9, 10, 11], 1: [4, 5, 6, 7, 12, 13, 14, 15]}
    after_host = topo(cores=cores, nodes=nodes, offline=tuple(range(8, 16)), smt_control="off")
    after = cpu_layout_plan(after_host, smt="off")["result"]
    assert after["housekeeping"] == before["housekeeping"]
    assert after["isolated"] == before["isolated"]


def test_testbed_needs_per_node_zero(topo):
    message = errors_of(cpu_layout_plan(topo()))
    assert "NUMA node 1 (the NIC's node) has 1 core(s) (CPUs 2-3)" in message
    result = cpu_layout_plan(topo(), housekeeping_cores_per_node=0)["result"]
    assert result["housekeeping"] == "0-1"
    assert result["isolated"] == "2-3"
    assert result["housekeeping_mask"] == "3"
    assert result["isolated_mask"] == "c"


def test_given_sets(topo):
    plan = cpu_layout_plan(big_host(topo), "0-4,8-12", "5-7,13-15", "on", 1)
    assert plan["errors"] == [], plan["errors"]
    assert plan["result"]["source"] == "given"
    assert plan["warnings"] == []


def test_given_housekeeping_only_isolates_the_rest(topo):
    result = cpu_layout_plan(big_host(topo), housekeeping="0-4,8-12")["result"]
    assert result["isolated"] == "5-7,13-15"


def test_isolating_on_other_node_warns(topo):
    plan = cpu_layout_plan(big_host(topo), housekeeping="0,8,4-7,12-15")
    assert plan["errors"] == []
    assert "NUMA node 0, not on the NIC's node 1" in plan["warnings"][0]


def test_refuses_isolating_every_cpu(topo):
    message = errors_of(cpu_layout_plan(topo(), isolated="0-3", housekeeping_cores_per_node=0))
    assert "every online CPU (0-3) would be isolated" in message


def test_refuses_isolating_nothing(topo):
    message = errors_of(cpu_layout_plan(topo(), housekeeping="0-3"))
    assert "no CPU is left to isolate" in message


def test_refuses_missing_cpu(topo):
    message = errors_of(cpu_layout_plan(big_host(topo), isolated="5-7,13-15,31"))
    assert (
        "CPU 31 in cpu_layout_isolated does not exist on this host (present CPUs: 0-15)" in message
    )


def test_refuses_offline_cpu(topo):
    host = topo(
        cores=[[0, 1], [2, 3], [4, 5]], nodes={0: [0, 1, 2, 3, 4, 5]}, offline=(5,), nic_node=0
    )
    message = errors_of(cpu_layout_plan(host, housekeeping="0-1", isolated="2-5"))
    assert "CPU 5 in cpu_layout_isolated is offline (online CPUs: 0-4)" in message


def test_refuses_split_smt_core(topo):
    message = errors_of(
        cpu_layout_plan(big_host(topo), housekeeping="0-4,8-11", isolated="5-7,12-15")
    )
    assert (
        "SMT core 4,12 is split (CPU 4 housekeeping, CPU 12 isolated) while SMT stays on" in message
    )


def test_split_core_allowed_with_smt_off(topo):
    plan = cpu_layout_plan(big_host(topo), housekeeping="0,4", smt="off")
    assert plan["errors"] == []
    assert plan["result"]["isolated"] == "1-3,5-7"


def test_refuses_second_thread_with_smt_off(topo):
    message = errors_of(cpu_layout_plan(big_host(topo), housekeeping="0,4,8", smt="off"))
    assert "CPU 8 in cpu_layout_housekeeping is a second SMT thread" in message


def test_refuses_node_without_housekeeping(topo):
    message = errors_of(cpu_layout_plan(big_host(topo), housekeeping="0-3,8-11"))
    assert "NUMA node 1 (CPUs 4-7,12-15) would have no housekeeping CPU" in message
    allowed = cpu_layout_plan(
        big_host(topo), housekeeping="0-3,8-11", housekeeping_cores_per_node=0
    )
    assert allowed["errors"] == []


def test_refuses_overlap_and_gaps(topo):
    message = errors_of(cpu_layout_plan(big_host(topo), "0-4,8-12", "4-6,12-14"))
    assert "CPU 4 is in both cpu_layout_housekeeping and cpu_layout_isolated" in message
    assert "CPU 7 is in neither" in message
    assert "CPU 15 is in neither" in message


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"isolated": "2-"}, "cpu_layout_isolated: invalid cpulist '2-'"),
        ({"housekeeping": "5-3"}, "cpu_layout_housekeeping: invalid cpulist '5-3'"),
        ({"isolated": "x"}, "'x' is not a CPU number"),
        ({"smt": "maybe"}, "smt_state must be 'on' or 'off'"),
        ({"housekeeping_cores_per_node": -1}, "must be a non-negative integer"),
    ],
)
def test_bad_input(topo, kwargs, fragment):
    assert fragment in errors_of(cpu_layout_plan(big_host(topo), **kwargs))


def test_more_than_32_cpus_masks(topo):
    cores = [[cpu, cpu + 40] for cpu in range(40)]
    nodes = {0: [*range(20), *range(40, 60)], 1: [*range(20, 40), *range(60, 80)]}
    result = cpu_layout_plan(topo(cores=cores, nodes=nodes, nic_node=1))["result"]
    assert result["housekeeping"] == "0-20,40-60"
    assert result["isolated"] == "21-39,61-79"
    assert result["isolated_mask"] == "0000ffff,e00000ff,ffe00000"
    assert result["housekeeping_mask"] == "00000000,1fffff00,001fffff"


def test_input_must_be_topology():
    with pytest.raises(AnsibleFilterError, match="must be the cpu_topology fact"):
        cpu_layout_plan({"cores": []})
