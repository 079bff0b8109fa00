"""vm.py's reboot watcher against a stand-in QEMU (fake/qemu-system-x86_64).

A guest reboot ends QEMU (-action reboot=shutdown); the watcher must start it
again with the same command minus the restore of the saved guest, and only
after a reboot: a guest poweroff or `vm.py stop` ends the guest for good.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FAKE = Path(__file__).resolve().parent / "fake"


@pytest.fixture
def vm(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("vm", REPO / "tests/testbed/vm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("PATH", f"{FAKE}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_QEMU_LOG", str(tmp_path / "invocations"))
    monkeypatch.setenv("FAKE_QEMU_PLAN", str(tmp_path / "plan"))
    return module


def machine() -> argparse.Namespace:
    return argparse.Namespace(
        name="guest", accel="tcg", tcg_thread="single", memory=3072, sockets=1, cores=2,
        threads=2, numa_nodes=2, nic_queues=1,
    )  # fmt: skip


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            pytest.fail(f"process {pid} still running after {timeout}s")
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


def invocations(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "invocations").read_text().splitlines()]


def test_guest_reboots_restart_qemu_cold_until_it_powers_off(vm, tmp_path):
    (tmp_path / "plan").write_text("guest-reset guest-reset guest-shutdown")
    vm_dir = tmp_path / "vms" / "guest"
    vm_dir.mkdir(parents=True)
    port = vm.launch(machine(), vm_dir, ["-qmp", "unix:qmp.sock"], first_boot=["-incoming", "x"])
    watcher = int((vm_dir / "watch.pid").read_text())
    wait_gone(watcher)

    runs = invocations(tmp_path)
    assert len(runs) == 3
    assert runs[0][-2:] == ["-incoming", "x"]
    # The restarts: the first command without the restore, same port and disk.
    assert runs[1] == runs[0][:-2] == runs[2]
    assert any(f"hostfwd=tcp:127.0.0.1:{port}-:22" in arg for arg in runs[1])
    assert (vm_dir / "restarts").read_text().strip() == "2"
    assert "QEMU ended (guest-shutdown); not restarted" in (vm_dir / "watch.log").read_text()
    assert vm.read_pid(vm_dir) is None
    # stop keeps the watcher's log beside the console log.
    vm.stop_vm(vm_dir, log_dir=tmp_path / "logs")
    assert "QEMU restarted (2)" in (tmp_path / "logs" / "guest.watch.log").read_text()


def test_stop_ends_the_watcher_before_qemu(vm, tmp_path):
    # The guest resets itself just as stop's signal reaches QEMU.
    (tmp_path / "plan").write_text("wait:guest-reset guest-shutdown")
    vm_dir = tmp_path / "vms" / "guest"
    vm_dir.mkdir(parents=True)
    vm.launch(machine(), vm_dir, [])
    watcher = int((vm_dir / "watch.pid").read_text())
    qemu = vm.read_pid(vm_dir)
    assert alive(watcher) and qemu is not None

    assert vm.stop_vm(vm_dir)
    wait_gone(watcher)
    wait_gone(qemu)
    assert not vm_dir.exists()
    time.sleep(0.5)  # a watcher still running would have started the next QEMU by now
    assert len(invocations(tmp_path)) == 1


def test_snapshot_boot_has_no_watcher(vm, tmp_path):
    (tmp_path / "plan").write_text("guest-reset guest-shutdown")
    vm_dir = tmp_path / "vms" / "guest"
    vm_dir.mkdir(parents=True)
    vm.launch(machine(), vm_dir, [], watch=False)
    assert not (vm_dir / "watch.pid").exists()
    qemu = vm.read_pid(vm_dir)
    # Nobody follows the events: connect as the watcher would, see the reset, no restart.
    assert vm.wait_for_exit(vm_dir) == "guest-reset"
    wait_gone(qemu)
    assert len(invocations(tmp_path)) == 1
