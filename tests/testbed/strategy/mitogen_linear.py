"""Mitogen's linear strategy, as the test bed's molecule scenarios run it.

Under QEMU's software emulation (TCG) most of an Ansible task's time is the
guest's Python starting afresh and importing ansible.module_utils for every
module call. Mitogen keeps one Python interpreter per guest and runs each
module in it, so that cost is paid once per connection instead of per task;
the modules themselves and the roles are unchanged. Selected by
.config/molecule/config.yml; TESTBED_STRATEGY=linear goes back to Ansible's
own strategy.
"""

from __future__ import annotations

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
