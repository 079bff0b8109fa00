"""A real guest from a clone whose absolute path is 150 characters long.

A UNIX socket path holds at most 107 bytes, and QEMU's monitor sockets once
lay under the clone: from a clone at a path longer than about 20 characters
no guest started. This clones the project (its tracked files as they are now)
to a 150-character path, gives the clone its own cache and state directories
there, hard-links the cached image and saved guests into that cache (no image
build, no boot from disk), and starts and stops a guest with the clone's
vm.py. It runs on the controller, beside the scenario's guest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]).resolve()
LENGTH = 150


def git(*args: str, cwd: Path = PROJECT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def make_clone(parent: Path) -> Path:
    """A shared clone at a path of LENGTH characters holding the working tree's tracked files."""
    clone = parent / ("c" * max(LENGTH - len(str(parent)) - 1, 1))
    # Tracked changes not yet committed too: the clone runs the code under test.
    revision = git("stash", "create") or "HEAD"
    git("clone", "--quiet", "--shared", "--no-checkout", str(PROJECT), str(clone), cwd=parent)
    git("checkout", "--quiet", "--detach", git("rev-parse", revision), cwd=clone)
    return clone


def link_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for item in source.iterdir():
        os.link(item, target / item.name)


def vm(clone: Path, *args: str) -> subprocess.CompletedProcess:
    state = clone / ".cache" / "testbed" / "vms"
    return subprocess.run(
        [sys.executable, str(clone / "tests/testbed/vm.py"), "--state-dir", str(state), *args],
        cwd=clone, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_a_guest_starts_and_stops_from_a_clone_at_a_150_character_path():
    image = Path(
        subprocess.run(
            [str(PROJECT / "tests/testbed/image/build-image.sh")],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()[-1]
    )  # fmt: skip
    # In the image's cache, so that its files can be hard-linked.
    parent = Path(tempfile.mkdtemp(prefix="long-path-", dir=image.parent))
    try:
        clone = make_clone(parent)
        assert len(str(clone)) >= LENGTH
        cache = clone / ".cache" / "testbed"
        env = dict(os.environ, TESTBED_CACHE_DIR=str(cache))
        clone_image = subprocess.run(
            [str(clone / "tests/testbed/image/build-image.sh"), "--path"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert Path(clone_image).name == image.name, "the clone maps to another image recipe"
        cache.mkdir(parents=True)
        os.link(image, clone_image)
        # The saved guests of this image (one per machine configuration).
        for saved in (image.parent / "snapshots").glob(f"{image.stem}-*"):
            if (saved / "state").exists():
                link_tree(saved, cache / "snapshots" / saved.name)

        started = vm(
            clone, "start", "--name", "long-path", "--image", clone_image,
            "--accel", os.environ.get("TESTBED_ACCEL", "tcg"),
            "--tcg-thread", os.environ.get("TESTBED_TCG_THREAD", "single"),
            "--boot", os.environ.get("TESTBED_BOOT", "snapshot"),
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        guest = json.loads(started.stdout.splitlines()[-1])
        vm_dir = cache / "vms" / "long-path"
        runtime = Path((vm_dir / "runtime-dir").read_text().strip())
        assert sorted(p.name for p in runtime.iterdir()) == ["events.sock", "qmp.sock"]
        ssh = subprocess.run(
            ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-i", guest["identity_file"],
             "-p", str(guest["port"]), f"{guest['user']}@{guest['address']}", "cat /proc/loadavg"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert ssh.returncode == 0, ssh.stderr

        stopped = vm(clone, "stop", "--name", "long-path")
        assert stopped.stdout.strip() == "stopped long-path", stopped.stderr
        assert not vm_dir.exists()
        assert not runtime.exists()
    finally:
        for clone in parent.iterdir():
            vm(clone, "stop")
        shutil.rmtree(parent, ignore_errors=True)
