# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

import json
import os
import stat

import pytest
from ansible_collections.lowlatency.tuning.plugins.module_utils import cmdline
from ansible_collections.lowlatency.tuning.plugins.modules import kernel_cmdline


@pytest.fixture
def run_module(module_runner):
    """module_runner (tests/unit/conftest.py) with check and diff mode."""

    def _run(main, args, check_mode=False, diff=False):
        module_args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        return module_runner(kernel_cmdline, module_args)

    return _run


GRUB = """# If you change this file, run 'update-grub'
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet mitigations=auto"
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200 root_hint=\\"x y\\""
# GRUB_CMDLINE_LINUX="commented out"
"""


# --- parsing -----------------------------------------------------------------


def test_split_cmdline_keeps_quoted_spaces():
    words = cmdline.split_cmdline('BOOT_IMAGE=/vmlinuz ro  quiet dyndbg="file a.c +p" "opt=x y"\n')
    assert words == ["BOOT_IMAGE=/vmlinuz", "ro", "quiet", 'dyndbg="file a.c +p"', '"opt=x y"']
    assert [cmdline.parse_param(w) for w in words[2:]] == [
        ("quiet", None),
        ("dyndbg", "file a.c +p"),
        ("opt", "x y"),
    ]


def test_split_cmdline_refuses_unbalanced_quote():
    with pytest.raises(cmdline.CmdlineError, match="unbalanced"):
        cmdline.split_cmdline('a="b c')


def test_format_param_quotes_only_when_needed():
    assert cmdline.format_param("a", None) == "a"
    assert cmdline.format_param("a", "1") == "a=1"
    assert cmdline.format_param("a", "") == "a="
    assert cmdline.format_param("a", "x y") == 'a="x y"'


def test_normalize_args_dict_and_list():
    assert cmdline.normalize_args(
        {"nohz_full": "2-3", "skew_tick": 1, "nosoftlockup": None, "quiet": True}
    ) == {
        "nohz_full": "2-3",
        "skew_tick": "1",
        "nosoftlockup": None,
        "quiet": None,
    }
    assert cmdline.normalize_args(["isolcpus=managed_irq,domain,2-3", "nosmt", 'x="a b"']) == {
        "isolcpus": "managed_irq,domain,2-3",
        "nosmt": None,
        "x": "a b",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"a": False}, "ambiguous"),
        ({"a": ["x"]}, "string or number"),
        (["a=1", "a=2"], "given twice"),
        (["a b"], "one parameter"),
        ([1], "must be strings"),
        (["bad key!=1"], "one parameter|valid"),
        ({"bad/key": "1"}, "not a valid"),
        (42, "dict or a list"),
    ],
)
def test_normalize_args_refuses_bad_input(args, message):
    with pytest.raises(cmdline.CmdlineError, match=message):
        cmdline.normalize_args(args)


def test_shell_unquote_styles():
    assert cmdline.shell_unquote('"a b" rest', 0) == ("a b", 5, False)
    assert cmdline.shell_unquote("'a \"b\"'", 0)[0] == 'a "b"'
    assert cmdline.shell_unquote('"a \\"b c\\""', 0)[0] == 'a "b c"'
    assert cmdline.shell_unquote('"a\nb" # comment', 0)[:2] == ("a\nb", 5)
    value, _end, refs = cmdline.shell_unquote('"$GRUB_CMDLINE_LINUX x"', 0)
    assert value == "$GRUB_CMDLINE_LINUX x"
    assert refs
    with pytest.raises(cmdline.CmdlineError):
        cmdline.shell_unquote('"open', 0)


def test_model_replaces_duplicates_in_place_and_renders():
    assignments = cmdline.parse_assignments("f", GRUB)
    model = cmdline.CmdlineModel(assignments)
    assert model.values("console") == ["tty0", "ttyS0,115200"]
    assert model.values("root_hint") == ["x y"]
    assert model.set_values("console", ["ttyS1"])
    assert not model.set_values("console", ["ttyS1"])
    new = model.render_files({"f": GRUB}, "f")["f"]
    assert 'GRUB_CMDLINE_LINUX="console=ttyS1 root_hint=\\"x y\\""' in new
    assert '# GRUB_CMDLINE_LINUX="commented out"' in new
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet mitigations=auto"' in new


