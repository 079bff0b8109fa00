"""Read the guest's IRQ state back after the irq role, a link flap and a driver rebind."""

from __future__ import annotations

import json
import time

HOUSEKEEPING = {0, 1}
ISOLATED = {2, 3}
NET = "/sys/class/net/eth1"
UNIT = "lowlatency-irq-affinity.service"


def read(host, path: str) -> str:
    return host.run_test(f"cat {path}").stdout.strip()


def cpulist(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        if part:
            bounds = part.split("-", 1)
            cpus.update(range(int(bounds[0]), int(bounds[-1]) + 1))
    return cpus


def mask(text: str) -> set[int]:
    value = int(text.replace(",", ""), 16)
    return {bit for bit in range(value.bit_length()) if value >> bit & 1}


def nic_irqs(host) -> list[int]:
    pci = host.run_test(f"readlink -f {NET}/device/..").stdout.strip()
    return sorted(int(irq) for irq in host.run_test(f"ls {pci}/msi_irqs").stdout.split())


def affinities(host, irqs) -> dict[int, set[int]]:
    return {irq: cpulist(read(host, f"/proc/irq/{irq}/smp_affinity_list")) for irq in irqs}


def queue_masks(host, kind: str) -> dict[str, set[int]]:
    knob = "rps_cpus" if kind == "rx" else "xps_cpus"
    queues = sorted(
        q for q in host.run_test(f"ls {NET}/queues").stdout.split() if q.startswith(kind)
    )
    return {q: mask(read(host, f"{NET}/queues/{q}/{knob}")) for q in queues}


def pinned(host) -> bool:
    """NIC IRQs on the housekeeping CPUs, RPS there, XPS spread one CPU per queue."""
    irqs = nic_irqs(host)
    if not irqs or any(cpus != HOUSEKEEPING for cpus in affinities(host, irqs).values()):
        return False
    if any(cpus != HOUSEKEEPING for cpus in queue_masks(host, "rx").values()):
        return False
    return list(queue_masks(host, "tx").values()) == [{0}, {1}, {2}, {3}]


def wait_until(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(2)
    return predicate()


def test_nic_queue_irqs_pinned_to_housekeeping(host):
    irqs = nic_irqs(host)
    assert len(irqs) >= 8
    # Only smp_affinity_list: on x86 an MSI vector moves when it next fires, so
    # effective_affinity_list of an idle queue shows the old CPU until then.
    for irq, cpus in affinities(host, irqs).items():
        assert cpus == HOUSEKEEPING, irq


def test_rps_and_xps_per_queue(host):
    assert set(map(frozenset, queue_masks(host, "rx").values())) == {frozenset(HOUSEKEEPING)}
    assert list(queue_masks(host, "tx").values()) == [{0}, {1}, {2}, {3}]


def test_other_irqs_off_the_isolated_cpus_or_refused_by_the_kernel(host):
    assert mask(read(host, "/proc/irq/default_smp_affinity")) == HOUSEKEEPING
    irqs = [int(n) for n in host.run_test("ls /proc/irq").stdout.split() if n.isdigit()]
    for irq, cpus in affinities(host, irqs).items():
        if cpus & ISOLATED:
            # Writing back its own value must fail: the kernel keeps it there.
            path = f"/proc/irq/{irq}/smp_affinity_list"
            same = host.run(f"cat {path} > {path}")
            assert same.rc != 0, f"IRQ {irq} on {cpus} could have been moved"


def test_irqbalance_banned_and_running(host):
    defaults = host.file("/etc/default/irqbalance").content_string
    assert "IRQBALANCE_BANNED_CPULIST=2-3" in defaults.splitlines()
    assert host.service("irqbalance").is_running
    cmdline = host.run_test("cat /proc/$(pidof irqbalance)/cmdline | tr '\\0' ' '").stdout
    assert "--policyscript=/usr/local/libexec/lowlatency-tuning/irqbalance-policy" in cmdline
    irq = nic_irqs(host)[1]
    policy = host.run_test(f"/usr/local/libexec/lowlatency-tuning/irqbalance-policy /sys {irq}")
    assert policy.stdout.strip() == "ban=true"


def test_irqbalance_leaves_the_pins_alone(host):
    # irqbalance rebalances every 10 s; give it two rounds.
    time.sleep(21)
    assert pinned(host)


def test_reapply_unit_active_and_enabled(host):
    unit = host.service(UNIT)
    assert unit.is_running
    assert unit.is_enabled


def test_pinned_again_after_link_down_and_up(host):
    host.run_test("ip link set dev eth1 down")
    host.run_test("ip link set dev eth1 up")
    assert wait_until(lambda: pinned(host), 30)
    assert read(host, f"{NET}/operstate") in ("up", "unknown")


def test_pinned_again_after_driver_rebind(host):
    virtio = host.run_test(f"basename $(readlink -f {NET}/device)").stdout.strip()
    driver = "/sys/bus/virtio/drivers/virtio_net"
    since = host.run_test("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    # Without the unit the kernel's own placement stays: proves the rebind resets.
    host.run_test(f"systemctl stop {UNIT}")
    try:
        host.run_test(f"echo {virtio} > {driver}/unbind")
        host.run_test(f"echo {virtio} > {driver}/bind")
        assert wait_until(lambda: host.file(NET).exists, 30)
        time.sleep(3)
        assert not pinned(host), "the rebind did not reset anything: the test proves nothing"
    finally:
        host.run_test(f"systemctl start {UNIT}")
    assert wait_until(lambda: pinned(host), 30)
    # And with the unit running, a rebind is caught by the link event.
    host.run_test(f"echo {virtio} > {driver}/unbind")
    host.run_test(f"echo {virtio} > {driver}/bind")
    assert wait_until(lambda: host.file(NET).exists, 30)
    assert wait_until(lambda: pinned(host), 30)
    log = host.run_test(f"journalctl -u {UNIT} --since '{since}' -o cat").stdout
    assert "smp_affinity_list" in log


def test_record_keeps_the_originals(host):
    record = json.loads(host.file("/var/lib/lowlatency-tuning/irq.json").content_string)
    settings = record["entries"]["setting"]
    assert any(key.endswith("/rps_cpus") for key in settings)
    assert any(key.endswith("/smp_affinity_list") for key in settings)
    files = record["entries"]["file"]
    assert "/etc/default/irqbalance" in files
    assert "/etc/systemd/system/lowlatency-irq-affinity.service" in files
