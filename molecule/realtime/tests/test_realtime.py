"""Read the realtime kernel back from the guest after kernel_flavor rt and its reboot."""

from __future__ import annotations

import json

import pytest

# Settings the role drops with kernel_flavor rt: the PREEMPT_RT kernel has no such knob.
DROPPED_KNOBS = [
    "/proc/sys/net/core/busy_read",
    "/proc/sys/net/core/busy_poll",
    "/proc/sys/kernel/numa_balancing",
    "/sys/kernel/mm/transparent_hugepage/enabled",
]


def read(host, path: str) -> str:
    return host.file(path).content_string.strip()


def test_realtime_kernel_runs(host):
    assert "PREEMPT_RT" in host.check_output("uname -v").split()
    assert host.check_output("uname -r").endswith("-rt-amd64")


def test_booted_from_the_realtime_image_with_the_boot_arguments(host):
    cmdline = read(host, "/proc/cmdline").split()
    release = host.check_output("uname -r")
    assert f"BOOT_IMAGE=/boot/vmlinuz-{release}" in cmdline
    assert "nohz_full=2-3" in cmdline
    assert "isolcpus=managed_irq,domain,2-3" in cmdline
    assert not [arg for arg in cmdline if arg.startswith("transparent_hugepage=")]


def test_kernel_took_the_isolation(host):
    assert read(host, "/sys/devices/system/cpu/isolated") == "2-3"
    assert read(host, "/sys/devices/system/cpu/nohz_full") == "2-3"


@pytest.mark.parametrize("path", DROPPED_KNOBS)
def test_dropped_knob_is_absent_from_the_realtime_kernel(host, path):
    assert not host.file(path).exists


def test_dropped_sysctls_not_persisted(host):
    text = read(host, "/etc/sysctl.d/90-lowlatency-tuning.conf")
    assert "vm.swappiness = 10" in text
    assert "busy_poll" not in text
    assert "busy_read" not in text
    assert "numa_balancing" not in text


def test_grub_default_names_the_running_kernel(host):
    release = host.check_output("uname -r")
    text = read(host, "/etc/default/grub.d/60-lowlatency-kernel-flavor.cfg")
    assert f"gnulinux-{release}-advanced-" in text


def test_record_keeps_the_kernel_from_before(host):
    before = json.loads(read(host, "/root/realtime.before.json"))
    record = json.loads(read(host, "/var/lib/lowlatency-tuning/kernel-flavor.previous.json"))
    assert [record["previous_kernel"]] == before["kernel"]
    assert record["previous_kernel"] != host.check_output("uname -r")
    assert "linux-image-rt-amd64" in record["installed_packages"]
