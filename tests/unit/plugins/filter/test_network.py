from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.lowlatency.tuning.plugins.filter.network import (
    FilterModule,
    machine,
    service_address,
)


def host(name, **extra):
    return {"inventory_hostname": name, **extra}


LOCAL_A = host("front", ansible_connection="local")
LOCAL_B = host("back", ansible_connection="local", ansible_host="127.0.0.1")
VM_1 = host("vm1", ansible_host="127.0.0.1", ansible_port=2201)
VM_2 = host("vm2", ansible_host="127.0.0.1", ansible_port="2202")
REMOTE_A = host("a", ansible_host="10.0.0.11")
REMOTE_B = host("b", ansible_host="fd00::12", ansible_port=22)


@pytest.mark.parametrize(
    ("host_vars", "expected"),
    [
        (LOCAL_A, "local"),
        (LOCAL_B, "local"),
        (host("lo", ansible_host="127.0.0.1"), "local"),
        (host("localhost"), "local"),
        (host("lo", ansible_host="::1", ansible_port=22), "local"),
        (VM_1, "127.0.0.1:2201"),
        (REMOTE_A, "10.0.0.11:22"),
        (host("named"), "named:22"),
    ],
)
def test_machine(host_vars, expected):
    assert machine(host_vars) == expected


@pytest.mark.parametrize(
    ("service", "client", "bind", "expected"),
    [
        # Same machine: the bound address, loopback for a wildcard.
        (LOCAL_B, LOCAL_A, "0.0.0.0", "127.0.0.1:50051"),
        (LOCAL_B, LOCAL_A, "::", "[::1]:50051"),
        (LOCAL_B, LOCAL_A, "127.0.0.1", "127.0.0.1:50051"),
        (VM_1, dict(VM_1, inventory_hostname="vm1-load"), "127.0.0.1", "127.0.0.1:50051"),
        (REMOTE_A, REMOTE_A, "", "127.0.0.1:50051"),
        # Another machine: the bound address, or ansible_host for a wildcard.
        (REMOTE_A, REMOTE_B, "0.0.0.0", "10.0.0.11:50051"),
        (REMOTE_B, REMOTE_A, "::", "[fd00::12]:50051"),
        (REMOTE_A, LOCAL_A, "10.1.0.11", "10.1.0.11:50051"),
        (REMOTE_A, REMOTE_B, "fd01::11", "[fd01::11]:50051"),
        (host("svc.example"), REMOTE_A, "0.0.0.0", "svc.example:50051"),
    ],
)
def test_service_address(service, client, bind, expected):
    assert service_address(service, client, bind, "50051") == expected


def test_loopback_bound_service_on_another_machine_fails_naming_both_hosts():
    message = r"the next service on a listens on 127\.0\.0\.1 only, which b"
    with pytest.raises(AnsibleFilterError, match=message):
        service_address(REMOTE_A, REMOTE_B, "127.0.0.1", 50051, "the next service")


def test_wildcard_service_known_by_a_forwarded_loopback_address_fails():
    # Two VMs behind user-mode networking: 127.0.0.1 is the controller's forward, not a route.
    with pytest.raises(AnsibleFilterError, match=r"vm2 knows vm1 only as 127\.0\.0\.1"):
        service_address(VM_1, VM_2, "0.0.0.0", 50051)


@pytest.mark.parametrize("port", [None, "x", 0, 70000])
def test_bad_port_fails(port):
    with pytest.raises(AnsibleFilterError, match="port must be"):
        service_address(LOCAL_A, LOCAL_B, "0.0.0.0", port)


def test_registered():
    assert FilterModule().filters()["service_address"] is service_address
