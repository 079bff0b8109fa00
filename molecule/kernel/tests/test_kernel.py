"""Read the guest's kernel state back after the kernel role and its reboot."""

from __future__ import annotations

import pytest

BOOT_ARGS = [
    "isolcpus=managed_irq,domain,2-3",
    "nohz_full=2-3",
    "rcu_nocbs=2-3",
    "irqaffinity=0-1",
    "skew_tick=1",
    "tsc=reliable",
    "nosoftlockup",
    "nmi_watchdog=0",
    "rcupdate.rcu_normal_after_boot=1",
    "transparent_hugepage=madvise",
]

SYSCTLS = {
    "net/core/busy_read": "50",
    "net/core/busy_poll": "50",
    "net/ipv4/tcp_fastopen": "3",
    "kernel/numa_balancing": "0",
    "vm/stat_interval": "10",
    "kernel/timer_migration": "0",
    "vm/swappiness": "10",
    "vm/dirty_ratio": "10",
    "vm/dirty_background_ratio": "3",
    "net/core/somaxconn": "4096",
}


def read(host, path: str) -> str:
    return host.file(path).content_string.strip()


def mask(text: str) -> int:
    return int(text.replace(",", ""), 16)


@pytest.mark.parametrize("arg", BOOT_ARGS)
def test_boot_argument_is_live(host, arg):
    assert arg in read(host, "/proc/cmdline").split()


def test_user_arguments_kept_and_replaced_key_not_duplicated(host):
    cmdline = read(host, "/proc/cmdline").split()
    assert "console=ttyS0,115200n8" in cmdline
    assert "net.ifnames=0" in cmdline
    assert "quiet" in cmdline
    assert [arg for arg in cmdline if arg.startswith("skew_tick=")] == ["skew_tick=1"]


def kernel_config(host) -> str:
    return host.check_output("cat /boot/config-$(uname -r)")


def test_kernel_took_the_isolation(host):
    assert read(host, "/sys/devices/system/cpu/isolated") == "2-3"


def test_kernel_took_nohz_full(host):
    if "CONFIG_NO_HZ_FULL=y" not in kernel_config(host):
        pytest.skip("this kernel is built without CONFIG_NO_HZ_FULL: nohz_full= is ignored")
    assert read(host, "/sys/devices/system/cpu/nohz_full") == "2-3"


@pytest.mark.parametrize(("name", "value"), sorted(SYSCTLS.items()))
def test_sysctl_live(host, name, value):
    assert read(host, f"/proc/sys/{name}") == value


def test_sysctls_persisted(host):
    text = read(host, "/etc/sysctl.d/90-lowlatency-tuning.conf")
    assert "net.core.busy_poll = 50" in text


DMA_READ = (
    "import struct; print(struct.unpack('=i', open('/dev/cpu_dma_latency', 'rb').read(4))[0])"
)


def test_cpu_dma_latency_held_at_zero(host):
    assert host.service("lowlatency-cpu-dma-latency").is_running
    assert host.service("lowlatency-cpu-dma-latency").is_enabled
    # Reading gives the kernel's current limit, a native 32-bit integer.
    assert host.check_output(f'python3 -c "{DMA_READ}"').strip() == "0"


WORKQUEUE_MASKS = [
    "/sys/devices/virtual/workqueue/cpumask",
    "/sys/bus/workqueue/devices/writeback/cpumask",
]


@pytest.mark.parametrize("path", WORKQUEUE_MASKS)
def test_workqueues_on_housekeeping(host, path):
    assert mask(read(host, path)) == 0b0011


def test_ksm_off_and_thp_madvise(host):
    assert read(host, "/sys/kernel/mm/ksm/run") == "0"
    assert "[madvise]" in read(host, "/sys/kernel/mm/transparent_hugepage/enabled")


def test_records_kept_for_rollback(host):
    assert host.file("/var/lib/lowlatency-tuning/kernel.json").exists
    assert host.file("/var/lib/lowlatency-tuning/cmdline/kernel.json").exists
