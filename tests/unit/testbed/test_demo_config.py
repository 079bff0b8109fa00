"""make demo runs Ansible with the molecule scenarios' settings, not a copy of them."""

from __future__ import annotations

import configparser
import importlib.util
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo", REPO / "tests/testbed/demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_cfg(path: Path) -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(path)
    return config


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${X:-mitogen_linear}", {}, "mitogen_linear"),
        ("${X:-mitogen_linear}", {"X": "linear"}, "linear"),
        ("${D}/tests/testbed/strategy", {"D": "/repo"}, "/repo/tests/testbed/strategy"),
        ("${UNSET}", {}, ""),
        (True, {}, "true"),
        (8, {}, "8"),
    ],
)
def test_expand_follows_molecule_interpolation(demo, text, env, expected):
    assert demo.expand(text, env) == expected


def test_ansible_cfg_carries_every_scenario_option(demo, tmp_path):
    env = demo.ansible_env(tmp_path, {"PATH": "/usr/bin"})
    cfg = read_cfg(Path(env["ANSIBLE_CONFIG"]))
    base = yaml.safe_load((REPO / ".config/molecule/config.yml").read_text())["provisioner"]
    for section, options in base["config_options"].items():
        for key in options:
            assert cfg.has_option(section, key), f"[{section}] {key} missing from the demo's cfg"
    assert cfg["defaults"]["strategy"] == "mitogen_linear"
    assert cfg["ssh_connection"]["pipelining"] == "true"
    assert "UserKnownHostsFile=/dev/null" in cfg["ssh_connection"]["ssh_args"]
    assert "$" not in Path(env["ANSIBLE_CONFIG"]).read_text()
    assert env["ANSIBLE_STRATEGY_PLUGINS"] == str(REPO / "tests/testbed/strategy")
    assert (REPO / "tests/testbed/strategy/mitogen_linear.py").is_file()
    assert env["ANSIBLE_COLLECTIONS_PATH"] == str(tmp_path / "collections")


def test_testbed_strategy_switches_the_demo_back_to_linear(demo, tmp_path):
    env = demo.ansible_env(tmp_path, {"TESTBED_STRATEGY": "linear"})
    assert read_cfg(Path(env["ANSIBLE_CONFIG"]))["defaults"]["strategy"] == "linear"