def test_model_follows_references():
    text = 'GRUB_CMDLINE_LINUX="a=1"\nGRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX b"\n'
    model = cmdline.CmdlineModel(cmdline.parse_assignments("f", text))
    assert model.params() == [("a", "1"), ("b", None)]
    model.set_values("a", ["2"])
    model.set_values("c", ["3"])
    assert (
        model.render_files({"f": text}, "f")["f"]
        == 'GRUB_CMDLINE_LINUX="a=2"\nGRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX b c=3"\n'
    )


# --- module, GRUB ------------------------------------------------------------


@pytest.fixture
def host(tmp_path):
    grub = tmp_path / "grub"
    grub.write_text(GRUB)
    grub.chmod(0o640)
    (tmp_path / "grub.d").mkdir()
    proc = tmp_path / "cmdline"
    proc.write_text(
        "BOOT_IMAGE=/boot/vmlinuz ro console=tty0 console=ttyS0,115200"
        ' root_hint="x y" quiet mitigations=auto\n'
    )
    log = tmp_path / "update.log"
    script = tmp_path / "update-grub"
    script.write_text(f'#!/bin/sh\necho run >> "{log}"\n')
    script.chmod(0o755)

    class Host:
        path = tmp_path

        def args(self, **extra):
            base = {
                "owner": "kernel",
                "bootloader": "grub",
                "grub_defaults_path": str(grub),
                "grub_dropin_dir": str(tmp_path / "grub.d"),
                "proc_cmdline_path": str(proc),
                "update_command": [str(script)],
                "state_dir": str(tmp_path / "state"),
            }
            base.update(extra)
            return base

        def grub(self):
            return grub.read_text()

        def configured(self):
            model = cmdline.CmdlineModel(cmdline.parse_assignments("g", grub.read_text()))
            return model.params()

        def updates(self):
            return log.read_text().count("run") if log.exists() else 0

        def record(self, owner="kernel"):
            return json.loads((tmp_path / "state" / "cmdline" / f"{owner}.json").read_text())

        def boot(self):
            """Pretend to reboot: the running command line becomes the configured one."""
            proc.write_text(
                "BOOT_IMAGE=/boot/vmlinuz ro "
                + kernel_cmdline.render_params(self.configured())
                + "\n"
            )

    return Host()


def test_present_adds_replaces_and_records(host, run_module):
    result = run_module(
        kernel_cmdline.main,
        host.args(args={"nohz_full": "2-3", "mitigations": "off", "nosoftlockup": None}),
    )
    assert not result.get("failed"), result
    assert result["changed"]
    assert host.updates() == 1
    params = host.configured()
    assert ("nohz_full", "2-3") in params
    assert ("nosoftlockup", None) in params
    assert cmdline.values_of(params, "mitigations") == ["off"]
    # The user's own arguments are untouched, quoting included.
    assert cmdline.values_of(params, "console") == ["tty0", "ttyS0,115200"]
    assert cmdline.values_of(params, "root_hint") == ["x y"]
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet mitigations=off"' in host.grub()
    assert stat.S_IMODE(os.stat(host.path / "grub").st_mode) == 0o640
    record = host.record()["keys"]
    assert record["mitigations"] == {"original": ["auto"], "expected": "off"}
    assert record["nohz_full"] == {"original": [], "expected": "2-3"}
    assert result["pending_reboot"] == {
        "nohz_full": True,
        "mitigations": True,
        "nosoftlockup": True,
    }
    assert result["reboot_required"]
    assert {entry["status"] for entry in result["report"]} == {"pending_reboot"}


def test_second_run_changes_nothing_and_reboot_clears_pending(host, run_module):
    args = host.args(args=["nohz_full=2-3", "skew_tick=1"])
    run_module(kernel_cmdline.main, args)
    before = host.grub()
    result = run_module(kernel_cmdline.main, args)
    assert not result["changed"]
    assert host.grub() == before
    assert host.updates() == 1
    assert result["reboot_required"]
    host.boot()
    result = run_module(kernel_cmdline.main, args)
    assert not result["reboot_required"]
    assert [entry["status"] for entry in result["report"]] == ["applied", "applied"]
    assert result["report"][0]["actual"] == "nohz_full=2-3"


