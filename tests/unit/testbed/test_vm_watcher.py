"""vm.py's guests against a stand-in QEMU (fake/qemu-system-x86_64).

A guest reboot ends QEMU (-action reboot=shutdown); the watcher must start it
again with the same command minus the restore of the saved guest, and only
after a reboot: a guest poweroff or `vm.py stop` ends the guest for good.

QEMU's sockets must work from a clone at any path (a UNIX socket path has at
most 107 bytes) and go with the guest: on stop, after a failed start, and
when the watcher sees QEMU end for good.
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
    # The guests' runtime directories go here, not into the host's.
    (tmp_path / "run").mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return module


def machine() -> argparse.Namespace:
    return argparse.Namespace(
        name="guest", accel="tcg", tcg_thread="single", memory=3072, sockets=1, cores=2,
        threads=2, numa_nodes=2, nic_queues=1,
    )  # fmt: skip


def long_clone(tmp_path: Path, length: int = 150) -> Path:
    """A directory whose absolute path is `length` characters, as a clone there."""
    clone = tmp_path / ("c" * (length - len(str(tmp_path)) - 1))
    assert len(str(clone)) == length
    return clone


def socket_paths(command: list[str]) -> list[str]:
    """Every UNIX socket path in a QEMU command line (unix:PATH,... or path=PATH of a socket)."""
    paths = []
    for arg in command:
        if arg.startswith("unix:"):
            paths.append(arg.removeprefix("unix:").split(",")[0])
        elif arg.startswith("socket,"):
            paths += [o.removeprefix("path=") for o in arg.split(",") if o.startswith("path=")]
    return paths


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
    port = vm.launch(machine(), vm_dir, first_boot=["-incoming", "x"])
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
    vm.launch(machine(), vm_dir)
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
    vm.launch(machine(), vm_dir, watch=False)
    assert not (vm_dir / "watch.pid").exists()
    qemu = vm.read_pid(vm_dir)
    # Nobody follows the events: connect as the watcher would, see the reset, no restart.
    assert vm.wait_for_exit(vm_dir) == "guest-reset"
    wait_gone(qemu)
    assert len(invocations(tmp_path)) == 1
    vm.stop_vm(vm_dir)


def test_sockets_of_a_guest_in_a_long_clone_are_short(vm, tmp_path, monkeypatch):
    # Even when $XDG_RUNTIME_DIR itself is too long to hold them.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(long_clone(tmp_path / "run")))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir()
    (tmp_path / "plan").write_text("guest-reset guest-shutdown")
    clone = long_clone(tmp_path)
    vm_dir = clone / ".cache" / "testbed" / "vms" / "guest"
    vm_dir.mkdir(parents=True)
    vm.launch(machine(), vm_dir, first_boot=["-incoming", "x"])
    wait_gone(int((vm_dir / "watch.pid").read_text()))

    runs = invocations(tmp_path)
    assert len(runs) == 2  # the stand-in bound its events socket, twice
    sockets = {path for run in runs for path in socket_paths(run)}
    assert len(sockets) == 2, sockets  # the watcher's monitor and the control one
    for path in sockets:
        assert len(path.encode()) <= 107, path
        assert not path.startswith(str(tmp_path / "run")), path
        assert not path.startswith(str(clone)), path
        # The watcher removed them with their directory once QEMU ended for good.
        assert not Path(path).parent.exists(), path
    assert not (vm_dir / vm.RUNTIME_RECORD).exists()


def test_stop_removes_the_sockets_directory(vm, tmp_path):
    (tmp_path / "plan").write_text("wait")
    vm_dir = long_clone(tmp_path) / "vms" / "guest"
    vm_dir.mkdir(parents=True)
    vm.launch(machine(), vm_dir)
    watcher = int((vm_dir / "watch.pid").read_text())
    qemu = vm.read_pid(vm_dir)
    (run,) = invocations(tmp_path)
    runtime = {Path(path).parent for path in socket_paths(run)}
    assert len(runtime) == 1 and next(iter(runtime)).is_dir()

    assert vm.stop_vm(vm_dir)
    wait_gone(watcher)
    wait_gone(qemu)
    assert not next(iter(runtime)).exists()
    assert not vm_dir.exists()


def test_failed_start_removes_the_sockets_directory(vm, tmp_path, monkeypatch, capsys):
    (tmp_path / "plan").write_text("fail")
    state = long_clone(tmp_path) / ".cache" / "testbed" / "vms"
    # The overlay and key need qemu-img and ssh-keygen, not what is tested here.
    monkeypatch.setattr(vm, "make_disk_and_key", lambda vm_dir, backing: vm_dir.mkdir(parents=True))
    args = vm.parse_args(
        ["--state-dir", str(state), "start", "--name", "guest", "--image", "x.qcow2",
         "--boot", "cold", "--nic-queues", "1"]
    )  # fmt: skip

    assert vm.start(args) == 1
    assert "the stand-in was told to fail" in capsys.readouterr().err
    (run,) = invocations(tmp_path)
    sockets = socket_paths(run)
    assert sockets
    for path in sockets:
        assert len(path.encode()) <= 107, path
        assert not Path(path).parent.exists(), path
    assert not (state / "guest").exists()
