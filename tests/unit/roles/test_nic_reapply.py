"""The nic role's re-apply script, installed as the role installs it, on a recorded ixgbe NIC."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles/nic"
MODULE_UTILS = REPO / "plugins/module_utils"
FILES = yaml.safe_load((ROLE / "vars/main.yml").read_text())["__nic_script_files"]
TESTS = Path(__file__).resolve().parents[1] / "plugins/modules/test_nic_ethtool.py"


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def reapply(tmp_path, monkeypatch):
    """The script imported from a directory laid out as persist.yml installs it."""
    libexec = tmp_path / "libexec"
    libexec.mkdir()
    for name in FILES:
        shutil.copy(
            ROLE / "files" / name if name == FILES[0] else MODULE_UTILS / name, libexec / name
        )
    monkeypatch.syspath_prepend(str(libexec))
    try:
        yield load(libexec / FILES[0], "lowlatency_nic")
    finally:
        for shared in FILES[1:]:
            sys.modules.pop(shared[: -len(".py")], None)


def test_the_role_ships_module_utils_not_a_copy():
    persist = (ROLE / "tasks/persist.yml").read_text()
    assert "role_path ~ '/../../plugins/module_utils/' ~ item" in persist
    assert sorted(FILES[1:]) == ["ethtool.py", "linkwatch.py"]


def test_apply_sets_what_differs_and_lets_the_irq_unit_pin_new_queues(reapply, monkeypatch, capsys):
    fake = load(TESTS, "nic_ethtool_tests").FakeEthtool("ixgbe", "enp3s0f0")
    systemctl = []

    def run(argv):
        if argv[0] == "systemctl":
            systemctl.append(argv)
            return 0, "", ""
        return fake(argv)

    monkeypatch.setattr(reapply, "run", run)
    monkeypatch.setattr(reapply.os.path, "exists", lambda path: path == "/sys/class/net/enp3s0f0")
    config = {
        "enp3s0f0": {
            "coalesce": {"rx-usecs": 0, "adaptive-rx": False},
            "rings": {},
            "channels": 2,
            "features": {"lro": False, "gro": False},
        },
        "eth7": {"coalesce": {"rx-usecs": 0}, "channels": None},
    }
    assert reapply.apply_all(config, []) == 3
    out = capsys.readouterr().out
    assert "enp3s0f0: channels combined: 12 -> 2 (applied)" in out
    assert "enp3s0f0: coalesce rx-usecs: 1 -> 0 (applied)" in out
    assert "generic-receive-offload" not in out and "features gro: on -> off" in out
    assert systemctl == [["systemctl", "try-restart", "lowlatency-irq-affinity.service"]]
    # In effect now: nothing to do, no restart; the refused adaptive-rx is tried, not counted.
    assert reapply.apply_all(config, []) == 0
    assert len(systemctl) == 1


def test_apply_reads_the_config_past_its_managed_comment(reapply, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(reapply, "apply_all", lambda config, names: calls.append((config, names)))
    config = tmp_path / "nic.json"
    config.write_text("#\n# Ansible managed\n#\n" + json.dumps({"interfaces": {"eth1": {}}}))
    assert reapply.main(["--config", str(config), "apply", "eth1"]) == 0
    assert calls == [({"eth1": {}}, ["eth1"])]
    assert reapply.main(["--config", str(tmp_path / "nope.json"), "apply"]) == 2