def test_duplicate_key_collapses_and_restore_brings_both_back(host, run_module):
    result = run_module(kernel_cmdline.main, host.args(args={"console": "ttyS1"}))
    assert result["changes"] == {
        "console": {"before": ["tty0", "ttyS0,115200"], "after": ["ttyS1"]}
    }
    assert cmdline.values_of(host.configured(), "console") == ["ttyS1"]
    result = run_module(kernel_cmdline.main, host.args(state="absent"))
    assert result["changed"]
    assert host.grub() == GRUB
    assert not (host.path / "state" / "cmdline" / "kernel.json").exists()
    assert not (host.path / "state" / "cmdline").exists(), "no empty record directory left"


def test_absent_restores_exact_file_and_is_idempotent(host, run_module):
    run_module(
        kernel_cmdline.main,
        host.args(args={"nohz_full": "2-3", "mitigations": "off", "nosoftlockup": None}),
    )
    result = run_module(kernel_cmdline.main, host.args(state="absent"))
    assert not result.get("failed")
    assert result["changed"]
    assert host.grub() == GRUB
    assert {entry["setting"] for entry in result["report"]} == {
        "cmdline:nohz_full",
        "cmdline:mitigations",
        "cmdline:nosoftlockup",
    }
    # The running kernel still has none of them: nothing pending after restore.
    assert not result["reboot_required"]
    result = run_module(kernel_cmdline.main, host.args(state="absent"))
    assert not result["changed"]
    assert host.updates() == 2


def test_absent_after_reboot_reports_pending(host, run_module):
    run_module(kernel_cmdline.main, host.args(args={"nohz_full": "2-3"}))
    host.boot()
    result = run_module(kernel_cmdline.main, host.args(state="absent"))
    assert result["pending_reboot"] == {"nohz_full": True}
    assert result["report"][0]["expected"] == ""


def test_absent_leaves_a_value_the_user_changed_since(host, run_module):
    run_module(kernel_cmdline.main, host.args(args={"nohz_full": "2-3"}))
    (host.path / "grub").write_text(host.grub().replace("nohz_full=2-3", "nohz_full=1-3"))
    result = run_module(kernel_cmdline.main, host.args(state="absent"))
    assert not result["changed"]
    assert "nohz_full=1-3" in host.grub()
    assert result["report"][0]["status"] == "drifted"
    assert "changed by someone else" in result["report"][0]["reason"]


def test_owners_remove_only_their_own(host, run_module):
    run_module(kernel_cmdline.main, host.args(args={"nohz_full": "2-3"}))
    run_module(kernel_cmdline.main, host.args(owner="smt", args=["nosmt"]))
    run_module(kernel_cmdline.main, host.args(owner="smt", state="absent"))
    params = host.configured()
    assert ("nosmt", None) not in params
    assert ("nohz_full", "2-3") in params
    assert host.record()["keys"]["nohz_full"]["expected"] == "2-3"


def test_absent_with_named_keys_keeps_the_rest(host, run_module):
    run_module(kernel_cmdline.main, host.args(args={"nohz_full": "2-3", "skew_tick": "1"}))
    result = run_module(kernel_cmdline.main, host.args(state="absent", args=["skew_tick"]))
    assert list(result["changes"]) == ["skew_tick"]
    params = host.configured()
    assert ("nohz_full", "2-3") in params
    assert cmdline.values_of(params, "skew_tick") == []


def test_exclusive_restores_keys_dropped_from_args(host, run_module):
    run_module(
        kernel_cmdline.main,
        host.args(exclusive=True, args={"nohz_full": "2-3", "mitigations": "off"}),
    )
    result = run_module(kernel_cmdline.main, host.args(exclusive=True, args={"nohz_full": "2-3"}))
    assert result["changes"] == {"mitigations": {"before": ["off"], "after": ["auto"]}}
    assert "mitigations" not in host.record()["keys"]
    # Without exclusive, a missing key is left alone.
    run_module(kernel_cmdline.main, host.args(args={"nohz_full": "2-3", "mitigations": "off"}))
    result = run_module(kernel_cmdline.main, host.args(args={"nohz_full": "2-3"}))
    assert not result["changed"]


