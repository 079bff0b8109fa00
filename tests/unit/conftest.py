"""Make the collection importable as ansible_collections.lowlatency.tuning.

The checkout is not inside an ``ansible_collections/<namespace>/<name>`` tree,
so a symlink tree under build/unit provides one. When the checkout already is
such a tree (the sanity copy), its own parent is used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

REPO = Path(__file__).resolve().parents[2]


def _collections_root() -> Path:
    if REPO.parent.name == "lowlatency" and REPO.parent.parent.name == "ansible_collections":
        return REPO.parent.parent.parent
    root = REPO / "build" / "unit"
    link = root / "ansible_collections" / "lowlatency" / "tuning"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists():
            raise RuntimeError(f"{link} exists and is not a symlink")
        link.symlink_to(REPO)
    return root


sys.path.insert(0, str(_collections_root()))


class ModuleExit(Exception):
    """exit_json or fail_json was called; .result holds what the module returned."""

    def __init__(self, result: dict, failed: bool) -> None:
        super().__init__(json.dumps(result, default=str))
        self.result = result
        self.failed = failed


@pytest.fixture
def module_runner(monkeypatch):
    """Run a module's main() with args; return its result dict (with 'failed' on failure)."""

    def exit_json(self, **kwargs):
        raise ModuleExit(kwargs, failed=False)

    def fail_json(self, msg, **kwargs):
        kwargs["msg"] = msg
        kwargs["failed"] = True
        raise ModuleExit(kwargs, failed=True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def run(module, args: dict) -> dict:
        with patch_module_args(args):
            try:
                module.main()
            except ModuleExit as done:
                return done.result
        raise AssertionError("module returned without exit_json or fail_json")

    return run
