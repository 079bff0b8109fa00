"""Start and stop the throwaway QEMU guests the molecule scenarios test on.

Each guest lives in its own directory: a copy-on-write overlay, a per-run SSH
key (its public half reaches the guest through QEMU fw_cfg at boot, or over SSH
right after a restore), QEMU's pidfile and the serial console log. Its UNIX
sockets (QEMU's monitors) live apart, in a short runtime directory that the
guest's directory records: a socket path must fit in 107 bytes, and the
guest's directory lies under the clone, whose path can be of any length.
`stop` kills QEMU and removes both directories, whatever state the guest or
an earlier step left.

By default a guest is not booted but restored: the first start for an image
and machine configuration boots the image from disk once and saves the
settled guest (disk overlay + QEMU migration stream) under the image cache's
snapshots/; every later start restores that in seconds. Reboots inside a
scenario still go through GRUB and the kernel on the guest's disk.

A reboot is a power cycle: QEMU exits on the guest's reset and a watcher
process (`watch`) starts it again, cold, on the same disk, port and console
log. Under TCG a warm reset keeps the translated code of the boot before, and
a reboot after some work in the guest takes 3-4 times as long as a cold boot
(docs/testbed.md, "A reboot is a power cycle").
"""

from __future__ import annotations

import argparse
import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SSH_USER = "root"
MGMT_MAC = "52:54:00:00:00:01"
DATA_MAC = "52:54:00:00:00:02"
SSH_OPTIONS = (
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=10",
)


# The longest path a UNIX socket can have (sun_path holds 108 bytes with the NUL).
SOCKET_PATH_MAX = 107
# The guest's runtime directory (made by tempfile.mkdtemp) and the sockets in it.
RUNTIME_PREFIX = "llt-"
RUNTIME_RECORD = "runtime-dir"
EVENTS_SOCKET = "events.sock"
CONTROL_SOCKET = "qmp.sock"


def runtime_parent() -> Path:
    """Where a guest's runtime directory goes: $XDG_RUNTIME_DIR, else the temp directory.

    The first that exists and leaves room for the longest socket path wins;
    /tmp is the last resort whatever TMPDIR says.
    """
    longest = len(f"/{RUNTIME_PREFIX}XXXXXXXX/{EVENTS_SOCKET}")
    candidates = [os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir(), "/tmp"]
    for candidate in candidates:
        if (
            candidate
            and os.path.isdir(candidate)
            and os.access(candidate, os.W_OK | os.X_OK)
            and len(os.path.abspath(candidate)) + longest <= SOCKET_PATH_MAX
        ):
            return Path(os.path.abspath(candidate))
    raise RuntimeError(
        f"no directory for the guest's sockets: XDG_RUNTIME_DIR, TMPDIR and /tmp are missing, "
        f"not writable or longer than {SOCKET_PATH_MAX - longest} characters "
        f"(XDG_RUNTIME_DIR={os.environ.get('XDG_RUNTIME_DIR')!r}, "
        f"TMPDIR={os.environ.get('TMPDIR')!r})"
    )


def recorded_runtime_dir(vm_dir: Path) -> Path | None:
    try:
        return Path((vm_dir / RUNTIME_RECORD).read_text().strip())
    except FileNotFoundError:
        return None


def runtime_dir(vm_dir: Path) -> Path:
    """The guest's directory for its UNIX sockets: made on first use, recorded in vm_dir."""
    path = recorded_runtime_dir(vm_dir)
    if path is None:
        path = Path(tempfile.mkdtemp(prefix=RUNTIME_PREFIX, dir=runtime_parent()))
        (vm_dir / RUNTIME_RECORD).write_text(f"{path}\n")
    return path


def socket_path(vm_dir: Path, name: str) -> Path:
    return runtime_dir(vm_dir) / name


