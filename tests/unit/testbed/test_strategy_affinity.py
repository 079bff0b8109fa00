"""The test bed's Mitogen strategy leaves the CPU affinity of what Ansible starts alone.

Runs a one-task play on localhost under tests/testbed/strategy/mitogen_linear.py
and reads the affinity of the command it ran: with Mitogen's own policy, on a
machine with 2 or 3 CPUs, it is pinned to the CPUs left after Mitogen's
multiplexer (CPU 1 alone on 2), as was every QEMU guest the create playbook
started.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from ansible_collections.lowlatency.tuning.plugins.module_utils.cpus import parse_cpulist

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs or more to tell")
def test_commands_keep_the_affinity_ansible_was_started_with(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - ansible.builtin.command: grep Cpus_allowed_list /proc/self/status\n"
        "      register: status\n"
        "    - ansible.builtin.debug:\n"
        '        msg: "affinity={{ status.stdout.split()[-1] }}"\n'
    )
    env = dict(
        os.environ,
        ANSIBLE_STRATEGY_PLUGINS=str(REPO / "tests/testbed/strategy"),
        ANSIBLE_STRATEGY="mitogen_linear",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
    )
    result = subprocess.run(
        [
            str(pathlib.Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cpus = result.stdout.split("affinity=")[1].split('"')[0]
    assert parse_cpulist(cpus) == sorted(os.sched_getaffinity(0)), cpus
