"""nic_ethtool and module_utils/ethtool.py against what ethtool prints for ixgbe and mlx5 NICs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from ansible.module_utils import basic
from ansible_collections.lowlatency.tuning.plugins.module_utils import ethtool
from ansible_collections.lowlatency.tuning.plugins.modules import nic_ethtool

FIXTURES = Path(__file__).parent / "fixtures" / "ethtool"
REFUSALS = yaml.safe_load((FIXTURES / "refusals.yml").read_text())
READS = {"-c": "c", "-g": "g", "-l": "l", "-k": "k"}
WRITES = {"-C": "-c", "-G": "-g", "-L": "-l", "-K": "-k"}
LOW_LATENCY = {
    "coalesce": {"adaptive-rx": False, "adaptive-tx": False, "rx-usecs": 0, "tx-usecs": 0},
    "rings": {"rx": 512, "tx": 512},
    "channels": 2,
    "features": {"lro": False, "gro": False},
}


class FakeEthtool:
    """A NIC behind the ethtool command: the recorded reads, changed as the driver would.

    A write the driver refuses (refusals.yml) changes nothing and prints ethtool's answer;
    netlink checks every attribute of one request before it changes any.
    """

    def __init__(self, driver: str, interface: str) -> None:
        self.driver = driver
        self.interface = interface
        self.texts = {
            flag: (FIXTURES / f"{driver}-{name}.txt").read_text() for flag, name in READS.items()
        }
        self.calls: list[list[str]] = []
        self.fail_read: dict[str, tuple[int, str]] = {}

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        flag, interface, args = argv[1], argv[2], argv[3:]
        if interface != self.interface:
            return (
                81,
                "",
                "netlink error: no device matches name (offset 24)\n"
                "netlink error: No such device\n",
            )
        if flag in READS:
            if flag in self.fail_read:
                rc, err = self.fail_read[flag]
                return rc, "", err
            return 0, self.texts[flag], ""
        pairs = list(zip(args[::2], args[1::2]))
        for name, value in pairs:
            refusal = REFUSALS.get(self.driver, {}).get(f"{flag} {name} {value}")
            if refusal:
                return refusal["rc"], "", refusal["stderr"]
        for name, value in pairs:
            self.change(WRITES[flag], name, value)
        return 0, "", ""

    def change(self, read: str, name: str, value: str) -> None:
        text = self.texts[read]
        if read == "-c" and name.startswith("adaptive-"):
            side = name.split("-")[1].upper()
            pattern = rf"({side}: )(\S+)"
            line = re.search(r"^Adaptive .*$", text, re.M).group(0)
            assert "n/a" not in re.search(pattern, line).group(2), (
                f"unrecorded refusal {read} {name}"
            )
            text = text.replace(line, re.sub(pattern, rf"\g<1>{value}", line))
        elif read == "-c":
            text, count = re.subn(rf"^({name}:\s+)\d+$", rf"\g<1>{value}", text, flags=re.M)
            assert count == 1, f"unrecorded refusal {read} {name}"
        elif read == "-k":
            long = ethtool.feature_name(name)
            text, count = re.subn(rf"^(\t?{long}: )(on|off)$", rf"\g<1>{value}", text, flags=re.M)
            assert count == 1, f"unrecorded refusal {read} {name}"
        else:
            head, current = text.split("Current hardware settings:\n")
            lines = current.splitlines(keepends=True)
            for index, line in enumerate(lines):
                label = line.split(":")[0]
                if ethtool.key_name(label) == name:
                    assert line.split()[-1] != "n/a", f"unrecorded refusal {read} {name}"
                    lines[index] = re.sub(r"\S+$", value, line)
            text = head + "Current hardware settings:\n" + "".join(lines)
        self.texts[read] = text


@pytest.fixture
def nic(monkeypatch):
    """Factory: nic('ixgbe', 'enp3s0f0') serves the module's run_command."""

    def make(driver: str, interface: str) -> FakeEthtool:
        fake = FakeEthtool(driver, interface)
        monkeypatch.setattr(
            basic.AnsibleModule,
            "get_bin_path",
            lambda self, name, required=False: "/usr/sbin/ethtool",
        )
        monkeypatch.setattr(
            basic.AnsibleModule, "run_command", lambda self, argv, **kwargs: fake(argv)
        )
        return fake

    return make


def by_setting(result: dict) -> dict[str, dict]:
    return {row["setting"].split(":", 2)[2]: row for row in result["report"]}


# Parsing, against the recorded prints


