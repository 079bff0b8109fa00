"""Read SMT back from the guest after the smt role and its reboot into nosmt."""

from __future__ import annotations

import json

CPU = "/sys/devices/system/cpu"


def read(host, path: str) -> str:
    return host.file(path).content_string.strip()


def test_booted_with_nosmt(host):
    assert "nosmt" in read(host, "/proc/cmdline").split()


def test_smt_is_off(host):
    assert read(host, f"{CPU}/smt/control") == "off"
    assert read(host, f"{CPU}/smt/active") == "0"


def test_only_the_first_thread_of_each_core_is_online(host):
    assert read(host, f"{CPU}/online") == "0,2"
    assert read(host, f"{CPU}/offline") == "1,3"
    for cpu in (0, 2):
        assert read(host, f"{CPU}/cpu{cpu}/topology/thread_siblings_list") == str(cpu)


def test_nosmt_configured_once(host):
    grub = read(host, "/etc/default/grub")
    assert grub.count("nosmt") == 1
    assert "nosmt" in read(host, "/boot/grub/grub.cfg")


def test_record_keeps_the_original_control_value(host):
    record = host.file("/var/lib/lowlatency-tuning/smt.json")
    assert record.mode == 0o600
    entry = json.loads(record.content_string)["entries"]["setting"][f"{CPU}/smt/control"]
    assert entry["original"] == "on"
    assert entry["expected"] == "off"


def test_boot_argument_recorded_for_the_smt_owner(host):
    record = json.loads(read(host, "/var/lib/lowlatency-tuning/cmdline/smt.json"))
    assert "nosmt" in json.dumps(record)
