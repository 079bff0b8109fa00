"""Write what tune.yml changes on the guest as JSON, to compare after rollback.yml.

Kernel command line (running and configured), the tuned sysctls and sysfs
knobs, units, drop-ins and enable/mask links under /etc/systemd, systemd's own CPU
affinity, every IRQ's affinity (by name), users, and the collection's state
directory.
"""

import glob
import json
import os
import sys


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as error:
        return f"unreadable: {error.strerror}"


names = {}
for line in read("/proc/interrupts").splitlines()[1:]:
    number, rest = [*line.split(":", 1), ""][:2]
    if number.strip().isdigit():
        names[number.strip()] = rest.split()[-1] if rest.split() else number.strip()

SYSCTLS = [
    "net/core/busy_read",
    "net/core/busy_poll",
    "net/ipv4/tcp_fastopen",
    "kernel/numa_balancing",
    "kernel/nmi_watchdog",
    "vm/stat_interval",
    "kernel/timer_migration",
    "vm/swappiness",
    "vm/dirty_ratio",
    "vm/dirty_background_ratio",
]
SYSFS = [
    "/sys/devices/virtual/workqueue/cpumask",
    "/sys/bus/workqueue/devices/writeback/cpumask",
    "/sys/kernel/mm/ksm/run",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/devices/system/cpu/smt/control",
]
snapshot = {
    "proc_cmdline": read("/proc/cmdline"),
    "grub_defaults": read("/etc/default/grub"),
    "sysctl": {name: read("/proc/sys/" + name) for name in SYSCTLS},
    "sysfs": {path: read(path) for path in SYSFS},
    "hugepages": {
        path: read(path)
        for path in sorted(glob.glob("/sys/devices/system/node/node*/hugepages/*/nr_hugepages"))
    },
    # Units, drop-ins and what is enabled or masked (the symlinks and their
    # targets), read from the files: `systemctl list-unit-files` times out on
    # a busy emulated guest.
    "etc_systemd": {
        os.path.relpath(path, "/etc/systemd"): os.readlink(path) if os.path.islink(path) else "file"
        for path in (
            os.path.join(root, name)
            for root, _dirs, files in os.walk("/etc/systemd")
            for name in files
        )
    },
    "pid1_cpus": [
        line for line in read("/proc/1/status").splitlines() if line.startswith("Cpus_allowed_list")
    ],
    "irqs": {
        names.get(os.path.basename(os.path.dirname(path)), path): read(path)
        for path in sorted(glob.glob("/proc/irq/*/smp_affinity_list"))
    },
    "users": sorted(line.split(":")[0] for line in read("/etc/passwd").splitlines()),
    "sysctl_d": sorted(os.listdir("/etc/sysctl.d")),
    "opt": sorted(os.listdir("/opt")),
    "state_dir": sorted(os.listdir("/var/lib/lowlatency-tuning"))
    if os.path.isdir("/var/lib/lowlatency-tuning")
    else [],
}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(snapshot, handle, indent=2, sort_keys=True)