def test_parse_coalesce_ixgbe():
    values = ethtool.parse_coalesce((FIXTURES / "ixgbe-c.txt").read_text())
    assert values["adaptive-rx"] == "n/a"
    assert values["rx-usecs"] == "1"
    assert values["tx-frames-irq"] == "256"
    assert values["rx-frames"] == "n/a"
    assert "CQE" not in " ".join(values)


def test_parse_coalesce_mlx5():
    values = ethtool.parse_coalesce((FIXTURES / "mlx5-c.txt").read_text())
    assert (values["adaptive-rx"], values["adaptive-tx"]) == ("on", "on")
    assert (values["rx-usecs"], values["rx-frames"]) == ("8", "128")


def test_parse_rings_and_channels():
    maximums, current = ethtool.parse_sections((FIXTURES / "mlx5-g.txt").read_text())
    assert maximums["rx"] == "8192" and current["rx"] == "1024"
    assert current["rx-jumbo"] == "n/a" and current["tcp-data-split"] == "off"
    maximums, current = ethtool.parse_sections((FIXTURES / "ixgbe-l.txt").read_text())
    assert (maximums["combined"], current["combined"], current["other"], current["rx"]) == (
        "63",
        "12",
        "1",
        "n/a",
    )


def test_parse_features():
    features = ethtool.parse_features((FIXTURES / "ixgbe-k.txt").read_text())
    assert features["generic-receive-offload"] == ("on", False)
    assert features["large-receive-offload"] == ("off", False)
    assert features["rx-gro-hw"] == ("off", True)
    assert features["tx-checksum-ipv4"] == ("off", True)
    assert "Features for enp3s0f0" not in features


def test_channels_combined_capped_and_split():
    found = ethtool.Nic("x", lambda argv: (0, (FIXTURES / "ixgbe-l.txt").read_text(), "")).read(
        "channels"
    )
    assert ethtool.channel_settings(4, found) == ({"combined": "4"}, "")
    settings, note = ethtool.channel_settings(100, found)
    assert settings == {"combined": "63"} and "capped at the driver's maximum 63" in note
    split = {
        "rx": {"value": "8", "limit": "16", "note": ""},
        "tx": {"value": "8", "limit": "4", "note": ""},
    }
    settings, note = ethtool.channel_settings(6, split)
    assert settings == {"rx": "6", "tx": "4"} and "tx capped" in note


def test_answer_joins_lines_or_says_the_exit_code():
    assert (
        ethtool.answer(81, "", "netlink error: a\nnetlink error: b\n")
        == "netlink error: a; netlink error: b"
    )
    assert ethtool.answer(3, "", "") == "exit code 3"


# The module


def test_ixgbe_applies_what_it_takes_and_skips_what_it_refuses(nic, module_runner, tmp_path):
    fake = nic("ixgbe", "enp3s0f0")
    result = module_runner(
        nic_ethtool, {"interface": "enp3s0f0", "state_dir": str(tmp_path), **LOW_LATENCY}
    )
    assert not result.get("failed"), result
    rows = by_setting(result)
    assert rows["coalesce:rx-usecs"]["status"] == "applied"
    assert rows["coalesce:rx-usecs"]["actual"] == "0"
    assert rows["coalesce:tx-usecs"]["reason"] == "already in effect"
    for name in ("adaptive-rx", "adaptive-tx"):
        assert rows[f"coalesce:{name}"]["status"] == "skipped"
        assert rows[f"coalesce:{name}"]["actual"] == "n/a"
        assert "cannot modify an unsupported parameter" in rows[f"coalesce:{name}"]["reason"]
    assert (
        rows["channels:combined"]["status"] == "applied"
        and rows["channels:combined"]["actual"] == "2"
    )
    assert rows["rings:rx"]["status"] == "applied"
    assert rows["features:gro"]["actual"] == "off" and rows["features:gro"]["status"] == "applied"
    assert result["changed"] and result["reset"]
    # Channels before coalescing: a reset would undo the coalescing of the old queues.
    writes = [call[1] for call in fake.calls if call[1] in WRITES]
    assert writes.index("-L") < writes.index("-C")
    record = json.loads((tmp_path / "nic.json").read_text())["entries"]["setting"]
    assert record["ethtool:enp3s0f0:coalesce:rx-usecs"]["original"] == "1"
    assert record["ethtool:enp3s0f0:channels:combined"]["original"] == "12"
    # Refused: nothing changed, nothing to restore.
    assert "ethtool:enp3s0f0:coalesce:adaptive-rx" not in record
    assert "ethtool:enp3s0f0:coalesce:tx-usecs" not in record


