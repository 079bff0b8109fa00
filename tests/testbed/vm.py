#!/usr/bin/env python3
"""Start and stop the throwaway QEMU guests the molecule scenarios test on.

Each guest lives in its own directory: a copy-on-write overlay of the cached
image, a per-run SSH key (its public half reaches the guest through QEMU
fw_cfg), QEMU's pidfile and the serial console log. `stop` kills QEMU and
removes the directory, whatever state the guest or an earlier step left.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_pid(vm_dir: Path) -> int | None:
    try:
        pid = int((vm_dir / "qemu.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    # A recycled pid must not get us to kill somebody else's process.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    return pid if str(vm_dir).encode() in cmdline else None


def tap_usable() -> bool:
    return os.geteuid() == 0 and os.access("/dev/net/tun", os.R_OK | os.W_OK)


def qemu_command(args: argparse.Namespace, vm_dir: Path, port: int) -> list[str]:
    vcpus = args.sockets * args.cores * args.threads
    node_mem = args.memory // args.numa_nodes
    cmd = [
        "qemu-system-x86_64",
        "-name", args.name,
        "-machine", "pc",
        "-accel", "tcg,thread=multi" if args.accel == "tcg" else "kvm",
        "-cpu", "host" if args.accel == "kvm" else "max,vendor=GenuineIntel",
        "-smp", f"{vcpus},sockets={args.sockets},cores={args.cores},threads={args.threads}",
        "-m", f"{node_mem * args.numa_nodes}M",
        "-nodefaults", "-display", "none", "-monitor", "none",
        "-serial", f"file:{vm_dir / 'serial.log'}",
        "-daemonize", "-pidfile", str(vm_dir / "qemu.pid"),
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


def ssh_command(vm_dir: Path, port: int, *remote: str) -> list[str]:
    return [
        "ssh", *SSH_OPTIONS, "-i", str(vm_dir / "id_ed25519"), "-p", str(port),
        f"{SSH_USER}@127.0.0.1", *remote,
    ]  # fmt: skip


def wait_for_ssh(vm_dir: Path, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_pid(vm_dir) is None:
            raise RuntimeError("QEMU exited while the guest was booting")
        probe = subprocess.run(
            ssh_command(vm_dir, port, "true"),
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


def start(args: argparse.Namespace) -> int:
    vm_dir = Path(args.state_dir).resolve() / args.name
    stop_vm(vm_dir)
    vm_dir.mkdir(parents=True)
    began = time.monotonic()
    subprocess.run(
        [
            "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
            "-b", str(Path(args.image).resolve()), str(vm_dir / "disk.qcow2"),
        ],
        check=True,
    )  # fmt: skip
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"testbed-{args.name}",
         "-f", str(vm_dir / "id_ed25519")],
        check=True,
    )  # fmt: skip
    # The free port can be taken between our probe and QEMU's bind: retry.
    for _attempt in range(5):
        port = free_port()
        launched = subprocess.run(
            qemu_command(args, vm_dir, port), capture_output=True, text=True, check=False
        )
        if launched.returncode == 0:
            break
        if "host forwarding" not in launched.stderr:
            sys.stderr.write(launched.stderr)
            stop_vm(vm_dir)
            return 1
    else:
        sys.stderr.write(launched.stderr)
        stop_vm(vm_dir)
        return 1
    (vm_dir / "port").write_text(f"{port}\n")
    try:
        wait_for_ssh(vm_dir, port, args.boot_timeout)
    except (RuntimeError, TimeoutError) as err:
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
            "boot_seconds": round(time.monotonic() - began, 1),
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


def stop_vm(vm_dir: Path, log_dir: Path | None = None, grace: float = 10.0) -> bool:
    """Kill the guest's QEMU and remove its directory; True if QEMU was running.

    With log_dir, the serial console log is kept there as NAME.serial.log.
    """
    pid = read_pid(vm_dir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while read_pid(vm_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if read_pid(vm_dir) is not None:
            os.kill(pid, signal.SIGKILL)
            while read_pid(vm_dir) is not None:
                time.sleep(0.1)
    if log_dir is not None and (vm_dir / "serial.log").exists():
        log_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vm_dir / "serial.log", log_dir / f"{vm_dir.name}.serial.log")
    shutil.rmtree(vm_dir, ignore_errors=True)
    return pid is not None


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
    down.add_argument("--log-dir", help="keep each guest's serial console log here")
    down.set_defaults(func=stop)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
