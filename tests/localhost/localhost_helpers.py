"""What the localhost tests share: when they may run, the host snapshot and the playbook runner."""

from __future__ import annotations

import glob
import os
import pathlib
import pwd
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = pathlib.Path(sys.executable).parent / "ansible-playbook"
SERVICE_USER = "lowlatency-svc"
RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)

# Only for a host like the development sandbox: without root, where systemd
# runs the host or where a GRUB configuration exists, the roles would install
# units, fence slices or change the boot arguments of the machine running the
# tests (molecule/integration covers those on a VM).
LOCALHOST_ONLY = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: the roles write /proc/sys and /proc/irq"
    ),
    pytest.mark.skipif(
        os.path.isdir("/run/systemd/system"),
        reason="systemd runs this host: the roles would install units and fence slices here"
        " (molecule/integration tests that on a VM)",
    ),
    pytest.mark.skipif(
        os.path.exists("/etc/default/grub") or shutil.which("grubby") is not None,
        reason="this host has a boot loader configuration the kernel role would change",
    ),
]


def snapshot() -> dict:
    """What tune.yml may change on this host, to compare after rollback.yml."""
    irqs = {}
    for path in sorted(pathlib.Path("/proc/irq").glob("*/smp_affinity_list")):
        irqs[str(path)] = path.read_text().strip()
    try:
        pwd.getpwnam(SERVICE_USER)
        user = True
    except KeyError:
        user = False
    return {
        "vm.stat_interval": pathlib.Path("/proc/sys/vm/stat_interval").read_text().strip(),
        "irq affinities": irqs,
        "/etc/sysctl.d": sorted(os.listdir("/etc/sysctl.d")),
        "service user": user,
        "/opt/lowlatency-service": os.path.exists("/opt/lowlatency-service"),
        "run and log files": sorted(
            str(path)
            for pattern in ("/run/lowlatency*", "/var/log/lowlatency*")
            for path in glob.glob(pattern)
        ),
    }


def playbook_runner(tmp_path: pathlib.Path, inventory: pathlib.Path):
    """Run a playbook of the collection by its FQCN, as an installed collection is run."""
    collections = tmp_path / "collections"
    (collections / "ansible_collections" / "lowlatency").mkdir(parents=True)
    (collections / "ansible_collections" / "lowlatency" / "tuning").symlink_to(REPO)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )

    def run(name: str, *extra: str) -> subprocess.CompletedProcess:
        """``name``: a playbook of the collection, or the path of a test's own (``.yml``)."""
        playbook = name if name.endswith(".yml") else "lowlatency.tuning." + name
        command = [str(PLAYBOOK_BIN), playbook, "-i", str(inventory)]
        command += ["-e", "localhost_test_dir=" + str(tmp_path), *extra]
        return subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )

    return run


def tail(result: subprocess.CompletedProcess) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-60:])


def recap(result: subprocess.CompletedProcess) -> dict[str, tuple[int, int, int, int]]:
    """Per host of the last PLAY RECAP: ok, changed, unreachable, failed."""
    found = RECAP.findall(result.stdout.rsplit("PLAY RECAP", 1)[-1])
    assert found, tail(result)
    return {name: tuple(int(value) for value in values) for name, *values in found}
