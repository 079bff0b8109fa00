# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the kernel_cmdline module in-process, from a checkout or an ansible_collections tree."""

import json
import os
import sys
import tempfile

import pytest

try:
    import ansible_collections.lowlatency.tuning.plugins.module_utils.cmdline  # noqa: F401
except ImportError:
    # A plain checkout is not inside ansible_collections/lowlatency/tuning: link one.
    _ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
    _TREE = tempfile.mkdtemp(prefix="lowlatency-collections-")
    os.makedirs(os.path.join(_TREE, "ansible_collections", "lowlatency"))
    os.symlink(_ROOT, os.path.join(_TREE, "ansible_collections", "lowlatency", "tuning"))
    sys.path.insert(0, _TREE)
    for _name in [
        name
        for name in sys.modules
        if name == "ansible_collections" or name.startswith("ansible_collections.")
    ]:
        del sys.modules[_name]

from ansible.module_utils.testing import patch_module_args


@pytest.fixture
def run_module(capsys):
    """Call a module's main() with args; return (result, failed)."""

    def _run(main, args, check_mode=False, diff=False):
        module_args = dict(args)
        module_args["_ansible_check_mode"] = check_mode
        module_args["_ansible_diff"] = diff
        with patch_module_args(module_args), pytest.raises(SystemExit) as exc:
            main()
        out = capsys.readouterr().out
        result = json.loads(out)
        return result, exc.value.code != 0

    return _run
