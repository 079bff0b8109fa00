"""Write eth1's IRQ affinities (by IRQ name), rps_cpus and xps_cpus as JSON."""

import json
import os
import sys

NET = "/sys/class/net/eth1"


def read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


names = {}
for line in read("/proc/interrupts").splitlines()[1:]:
    number, rest = [*line.split(":", 1), ""][:2]
    if number.strip().isdigit():
        names[int(number)] = rest.split()[-1]
msi = os.path.join(os.path.realpath(NET + "/device/.."), "msi_irqs")
snapshot = {
    "irqs": {
        names.get(int(irq), irq): read(f"/proc/irq/{irq}/smp_affinity_list")
        for irq in sorted(os.listdir(msi), key=int)
    },
    "numbers": {names.get(int(irq), irq): int(irq) for irq in os.listdir(msi)},
    "queues": {
        f"{queue}/{knob}": read(f"{NET}/queues/{queue}/{knob}")
        for queue in sorted(os.listdir(NET + "/queues"))
        for knob in ("rps_cpus", "xps_cpus")
        if os.path.exists(f"{NET}/queues/{queue}/{knob}")
    },
}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(snapshot, handle, indent=2, sort_keys=True)
