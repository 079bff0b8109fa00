"""Read the guest's kernel state back after the kernel role and its reboot."""

from __future__ import annotations

import json
import shlex

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
    "kthread_cpus=0-1",
    "rcu_nocb_poll",
    "rcutree.kthread_prio=11",
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
    "kernel/sched_rt_runtime_us": "-1",
    "kernel/hung_task_timeout_secs": "600",
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


PM_QOS = "/sys/devices/system/cpu/cpu{}/power/pm_qos_resume_latency_us"
TMPFILES = "/etc/tmpfiles.d/lowlatency-tuning-kernel.conf"


@pytest.mark.parametrize(("cpu", "value"), [(0, "0"), (1, "0"), (2, "n/a"), (3, "n/a")])
def test_resume_latency_held_on_isolated_cpus_only(host, cpu, value):
    # n/a: no exit latency accepted; 0: no limit, the housekeeping CPUs' own.
    assert read(host, PM_QOS.format(cpu)) == value


def test_resume_latency_written_again_at_boot(host):
    lines = read(host, TMPFILES).splitlines()
    held = [line for line in lines if "pm_qos_resume_latency_us" in line]
    assert held == [f"w {PM_QOS.format(cpu)} - - - - n/a" for cpu in (2, 3)]


def test_corrected_machine_check_errors_ignored(host):
    switches = host.check_output("cat /sys/devices/system/machinecheck/machinecheck*/ignore_ce")
    # One kernel-wide switch, written once and shown under every CPU.
    assert switches.split() == ["1"] * 4


def test_every_unbound_workqueue_on_housekeeping(host):
    masks = host.check_output(
        "grep -H . /sys/devices/virtual/workqueue/cpumask /sys/devices/virtual/workqueue/*/cpumask"
    ).splitlines()
    # The global mask, writeback, blkcg_punt_bio at least.
    assert len(masks) >= 3
    assert {line.rsplit(":", 1)[0]: mask(line.rsplit(":", 1)[1]) for line in masks} == {
        line.rsplit(":", 1)[0]: 0b0011 for line in masks
    }


# Every kernel thread allowed on CPU 2 or 3: name, flags, policy, priority.
KTHREADS = r"""
import json, os
out = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        stat = open('/proc/%s/stat' % pid).read()
        status = open('/proc/%s/status' % pid).read()
    except OSError:
        continue
    rest = stat[stat.rindex(')') + 2:].split()
    flags = int(rest[6])
    cpus = [l.split(':')[1] for l in status.splitlines() if l.startswith('Cpus_allowed_list')][0]
    allowed = set()
    for part in cpus.strip().split(','):
        lo, _, hi = part.partition('-')
        allowed |= set(range(int(lo), int(hi or lo) + 1))
    if flags & 0x00200000 and allowed & {2, 3}:
        comm = stat[stat.index('(') + 1:stat.rindex(')')]
        out.append([comm, flags & 0x04000000 != 0, int(rest[38]), int(rest[37])])
print(json.dumps(out))
"""


def kernel_threads_on_isolated(host):
    return json.loads(host.check_output(f"python3 -c {shlex.quote(KTHREADS)}"))


def test_only_the_threads_the_kernel_refuses_to_move_stay_on_isolated_cpus(host):
    threads = kernel_threads_on_isolated(host)
    assert threads, "per-CPU threads (ksoftirqd/2, ...) are always there"
    assert [thread[0] for thread in threads if not thread[1]] == []


def test_ksoftirqd_on_isolated_cpus_at_fifo_11(host):
    threads = kernel_threads_on_isolated(host)
    ksoftirqd = sorted(
        (thread[0], thread[2], thread[3])
        for thread in threads
        if thread[0].startswith("ksoftirqd/")
    )
    assert ksoftirqd == [("ksoftirqd/2", 1, 11), ("ksoftirqd/3", 1, 11)]


def test_rcu_nocb_poll_taken(host):
    # rcu_nocb_poll is an early parameter with no sysfs file: RCU says so at boot.
    assert "Poll for callbacks from no-CBs CPUs." in host.check_output("dmesg")


def test_ksm_off_and_thp_madvise(host):
    assert read(host, "/sys/kernel/mm/ksm/run") == "0"
    assert "[madvise]" in read(host, "/sys/kernel/mm/transparent_hugepage/enabled")


def test_records_kept_for_rollback(host):
    assert host.file("/var/lib/lowlatency-tuning/kernel.json").exists
    assert host.file("/var/lib/lowlatency-tuning/cmdline/kernel.json").exists
    assert host.file("/var/lib/lowlatency-tuning/kernel-kthreads.json").exists
