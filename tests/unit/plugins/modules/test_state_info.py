from __future__ import annotations

from ansible_collections.lowlatency.tuning.plugins.module_utils.state import RoleState
from ansible_collections.lowlatency.tuning.plugins.modules import state_info


def test_lists_records(module_runner, tmp_path):
    state = RoleState("smt", str(tmp_path))
    state.record("setting", "/sys/devices/system/cpu/smt/control", "on", "off", compare="exact")
    state.save()
    everything = module_runner(state_info, {"state_dir": str(tmp_path)})
    assert everything["changed"] is False
    assert everything["owners"] == ["smt"]
    entry = everything["records"]["smt"]["setting"]["/sys/devices/system/cpu/smt/control"]
    assert entry["original"] == "on"
    assert entry["expected"] == "off"
    one = module_runner(state_info, {"state_dir": str(tmp_path), "owner": "kernel"})
    assert one["owners"] == []
    assert one["records"] == {"kernel": {"setting": {}, "file": {}}}