def test_first_recorded_original_survives_value_changes(host, run_module):
    run_module(kernel_cmdline.main, host.args(args={"mitigations": "off"}))
    run_module(kernel_cmdline.main, host.args(args={"mitigations": "auto,nosmt"}))
    assert host.record()["keys"]["mitigations"] == {"original": ["auto"], "expected": "auto,nosmt"}
    run_module(kernel_cmdline.main, host.args(state="absent"))
    assert host.grub() == GRUB


def test_check_mode_predicts_without_writing(host, run_module):
    result = run_module(
        kernel_cmdline.main, host.args(args={"nohz_full": "2-3"}), check_mode=True, diff=True
    )
    assert not result.get("failed")
    assert result["changed"]
    assert "nohz_full=2-3" in result["cmdline"]
    assert result["pending_reboot"] == {"nohz_full": True}
    assert result["commands"] == [[str(host.path / "update-grub")]]
    assert "nohz_full=2-3" in result["diff"][0]["after"]
    assert [(row["setting"], row["status"]) for row in result["report"]] == [
        ("cmdline:nohz_full", "would_change")
    ]
    assert host.grub() == GRUB
    assert host.updates() == 0
    assert not (host.path / "state").exists()
    # Once written, check mode reads the boot loader as it is: waiting for a reboot.
    run_module(kernel_cmdline.main, host.args(args={"nohz_full": "2-3"}))
    again = run_module(kernel_cmdline.main, host.args(args={"nohz_full": "2-3"}), check_mode=True)
    assert [row["status"] for row in again["report"]] == ["pending_reboot"]


def test_no_assignment_appends_one(host, run_module):
    (host.path / "grub").write_text("GRUB_DEFAULT=0\n")
    run_module(kernel_cmdline.main, host.args(args=["nosmt"]))
    assert host.grub() == 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX="nosmt"\n'


def test_dropin_that_overrides_is_the_one_edited(host, run_module):
    dropin = host.path / "grub.d" / "50-cloudimg-settings.cfg"
    dropin.write_text('GRUB_CMDLINE_LINUX="console=ttyS0 earlyprintk=ttyS0"\n')
    result = run_module(kernel_cmdline.main, host.args(args={"nohz_full": "2-3"}))
    assert (
        dropin.read_text() == 'GRUB_CMDLINE_LINUX="console=ttyS0 earlyprintk=ttyS0 nohz_full=2-3"\n'
    )
    # The main file's assignment is dead (overridden): untouched.
    assert 'GRUB_CMDLINE_LINUX="console=tty0' in host.grub()
    assert "console=tty0 " not in result["cmdline"]
    run_module(kernel_cmdline.main, host.args(state="absent"))
    assert dropin.read_text() == 'GRUB_CMDLINE_LINUX="console=ttyS0 earlyprintk=ttyS0"\n'


def test_failed_update_leaves_files_as_they_were(host, run_module):
    result = run_module(
        kernel_cmdline.main, host.args(args={"nohz_full": "2-3"}, update_command=["false"])
    )
    assert result.get("failed")
    assert "failed" in result["msg"]
    assert host.grub() == GRUB


def test_bad_args_fail_before_any_change(host, run_module):
    result = run_module(kernel_cmdline.main, host.args(args={"nohz_full": False}))
    assert result.get("failed")
    assert "ambiguous" in result["msg"]
    assert host.grub() == GRUB
    result = run_module(kernel_cmdline.main, host.args(owner="../x", args={"a": "1"}))
    assert result.get("failed")
    assert "not a valid record name" in result["msg"]


def test_missing_grub_file_fails_clearly(host, run_module):
    result = run_module(
        kernel_cmdline.main, host.args(grub_defaults_path=str(host.path / "nope"), args=["nosmt"])
    )
    assert result.get("failed")
    assert "does not exist" in result["msg"]


# --- module, grubby ----------------------------------------------------------


FAKE_GRUBBY = """#!/usr/bin/env python3
import json, sys
from pathlib import Path
args = Path("ARGS_FILE")
with open("LOG_FILE", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "--info=DEFAULT":
    print("index=0")
    print('kernel="/boot/vmlinuz-5.14"')
    print('args="' + args.read_text() + '"')
    sys.exit(0)
words = args.read_text().split()
for opt in sys.argv[2:]:
    name, _, value = opt.partition("=")
    if name == "--remove-args":
        keys = value.split()
        words = [w for w in words if w.split("=")[0] not in keys]
    elif name == "--args":
        for new in value.split():
            key = new.split("=")[0]
            idx = [i for i, w in enumerate(words) if w.split("=")[0] == key]
            if idx:
                words[idx[0]] = new
            else:
                words.append(new)
args.write_text(" ".join(words))
"""