def test_second_run_changes_nothing(nic, module_runner, tmp_path):
    fake = nic("ixgbe", "enp3s0f0")
    args = {"interface": "enp3s0f0", "state_dir": str(tmp_path), **LOW_LATENCY}
    module_runner(nic_ethtool, args)
    fake.calls.clear()
    again = module_runner(nic_ethtool, args)
    assert not again["changed"] and not again["reset"]
    assert [call[1] for call in fake.calls if call[1] in WRITES] == ["-C", "-C"]
    statuses = {row["status"] for row in again["report"]}
    assert statuses == {"applied", "skipped"}


def test_check_mode_predicts_and_writes_nothing(nic, module_runner, tmp_path):
    fake = nic("ixgbe", "enp3s0f0")
    args = {
        "interface": "enp3s0f0",
        "state_dir": str(tmp_path),
        "_ansible_check_mode": True,
        **LOW_LATENCY,
    }
    args["rings"] = {"rx": 1024, "tx": 9000}
    result = module_runner(nic_ethtool, args)
    rows = by_setting(result)
    assert [call for call in fake.calls if call[1] in WRITES] == []
    assert not (tmp_path / "nic.json").exists()
    assert rows["coalesce:rx-usecs"]["status"] == "would_change"
    assert rows["coalesce:adaptive-rx"]["status"] == "skipped"
    assert "ethtool -c shows n/a" in rows["coalesce:adaptive-rx"]["reason"]
    assert rows["rings:rx"]["status"] == "would_change"
    assert rows["rings:tx"]["status"] == "skipped"
    assert "exceeds the driver's maximum 4096" in rows["rings:tx"]["reason"]
    assert result["changed"] and not result["reset"]


def test_ring_over_the_maximum_carries_the_netlink_error(nic, module_runner, tmp_path):
    nic("ixgbe", "enp3s0f0")
    result = module_runner(
        nic_ethtool,
        {"interface": "enp3s0f0", "state_dir": str(tmp_path), "rings": {"rx": 8192, "tx": 1024}},
    )
    rows = by_setting(result)
    # One call for both; the refused one is tried alone for its own answer.
    assert rows["rings:tx"]["status"] == "applied" and rows["rings:tx"]["actual"] == "1024"
    assert rows["rings:rx"]["status"] == "skipped"
    assert "requested ring size exceeds maximum" in rows["rings:rx"]["reason"]
    assert "exceeds the driver's maximum 4096" in rows["rings:rx"]["reason"]


def test_fixed_feature_is_skipped_with_the_answer(nic, module_runner, tmp_path):
    nic("ixgbe", "enp3s0f0")
    result = module_runner(
        nic_ethtool,
        {"interface": "enp3s0f0", "state_dir": str(tmp_path), "features": {"rx-gro-hw": True}},
    )
    row = result["report"][0]
    assert row["status"] == "skipped" and row["actual"] == "off"
    assert "Could not change any device features" in row["reason"]
    assert "[fixed]" in row["reason"]
    assert not result["changed"]


def test_mlx5_channels_refused_rest_applied_then_absent_restores(nic, module_runner, tmp_path):
    fake = nic("mlx5", "ens1f0np0")
    args = {"interface": "ens1f0np0", "state_dir": str(tmp_path), **LOW_LATENCY}
    before = dict(fake.texts)
    result = module_runner(nic_ethtool, args)
    rows = by_setting(result)
    assert rows["channels:combined"]["status"] == "skipped"
    assert "too low for existing indirection table" in rows["channels:combined"]["reason"]
    assert rows["coalesce:adaptive-rx"]["status"] == "applied"
    assert rows["coalesce:rx-usecs"]["actual"] == "0"
    assert rows["rings:rx"]["actual"] == "512"
    undone = module_runner(nic_ethtool, {"state": "absent", "state_dir": str(tmp_path)})
    assert {row["status"] for row in undone["report"]} == {"restored"}
    assert len(undone["report"]) == 7
    assert fake.texts == before
    assert not (tmp_path / "nic.json").exists()
    again = module_runner(nic_ethtool, {"state": "absent", "state_dir": str(tmp_path)})
    assert not again["changed"] and again["report"] == []


def test_absent_in_check_mode_writes_nothing(nic, module_runner, tmp_path):
    fake = nic("mlx5", "ens1f0np0")
    module_runner(
        nic_ethtool, {"interface": "ens1f0np0", "state_dir": str(tmp_path), **LOW_LATENCY}
    )
    fake.calls.clear()
    result = module_runner(
        nic_ethtool, {"state": "absent", "state_dir": str(tmp_path), "_ansible_check_mode": True}
    )
    assert result["changed"]
    assert {row["status"] for row in result["report"]} == {"would_change"}
    assert [call for call in fake.calls if call[1] in WRITES] == []
    assert (tmp_path / "nic.json").exists()