def remove_runtime_dir(vm_dir: Path) -> None:
    """Remove the runtime directory vm_dir records, and the record."""
    path = recorded_runtime_dir(vm_dir)
    if path is None:
        return
    # Only a directory of ours: a damaged record must not remove anything else.
    if path.is_absolute() and path.name.startswith(RUNTIME_PREFIX):
        shutil.rmtree(path, ignore_errors=True)
    (vm_dir / RUNTIME_RECORD).unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_pid(vm_dir: Path, pidfile: str = "qemu.pid", marker: bytes = b"") -> int | None:
    """The live process in the guest's pidfile (QEMU's by default), or None."""
    try:
        pid = int((vm_dir / pidfile).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    # A recycled pid must not get us to kill somebody else's process (an
    # exited child of ours, not yet reaped, has an empty command line).
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    return pid if str(vm_dir).encode() in cmdline and marker in cmdline else None


def terminate(vm_dir: Path, grace: float, pidfile: str = "qemu.pid", marker: bytes = b"") -> bool:
    """TERM the process of a pidfile, KILL it after `grace` s; True if it was running."""
    pid = read_pid(vm_dir, pidfile, marker)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while read_pid(vm_dir, pidfile, marker) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if read_pid(vm_dir, pidfile, marker) is not None:
        os.kill(pid, signal.SIGKILL)
        while read_pid(vm_dir, pidfile, marker) is not None:
            time.sleep(0.1)
    return True


def tap_usable() -> bool:
    return os.geteuid() == 0 and os.access("/dev/net/tun", os.R_OK | os.W_OK)


def qemu_command(args: argparse.Namespace, vm_dir: Path, port: int) -> list[str]:
    vcpus = args.sockets * args.cores * args.threads
    node_mem = args.memory // args.numa_nodes
    cmd = [
        "qemu-system-x86_64",
        "-name", args.name,
        "-machine", "pc",
        "-accel", f"tcg,thread={args.tcg_thread}" if args.accel == "tcg" else "kvm",
        "-cpu", "host" if args.accel == "kvm" else "max,vendor=GenuineIntel",
        "-smp", f"{vcpus},sockets={args.sockets},cores={args.cores},threads={args.threads}",
        "-m", f"{node_mem * args.numa_nodes}M",
        "-nodefaults", "-display", "none", "-monitor", "none",
        # Appended to, so that it keeps every boot across restarts.
        "-chardev", f"file,id=console,path={vm_dir / 'serial.log'},append=on",
        "-serial", "chardev:console",
        "-daemonize", "-pidfile", str(vm_dir / "qemu.pid"),
        # A guest reboot ends QEMU; the watcher sees why on this monitor.
        "-action", "reboot=shutdown",
        "-qmp", f"unix:{socket_path(vm_dir, EVENTS_SOCKET)},server=on,wait=off",
        # The monitor that saves and restores the guest (ensure_snapshot, resume).
        "-qmp", f"unix:{socket_path(vm_dir, CONTROL_SOCKET)},server=on,wait=off",
        # cache=unsafe: the overlay is thrown away, no flush is worth waiting for.
        "-drive", f"file={vm_dir / 'disk.qcow2'},if=none,id=disk,format=qcow2,"
        "cache=unsafe,discard=unmap",
        "-device", "virtio-blk-pci,drive=disk,bus=pci.0",
        "-fw_cfg", f"name=opt/lowlatency/authorized_keys,file={vm_dir / 'id_ed25519.pub'}",
        "-netdev", f"user,id=mgmt,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", f"virtio-net-pci,bus=pci.0,netdev=mgmt,mac={MGMT_MAC}",
    ]  # fmt: skip
    # Spread vCPUs over the NUMA nodes whole sockets/cores at a time, the
    # way firmware numbers them: node n gets a contiguous block of cpus.
    per_node = vcpus // args.numa_nodes
    for node in range(args.numa_nodes):
        cmd += [
            "-object", f"memory-backend-ram,id=mem{node},size={node_mem}M",
            "-numa", f"node,nodeid={node},memdev=mem{node},"
            f"cpus={node * per_node}-{(node + 1) * per_node - 1}",
        ]  # fmt: skip
    if args.nic_queues > 1 and tap_usable():
        # QEMU gives virtio-net one queue pair per backend queue and only tap
        # has several; the tap has no host address and only serves the queues.
        # It sits behind a PCI expander bridge on the last NUMA node, so the
        # guest sees a NIC with a NUMA node, as on a two-socket server.
        vectors = 2 * args.nic_queues + 2
        cmd += [
            "-device", f"pxb,id=pxb1,bus_nr=128,numa_node={args.numa_nodes - 1}",
            "-netdev", f"tap,id=data,ifname=tb{port},script=no,downscript=no,"
            f"queues={args.nic_queues},vhost=off",
            "-device", f"virtio-net-pci,bus=pxb1,addr=0,netdev=data,mac={DATA_MAC},"
            f"mq=on,vectors={vectors}",
        ]  # fmt: skip
    return cmd


def ssh_command(vm_dir: Path, port: int, *remote: str, key: Path | None = None) -> list[str]:
    return [
        "ssh", *SSH_OPTIONS, "-i", str(key or vm_dir / "id_ed25519"), "-p", str(port),
        f"{SSH_USER}@127.0.0.1", *remote,
    ]  # fmt: skip


def wait_for_ssh(vm_dir: Path, port: int, timeout: float, key: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_pid(vm_dir) is None:
            raise RuntimeError("QEMU exited while the guest was booting")
        probe = subprocess.run(
            ssh_command(vm_dir, port, "true", key=key),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return
        time.sleep(2)
    raise TimeoutError(f"no SSH on 127.0.0.1:{port} after {timeout:.0f}s")


def serial_tail(vm_dir: Path, lines: int = 40) -> str:
    try:
        text = (vm_dir / "serial.log").read_text(errors="replace")
    except FileNotFoundError:
        return "(no serial log)"
    return "\n".join(text.splitlines()[-lines:])


def make_disk_and_key(vm_dir: Path, backing: Path) -> None:
    vm_dir.mkdir(parents=True)
    subprocess.run(
        [
            "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
            "-b", str(backing), str(vm_dir / "disk.qcow2"),
        ],
        check=True,
    )  # fmt: skip
    # A fixed comment keeps the fw_cfg file the same size for every key.
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testbed",
         "-f", str(vm_dir / "id_ed25519")],
        check=True,
    )  # fmt: skip


def launch(
    args: argparse.Namespace,
    vm_dir: Path,
    first_boot: list[str] | None = None,
    watch: bool = True,
) -> int:
    """Start QEMU in the background; return the host port forwarded to SSH.

    `first_boot` options (a migration stream to restore) are left out of the
    command the watcher restarts the guest with after a reboot.
    """
    # The free port can be taken between our probe and QEMU's bind: retry.
    for _attempt in range(5):
        port = free_port()
        command = qemu_command(args, vm_dir, port)
        launched = subprocess.run(
            command + (first_boot or []), capture_output=True, text=True, check=False
        )
        if launched.returncode == 0:
            (vm_dir / "port").write_text(f"{port}\n")
            if watch:
                start_watcher(vm_dir, command)
            return port
        if "host forwarding" not in launched.stderr:
            break
    raise RuntimeError(f"QEMU did not start: {launched.stderr.strip()}")


def start_watcher(vm_dir: Path, command: list[str], timeout: float = 30.0) -> None:
    """Start the process that restarts QEMU on a guest reboot; wait until it listens."""
    (vm_dir / "qemu-command.json").write_text(json.dumps(command))
    with (vm_dir / "watch.log").open("ab") as log:
        watcher = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--state-dir", str(vm_dir.parent),
             "watch", str(vm_dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    (vm_dir / "watch.pid").write_text(f"{watcher.pid}\n")
    deadline = time.monotonic() + timeout
    while not (vm_dir / "watching").exists():
        if watcher.poll() is not None or time.monotonic() > deadline:
            log_text = (vm_dir / "watch.log").read_text(errors="replace").strip()
            raise RuntimeError(f"the reboot watcher did not start: {log_text}")
        time.sleep(0.1)


def wait_for_exit(vm_dir: Path, timeout: float = 30.0) -> str | None:
    """Follow QEMU's event monitor until QEMU exits; return the last shutdown reason."""
    deadline = time.monotonic() + timeout
    runtime = recorded_runtime_dir(vm_dir)
    if runtime is None:  # the guest was stopped: nothing to follow
        return None
    while True:
        try:
            qmp = Qmp(runtime / EVENTS_SOCKET)
            break
        except OSError:
            if read_pid(vm_dir) is None or time.monotonic() > deadline:
                return None
            time.sleep(0.2)
    (vm_dir / "watching").touch()
    reason = None
    for line in qmp.stream:
        message = json.loads(line)
        if message.get("event") == "SHUTDOWN":
            reason = message.get("data", {}).get("reason")
    qmp.close()
    return reason


def watch(args: argparse.Namespace) -> int:
    """Restart QEMU, cold and with the same command, each time the guest reboots."""
    vm_dir = Path(args.vm_dir)
    command = json.loads((vm_dir / "qemu-command.json").read_text())
    restarts = 0
    while (reason := wait_for_exit(vm_dir)) == "guest-reset":
        # The old QEMU must be gone: its port and disk lock are the new one's.
        deadline = time.monotonic() + 30
        while read_pid(vm_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        (vm_dir / "watching").unlink(missing_ok=True)
        launched = subprocess.run(command, capture_output=True, text=True, check=False)
        if launched.returncode != 0:
            print(f"restarting QEMU after a guest reboot failed: {launched.stderr.strip()}")
            forget_sockets(vm_dir)
            return 1
        restarts += 1
        (vm_dir / "restarts").write_text(f"{restarts}\n")
        print(f"guest rebooted: QEMU restarted ({restarts})", flush=True)
    print(f"QEMU ended ({reason or 'no shutdown event'}); not restarted", flush=True)
    forget_sockets(vm_dir)
    return 0


def forget_sockets(vm_dir: Path) -> None:
    """Once QEMU is gone for good its sockets are of no use: remove their directory."""
    deadline = time.monotonic() + 30
    while read_pid(vm_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if read_pid(vm_dir) is None:
        remove_runtime_dir(vm_dir)


class Qmp:
    """A QEMU monitor (QMP) connection: the commands that save a guest, the events."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise
        self.stream = self.sock.makefile("rw")
        self.stream.readline()  # greeting
        self.run("qmp_capabilities")

    def run(self, command: str, **arguments: object) -> object:
        self.stream.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self.stream.flush()
        while True:
            reply = json.loads(self.stream.readline())
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")
            if "return" in reply:
                return reply["return"]

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


def snapshot_key(args: argparse.Namespace, image: Path) -> str:
    """Name a saved guest by everything its saved state depends on."""
    qemu = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    config = [
        image.name, qemu, args.accel, args.tcg_thread, args.memory, args.sockets, args.cores,
        args.threads, args.numa_nodes, args.nic_queues, tap_usable(),
    ]  # fmt: skip
    return hashlib.sha256(json.dumps(config).encode()).hexdigest()[:16]


def ensure_snapshot(args: argparse.Namespace, image: Path) -> Path:
    """Return a directory with a booted, settled guest saved to disk.

    Made once per image and machine configuration by a cold boot; restoring it
    costs seconds where a boot under TCG costs a minute or more.
    """
    root = image.parent / "snapshots"
    root.mkdir(exist_ok=True)
    final = root / f"{image.stem}-{snapshot_key(args, image)}"
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "state").exists():
            return final
        for stale in root.iterdir():
            if stale.is_dir() and not stale.name.startswith(image.stem):
                shutil.rmtree(stale, ignore_errors=True)
        work = root / f".{final.name}.{os.getpid()}"
        stop_vm(work)
        make_disk_and_key(work, image)
        try:
            port = launch(args, work, watch=False)
            wait_for_ssh(work, port, args.boot_timeout)
            subprocess.run(
                ssh_command(work, port, "systemctl is-system-running --wait; sync"),
                stdin=subprocess.DEVNULL, capture_output=True, check=False,
            )  # fmt: skip
            qmp = Qmp(socket_path(work, CONTROL_SOCKET))
            qmp.run("stop")
            qmp.run("migrate", uri=f"exec:cat > {work / 'state'}")
            while (status := qmp.run("query-migrate")["status"]) not in ("completed", "failed"):  # type: ignore[index]
                time.sleep(0.2)
            if status != "completed":
                raise RuntimeError("saving the booted guest failed")
            qmp.run("quit")
            qmp.close()
        except BaseException:
            stop_vm(work)
            raise
        while read_pid(work) is not None:
            time.sleep(0.1)
        remove_runtime_dir(work)
        for leftover in ("qemu.pid", "port"):
            (work / leftover).unlink(missing_ok=True)
        work.rename(final)
        return final


def resume(args: argparse.Namespace, vm_dir: Path, snapshot: Path) -> int:
    """Restore the saved guest, then hand it this run's key and the clock."""
    make_disk_and_key(vm_dir, snapshot / "disk.qcow2")
    port = launch(args, vm_dir, first_boot=["-incoming", f"exec:cat {snapshot / 'state'}"])
    # The guest was saved paused, so it arrives paused: run it once it is in.
    qmp = Qmp(socket_path(vm_dir, CONTROL_SOCKET))
    while qmp.run("query-status")["status"] == "inmigrate":  # type: ignore[index]
        time.sleep(0.2)
    qmp.run("cont")
    qmp.close()
    wait_for_ssh(vm_dir, port, args.boot_timeout, key=snapshot / "id_ed25519")
    handover = (
        "umask 077 && cat > /root/.ssh/authorized_keys.new && "
        "mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys && "
        f"date -s @{time.time():.3f} >/dev/null"
    )
    subprocess.run(
        ssh_command(vm_dir, port, handover, key=snapshot / "id_ed25519"),
        input=(vm_dir / "id_ed25519.pub").read_bytes(), capture_output=True, check=True,
    )  # fmt: skip
    wait_for_ssh(vm_dir, port, 60)
    return port


def start(args: argparse.Namespace) -> int:
    vm_dir = Path(args.state_dir).resolve() / args.name
    image = Path(args.image).resolve()
    stop_vm(vm_dir)
    began = time.monotonic()
    try:
        if args.boot == "snapshot":
            port = resume(args, vm_dir, ensure_snapshot(args, image))
        else:
            make_disk_and_key(vm_dir, image)
            port = launch(args, vm_dir)
            wait_for_ssh(vm_dir, port, args.boot_timeout)
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as err:
        sys.stderr.write(f"{args.name}: {err}\n--- serial console ---\n{serial_tail(vm_dir)}\n")
        if not args.keep_on_failure:
            stop_vm(vm_dir)
        return 1
    json.dump(
        {
            "instance": args.instance or args.name,
            "address": "127.0.0.1",
            "port": port,
            "user": SSH_USER,
            "identity_file": str(vm_dir / "id_ed25519"),
            "serial_log": str(vm_dir / "serial.log"),
            "pid": read_pid(vm_dir),
            "boot": args.boot,
            "boot_seconds": round(time.monotonic() - began, 1),
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


def stop_vm(vm_dir: Path, log_dir: Path | None = None, grace: float = 10.0) -> bool:
    """Kill the guest's QEMU, remove its directory and its runtime directory.

    True if QEMU was running.

    With log_dir, the serial console log is kept there as NAME.serial.log.
    """
    # The watcher first, or it restarts the QEMU about to be killed.
    terminate(vm_dir, 5.0, "watch.pid", b"watch")
    was_running = terminate(vm_dir, grace)
    if log_dir is not None:
        # The watcher's log says why a reboot did not come back, if it did not.
        for log in ("serial", "watch"):
            if (vm_dir / f"{log}.log").exists():
                log_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(vm_dir / f"{log}.log", log_dir / f"{vm_dir.name}.{log}.log")
    remove_runtime_dir(vm_dir)
    shutil.rmtree(vm_dir, ignore_errors=True)
    return was_running


def stop(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    present = (
        sorted(p.name for p in state_dir.iterdir() if p.is_dir()) if state_dir.is_dir() else []
    )
    patterns = args.name or ["*"]
    names = [name for name in present if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    log_dir = Path(args.log_dir) if args.log_dir else None
    for name in names:
        if stop_vm(state_dir / name, log_dir):
            print(f"stopped {name}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--state-dir", required=True, help="directory holding one subdirectory per guest"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("start", help="boot a guest and wait for SSH; print its connection as JSON")
    up.add_argument("--name", required=True, help="the guest's directory under --state-dir")
    up.add_argument("--instance", help="name to report (molecule's platform name); default --name")
    up.add_argument("--image", required=True, help="cached base image (qcow2)")
    up.add_argument("--accel", choices=("tcg", "kvm"), default="tcg")
    up.add_argument(
        "--tcg-thread",
        choices=("single", "multi"),
        default="single",
        help="TCG: one host thread for all vCPUs (default), or one per vCPU",
    )
    up.add_argument(
        "--boot",
        choices=("snapshot", "cold"),
        default="snapshot",
        help="restore a saved booted guest (made on first use) or boot from disk",
    )
    up.add_argument(
        "--memory", type=int, default=3072, help="MiB, split evenly over the NUMA nodes"
    )
    up.add_argument("--sockets", type=int, default=1)
    up.add_argument("--cores", type=int, default=2)
    up.add_argument("--threads", type=int, default=2)
    up.add_argument("--numa-nodes", type=int, default=2)
    up.add_argument("--nic-queues", type=int, default=4)
    up.add_argument("--boot-timeout", type=float, default=420.0)
    up.add_argument(
        "--keep-on-failure", action="store_true", help="leave a failed guest for debugging"
    )
    up.set_defaults(func=start)

    down = sub.add_parser(
        "stop", help="kill guests and remove their files (all of them without --name)"
    )
    down.add_argument("--name", action="append", help="guest name or shell pattern; repeatable")
    down.add_argument("--log-dir", help="keep each guest's console and reboot watcher logs here")
    down.set_defaults(func=stop)

    watcher = sub.add_parser(
        "watch", help="(started by `start`) restart a guest's QEMU each time the guest reboots"
    )
    watcher.add_argument("vm_dir", help="the guest's directory")
    watcher.set_defaults(func=watch)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