RHEL_CMDLINE = "ro crashkernel=auto console=tty0 console=ttyS0 rhgb quiet"


@pytest.fixture
def grubby(tmp_path):
    """A fake grubby keeping the default entry's args in a file and logging each call."""
    args_file = tmp_path / "args"
    args_file.write_text(RHEL_CMDLINE)
    log = tmp_path / "grubby.log"
    script = tmp_path / "grubby"
    script.write_text(
        FAKE_GRUBBY.replace("ARGS_FILE", str(args_file)).replace("LOG_FILE", str(log))
    )
    script.chmod(0o755)
    (tmp_path / "cmdline").write_text("BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14 " + RHEL_CMDLINE + "\n")

    class Grubby:
        path = tmp_path

        def args(self, **extra):
            base = {
                "owner": "kernel",
                "bootloader": "auto",
                "grubby_command": str(script),
                "proc_cmdline_path": str(tmp_path / "cmdline"),
                "state_dir": str(tmp_path / "state"),
            }
            base.update(extra)
            return base

        def current(self):
            return args_file.read_text()

        def calls(self):
            return (
                [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
            )

    return Grubby()


def test_grubby_commands(grubby, run_module):
    result = run_module(
        kernel_cmdline.main,
        grubby.args(args={"nohz_full": "2-3", "crashkernel": "1G", "nosoftlockup": None}),
    )
    assert not result.get("failed"), result
    assert result["bootloader"] == "grubby"
    assert result["commands"] == [
        [str(grubby.path / "grubby"), "--update-kernel=ALL", "--remove-args=crashkernel"],
        [
            str(grubby.path / "grubby"),
            "--update-kernel=ALL",
            "--args=nohz_full=2-3 crashkernel=1G nosoftlockup",
        ],
    ]
    assert (
        grubby.current()
        == "ro console=tty0 console=ttyS0 rhgb quiet nohz_full=2-3 crashkernel=1G nosoftlockup"
    )
    result = run_module(
        kernel_cmdline.main,
        grubby.args(args={"nohz_full": "2-3", "crashkernel": "1G", "nosoftlockup": None}),
    )
    assert not result["changed"]
    assert result["commands"] == []
    result = run_module(kernel_cmdline.main, grubby.args(state="absent"))
    assert result["changed"]
    assert sorted(grubby.current().split()) == sorted(
        ["ro", "crashkernel=auto", "console=tty0", "console=ttyS0", "rhgb", "quiet"]
    )


def test_grubby_check_mode_runs_only_info(grubby, run_module):
    result = run_module(kernel_cmdline.main, grubby.args(args=["nosmt"]), check_mode=True)
    assert result["changed"]
    assert result["commands"] == [
        [str(grubby.path / "grubby"), "--update-kernel=ALL", "--args=nosmt"]
    ]
    assert grubby.calls() == [["--info=DEFAULT"]]
    assert "nosmt" not in grubby.current()


def test_grubby_multiple_values_restored_together(grubby, run_module):
    run_module(kernel_cmdline.main, grubby.args(args={"console": "ttyS1"}))
    assert grubby.current().split().count("console=ttyS1") == 1
    assert "console=tty0" not in grubby.current()
    result = run_module(kernel_cmdline.main, grubby.args(state="absent"))
    assert result["commands"][-1] == [
        str(grubby.path / "grubby"),
        "--update-kernel=ALL",
        "--args=console=tty0 console=ttyS0",
    ]


def test_absent_named_keys_report_after_the_record_is_gone(host, run_module):
    run_module(kernel_cmdline.main, host.args(args={"nohz_full": "2-3"}))
    host.boot()
    run_module(kernel_cmdline.main, host.args(state="absent"))
    result = run_module(kernel_cmdline.main, host.args(state="absent", args=["nohz_full"]))
    assert not result["changed"]
    assert result["report"][0]["status"] == "pending_reboot"
    host.boot()
    result = run_module(kernel_cmdline.main, host.args(state="absent", args=["nohz_full"]))
    assert result["report"][0]["status"] == "restored"
    assert not result["reboot_required"]