def test_unreadable_group_skips_its_settings_with_ethtools_answer(nic, module_runner, tmp_path):
    fake = nic("ixgbe", "enp3s0f0")
    fake.fail_read["-c"] = (1, (FIXTURES / "ioctl-c-unsupported.err").read_text())
    result = module_runner(
        nic_ethtool,
        {"interface": "enp3s0f0", "state_dir": str(tmp_path), "coalesce": {"rx-usecs": 0}},
    )
    row = result["report"][0]
    assert row["status"] == "skipped"
    assert (
        row["reason"]
        == "ethtool -c enp3s0f0: Cannot get device coalesce settings: Operation not supported"
    )


def test_missing_interface_is_skipped(nic, module_runner, tmp_path):
    nic("ixgbe", "enp3s0f0")
    result = module_runner(
        nic_ethtool, {"interface": "eth9", "state_dir": str(tmp_path), "features": {"gro": False}}
    )
    assert result["report"][0]["status"] == "skipped"
    assert "No such device" in result["report"][0]["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"coalesce": {"rx-usecs": "fast"}}, "coalesce.rx-usecs: 'fast' is not a whole number"),
        ({"coalesce": {"adaptive-rx": 3}}, "coalesce.adaptive-rx: 3 is not true or false"),
        ({"rings": {"rx": -1}}, "rings.rx: -1 is not a whole number"),
        ({"features": {"gro": "maybe"}}, "features.gro: 'maybe' is not true or false"),
        ({"channels": 0}, "channels: 0 is not a whole number of at least 1"),
    ],
)
def test_bad_input_is_refused_before_ethtool_runs(nic, module_runner, tmp_path, args, message):
    fake = nic("ixgbe", "enp3s0f0")
    result = module_runner(
        nic_ethtool, {"interface": "enp3s0f0", "state_dir": str(tmp_path), **args}
    )
    assert result["failed"]
    assert message in result["msg"]
    assert fake.calls == []


def test_host_without_ethtool_skips_and_keeps_the_record(nic, module_runner, monkeypatch, tmp_path):
    fake = nic("mlx5", "ens1f0np0")
    module_runner(
        nic_ethtool, {"interface": "ens1f0np0", "state_dir": str(tmp_path), **LOW_LATENCY}
    )
    recorded = (tmp_path / "nic.json").read_text()
    monkeypatch.setattr(
        basic.AnsibleModule, "get_bin_path", lambda self, name, required=False: None
    )
    fake.calls.clear()
    result = module_runner(
        nic_ethtool, {"interface": "ens1f0np0", "state_dir": str(tmp_path), **LOW_LATENCY}
    )
    assert not result.get("failed") and not result["changed"]
    assert {row["status"] for row in result["report"]} == {"skipped"}
    assert "ethtool: command not found" in result["report"][0]["reason"]
    undone = module_runner(nic_ethtool, {"state": "absent", "state_dir": str(tmp_path)})
    assert {row["status"] for row in undone["report"]} == {"skipped"}
    assert (tmp_path / "nic.json").read_text() == recorded
    assert fake.calls == []


def test_features_switched_along_are_recorded_and_restored(nic, module_runner, tmp_path):
    fake = nic("ixgbe", "enp3s0f0")
    before = fake.texts["-k"]
    real_change = fake.change

    # As the kernel does: tso is every TCP segmentation feature, mangleid included.
    def change(read, name, value):
        real_change(read, name, value)
        if read == "-k" and name == "tso":
            for sub in (
                "tx-tcp-segmentation",
                "tx-tcp-mangleid-segmentation",
                "tx-tcp6-segmentation",
            ):
                real_change(read, sub, value)

    fake.change = change
    result = module_runner(
        nic_ethtool,
        {"interface": "enp3s0f0", "state_dir": str(tmp_path), "features": {"tso": False}},
    )
    rows = by_setting(result)
    assert rows["features:tso"]["status"] == "applied"
    assert rows["features:tx-tcp6-segmentation"]["actual"] == "off"
    assert "switched along with tso" in rows["features:tx-tcp6-segmentation"]["reason"]
    # mangleid was already off: not switched, not recorded.
    assert "features:tx-tcp-mangleid-segmentation" not in rows
    undone = module_runner(nic_ethtool, {"state": "absent", "state_dir": str(tmp_path)})
    assert {row["status"] for row in undone["report"]} == {"restored"}
    assert fake.texts["-k"] == before
