"""Mitogen's linear strategy, as the test bed's molecule scenarios run it.

Under QEMU's software emulation (TCG) most of an Ansible task's time is the
guest's Python starting afresh and importing ansible.module_utils for every
module call. Mitogen keeps one Python interpreter per guest and runs each
module in it, so that cost is paid once per connection instead of per task;
the modules themselves and the roles are unchanged. Selected by
.config/molecule/config.yml; TESTBED_STRATEGY=linear goes back to Ansible's
own strategy.

Mitogen's CPU affinity policy is switched off. It pins its connection
multiplexer to CPU 0 and, on a machine with fewer than 4 CPUs, the top-level
process, the workers and every process they start to the CPUs left: on a
2-CPU machine, CPU 1 alone. The create playbook starts QEMU from a worker, so
every guest of the test bed would run on one host core while the other idles
(docs/testbed.md, "Mitogen's CPU affinity policy is off").
"""

from __future__ import annotations

import ansible_mitogen.affinity
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

# The base policy's methods do nothing: processes keep the affinity they are
# started with (all CPUs, or what the user gave with taskset).
ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()

__all__ = ["StrategyModule"]
