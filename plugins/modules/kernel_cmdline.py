#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kernel_cmdline
short_description: Manage the kernel boot arguments of the default entry, recorded for rollback
version_added: "0.1.0"
description:
  - Adds or replaces kernel boot arguments without duplicating or losing the arguments already
    configured. An argument C(key=value) replaces every occurrence of the same key; a flag is
    added once.
  - On Debian and Ubuntu (O(bootloader=grub)) it edits the C(GRUB_CMDLINE_LINUX) assignment in
    place, in the defaults file or in the drop-in under O(grub_dropin_dir) that defines it last
    (the one update-grub honours), then runs O(update_command). A key already present in
    C(GRUB_CMDLINE_LINUX_DEFAULT) is edited where it is.
  - On the RHEL family (O(bootloader=grubby)) it runs
    C(grubby --update-kernel=ALL --args/--remove-args).
  - Before it changes a key for the first time it records, per O(owner), what was there (the
    values, or that the key was absent) in O(state_dir). O(state=absent) puts back the recorded
    values of the keys this owner replaced and removes the keys it added, so several roles can
    own different arguments and each removes only its own.
  - The running kernel only changes at boot. The module compares the configured arguments with
    O(proc_cmdline_path) and returns, per key, whether a reboot is pending.
author:
  - lowlatency.tuning contributors (@lowlatency-tuning)
options:
  args:
    description:
      - Arguments, as a dict (V(null) or V(true) for a flag) or a list of C(key=value) and
        flag strings.
      - With O(state=absent), only the keys count; an empty value means every key recorded
        for O(owner). A named key with nothing recorded is only reported (status V(restored),
        or V(pending_reboot) while the running kernel still has it).
    type: raw
    default: {}
  state:
    description:
      - V(present) sets the arguments; V(absent) restores what O(owner) changed.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Who owns these arguments, usually the role name. Names the record file.
    type: str
    required: true
  exclusive:
    description:
      - With O(state=present), also restore keys this owner set on an earlier run that are no
        longer in O(args), so that switching an option off removes its argument.
    type: bool
    default: false
  bootloader:
    description:
      - V(auto) picks V(grubby) when the grubby command exists, otherwise V(grub).
    type: str
    choices: [auto, grub, grubby]
    default: auto
  grub_defaults_path:
    description:
      - The GRUB defaults file.
    type: path
    default: /etc/default/grub
  grub_dropin_dir:
    description:
      - Directory of GRUB defaults drop-ins (C(*.cfg)) that update-grub sources after
        O(grub_defaults_path).
    type: path
    default: /etc/default/grub.d
  proc_cmdline_path:
    description:
      - Where to read the running kernel's command line.
    type: path
    default: /proc/cmdline
  update_command:
    description:
      - Command (argv list) that regenerates the GRUB configuration after a change.
      - Default C(update-grub), else C(grub-mkconfig -o /boot/grub/grub.cfg).
    type: list
    elements: str
  grubby_command:
    description:
      - Path of grubby. Default is grubby from E(PATH).
    type: path
  state_dir:
    description:
      - Directory of the records; this module keeps C(cmdline/<owner>.json) there.
    type: path
    default: /var/lib/lowlatency-tuning
notes:
  - Only the variables of the default entry are read; hand-written menu entries are left alone.
attributes:
  check_mode:
    description: Can run in check mode and predict the changes without modifying the target.
    support: full
    details: Predicts the changes, the commands and the pending reboots; writes nothing.
  diff_mode:
    description: Returns what has changed (or would change in check mode).
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
"""

EXAMPLES = r"""
- name: Isolate CPUs 2-3 at boot
  lowlatency.tuning.kernel_cmdline:
    owner: kernel
    exclusive: true
    args:
      isolcpus: managed_irq,domain,2-3
      nohz_full: 2-3
      skew_tick: 1
      nosoftlockup:

- name: Another role owns its own argument
  lowlatency.tuning.kernel_cmdline:
    owner: smt
    args: [nosmt]

- name: Put back what the kernel role changed
  lowlatency.tuning.kernel_cmdline:
    owner: kernel
    state: absent
"""

RETURN = r"""
bootloader:
  description: The boot loader handled.
  returned: always
  type: str
  sample: grub
args:
  description: The requested arguments, normalised (null for a flag).
  returned: always
  type: dict
  sample: {"nohz_full": "2-3", "nosoftlockup": null}
cmdline_before:
  description: Configured arguments of the default entry before the change.
  returned: always
  type: str
  sample: quiet
cmdline:
  description: Configured arguments of the default entry after the change (predicted in check mode).
  returned: always
  type: str
  sample: quiet nohz_full=2-3 nosoftlockup
live_cmdline:
  description: The running kernel's command line.
  returned: always
  type: str
  sample: BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=/dev/vda1 ro quiet
changes:
  description: Per key changed, the values before and after (an empty list means absent).
  returned: always
  type: dict
  sample: {"nohz_full": {"before": [], "after": ["2-3"]}}
pending_reboot:
  description: Per key handled, whether the running kernel differs from the configuration.
  returned: always
  type: dict
  sample: {"nohz_full": true}
reboot_required:
  description: Whether any handled key waits for a reboot.
  returned: always
  type: bool
commands:
  description: Commands run (or that would run in check mode).
  returned: always
  type: list
  elements: list
record:
  description: Path of the record file of O(owner).
  returned: always
  type: str
  sample: /var/lib/lowlatency-tuning/cmdline/kernel.json
report:
  description:
    - One entry per key, in the collection's report format. Its status is V(would_change)
      in check mode for a key the boot loader configuration would change, V(pending_reboot)
      while the running kernel differs from the configuration, else V(applied), V(restored)
      or V(drifted) (someone else changed a key this owner set).
  returned: always
  type: list
  elements: dict
  sample:
    - setting: "cmdline:nohz_full"
      expected: nohz_full=2-3
      actual: ""
      status: pending_reboot
      reason: configured in the boot loader; the running kernel has not booted with it
      pending_reboot: true
"""

import contextlib  # noqa: E402 (Ansible wants imports after the documentation)
import json  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.lowlatency.tuning.plugins.module_utils.cmdline import (  # noqa: E402
    Assignment,
    CmdlineError,
    CmdlineModel,
    Value,
    Word,
    format_param,
    normalize_args,
    parse_assignments,
    parse_cmdline,
    shell_unquote,
    values_of,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import (  # noqa: E402
    StateError,
    atomic_write,
    check_owner,
    report_entry,
)

RECORD_VERSION = 1


def render_values(key: str, values: list[Value]) -> str:
    return " ".join(format_param(key, value) for value in values)


def render_params(params: list[tuple[str, Value]]) -> str:
    return " ".join(format_param(key, value) for key, value in params)


class Record:
    """What one owner changed: per key, the values found first and the value set.

    Kept apart from the owner's setting record (in a subdirectory) because
    its originals are lists of boot values, not one knob's content.
    """

    def __init__(self, state_dir: str, owner: str) -> None:
        self.path = os.path.join(state_dir, "cmdline", "%s.json" % check_owner(owner))
        self.keys: dict[str, dict[str, Any]] = {}
        self.exists = os.path.exists(self.path)
        if self.exists:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            if data.get("version") != RECORD_VERSION or not isinstance(data.get("keys"), dict):
                raise CmdlineError(
                    "record %s has an unknown format; fix or move it by hand" % self.path
                )
            self.keys = data["keys"]

    def save(self) -> None:
        data = {"version": RECORD_VERSION, "keys": self.keys}
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        if self.exists:
            with open(self.path, encoding="utf-8") as handle:
                if handle.read() == text:
                    return
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        atomic_write(self.path, text.encode("utf-8"), 0o600)
        self.exists = True

    def remove(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        # Other owners' records still there, or never made: OSError, left alone.
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(self.path))
        self.exists = False


def write_keeping_mode(path: str, text: str) -> None:
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    atomic_write(path, text.encode("utf-8"), mode)


class GrubBackend:
    name = "grub"

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.main_path = module.params["grub_defaults_path"]
        dropin_dir = module.params["grub_dropin_dir"]
        self.paths = [self.main_path]
        if dropin_dir and os.path.isdir(dropin_dir):
            self.paths.extend(
                os.path.join(dropin_dir, name)
                for name in sorted(os.listdir(dropin_dir))
                if name.endswith(".cfg")
            )
        self.texts: dict[str, str] = {}
        assignments: list[Assignment] = []
        for path in self.paths:
            if not os.path.exists(path):
                if path == self.main_path:
                    raise CmdlineError("GRUB defaults file %s does not exist" % path)
                continue
            with open(path, encoding="utf-8") as handle:
                self.texts[path] = handle.read()
            assignments.extend(parse_assignments(path, self.texts[path]))
        self.model = CmdlineModel(assignments)
        self.new_texts: dict[str, str] = {}

    def update_command(self) -> list[str]:
        command = self.module.params["update_command"]
        if command:
            return command
        update_grub = self.module.get_bin_path("update-grub")
        if update_grub:
            return [update_grub]
        mkconfig = self.module.get_bin_path("grub-mkconfig") or self.module.get_bin_path(
            "grub2-mkconfig"
        )
        if not mkconfig:
            raise CmdlineError("neither update-grub nor grub-mkconfig found; set update_command")
        target = (
            "/boot/grub2/grub.cfg" if mkconfig.endswith("grub2-mkconfig") else "/boot/grub/grub.cfg"
        )
        return [mkconfig, "-o", target]

    def plan(self, changes: dict[str, dict[str, list[Value]]]) -> list[list[str]]:
        self.new_texts = self.model.render_files(self.texts, self.main_path)
        return [self.update_command()] if self.new_texts else []

    def diff(self) -> list[dict[str, str]]:
        return [
            {
                "before_header": path,
                "after_header": path,
                "before": self.texts.get(path, ""),
                "after": text,
            }
            for path, text in self.new_texts.items()
        ]

    def apply(self, commands: list[list[str]]) -> None:
        written = []
        try:
            for path, text in self.new_texts.items():
                write_keeping_mode(path, text)
                written.append(path)
            for command in commands:
                rc, out, err = self.module.run_command(command)
                if rc != 0:
                    raise CmdlineError(
                        "%s failed (rc=%d): %s" % (" ".join(command), rc, (err or out).strip())
                    )
        except (CmdlineError, OSError):
            # Leave the boot configuration as it was rather than half changed.
            for path in written:
                write_keeping_mode(path, self.texts[path])
            raise


class GrubbyBackend:
    name = "grubby"

    def __init__(self, module: AnsibleModule, grubby: str) -> None:
        self.module = module
        self.grubby = grubby
        rc, out, err = module.run_command([grubby, "--info=DEFAULT"])
        if rc != 0:
            raise CmdlineError(
                "grubby --info=DEFAULT failed (rc=%d): %s" % (rc, (err or out).strip())
            )
        args_text = None
        for line in out.splitlines():
            if line.startswith("args="):
                args_text, _end, _refs = shell_unquote(line, len("args="))
                args_text = args_text.replace("\0", "$")
                break
        if args_text is None:
            raise CmdlineError("grubby --info=DEFAULT printed no args= line")
        words: list[Any] = [Word(key, value) for key, value in parse_cmdline(args_text)]
        self.model = CmdlineModel([Assignment("", "GRUB_CMDLINE_LINUX", 0, 0, words)])

    def plan(self, changes: dict[str, dict[str, list[Value]]]) -> list[list[str]]:
        remove = [key for key, change in changes.items() if change["before"]]
        add = [
            format_param(key, value) for key, change in changes.items() for value in change["after"]
        ]
        commands = []
        if remove:
            commands.append(
                [self.grubby, "--update-kernel=ALL", "--remove-args=%s" % " ".join(remove)]
            )
        if add:
            commands.append([self.grubby, "--update-kernel=ALL", "--args=%s" % " ".join(add)])
        return commands

    def diff(self) -> list[dict[str, str]]:
        return []

    def apply(self, commands: list[list[str]]) -> None:
        for command in commands:
            rc, out, err = self.module.run_command(command)
            if rc != 0:
                raise CmdlineError(
                    "%s failed (rc=%d): %s" % (" ".join(command), rc, (err or out).strip())
                )


def pick_backend(module: AnsibleModule) -> Any:
    bootloader = module.params["bootloader"]
    grubby = module.params["grubby_command"] or module.get_bin_path("grubby")
    if bootloader == "grubby" or (bootloader == "auto" and grubby):
        if not grubby:
            raise CmdlineError("bootloader=grubby but no grubby command found")
        return GrubbyBackend(module, grubby)
    return GrubBackend(module)


def read_live(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


class Editor:
    """Applies one owner's request to the model and remembers what it did per key."""

    def __init__(self, model: CmdlineModel, record: Record, owner: str) -> None:
        self.model = model
        self.record = record
        self.owner = owner
        self.changes: dict[str, dict[str, list[Value]]] = {}
        self.handled: list[str] = []
        self.restored: list[str] = []
        self.drifted: dict[str, str] = {}

    def _change(self, key: str, values: list[Value]) -> None:
        old = self.model.values(key)
        if self.model.set_values(key, values):
            self.changes[key] = {"before": old, "after": values}

    def set(self, key: str, value: Value) -> None:
        entry = self.record.keys.setdefault(key, {"original": self.model.values(key)})
        entry["expected"] = value
        self._change(key, [value])
        self.handled.append(key)

    def restore(self, key: str) -> None:
        """Put back the original unless someone else changed the key since."""
        entry = self.record.keys.pop(key)
        current = self.model.values(key)
        if current == [entry["expected"]]:
            self._change(key, entry["original"])
            self.restored.append(key)
        elif current != entry["original"]:
            self.drifted[key] = "now %r, changed by someone else since %s set %r; left as it is" % (
                render_values(key, current),
                self.owner,
                format_param(key, entry["expected"]),
            )
        self.handled.append(key)

    def apply(self, state: str, wanted: dict[str, Value], exclusive: bool) -> None:
        if state == "present":
            for key, value in wanted.items():
                self.set(key, value)
            stale = [key for key in self.record.keys if key not in wanted] if exclusive else []
        else:
            stale = [key for key in self.record.keys if not wanted or key in wanted]
            # Named keys restored on an earlier run still get a report line, so
            # that a run after the reboot can say whether the kernel has them.
            for key in wanted:
                if key not in self.record.keys:
                    self.handled.append(key)
                    self.restored.append(key)
        for key in stale:
            self.restore(key)

    def report(
        self, live: list[tuple[str, Value]], check_mode: bool
    ) -> tuple[list[dict[str, Any]], dict[str, bool]]:
        pending: dict[str, bool] = {}
        report = []
        for key in self.handled:
            configured = self.model.values(key)
            live_values = values_of(live, key)
            # The kernel honours the last occurrence of a repeated key.
            if configured:
                waiting = not live_values or live_values[-1] != configured[-1]
            else:
                waiting = bool(live_values)
            pending[key] = waiting
            if key in self.drifted:
                status, reason = "drifted", self.drifted[key]
            elif check_mode and key in self.changes:
                status, reason = "would_change", "the boot loader configuration differs"
            elif waiting:
                status = "pending_reboot"
                reason = "configured in the boot loader; the running kernel has not booted with it"
            elif key in self.restored:
                status, reason = "restored", "back to the value before %s changed it" % self.owner
            else:
                status, reason = "applied", ""
            report.append(
                report_entry(
                    "cmdline:%s" % key,
                    render_values(key, configured),
                    render_values(key, live_values),
                    status,
                    reason=reason,
                    pending_reboot=waiting,
                )
            )
        return report, pending


def requested(params: dict[str, Any]) -> dict[str, Value]:
    if params["state"] == "absent" and isinstance(params["args"], (list, tuple)):
        return normalize_args([str(item).split("=", 1)[0] for item in params["args"]])
    return normalize_args(params["args"])


def run(module: AnsibleModule) -> dict[str, Any]:
    params = module.params
    wanted = requested(params)
    record = Record(params["state_dir"], params["owner"])
    backend = pick_backend(module)
    before = render_params(backend.model.params())
    editor = Editor(backend.model, record, params["owner"])

    editor.apply(params["state"], wanted, params["exclusive"])

    commands = backend.plan(editor.changes) if editor.changes else []
    if not module.check_mode:
        # Originals reach the disk before the boot loader changes, and a
        # record is only dropped once its keys are back.
        if params["state"] == "present" and record.keys:
            record.save()
        if editor.changes:
            backend.apply(commands)
        if record.keys:
            record.save()
        else:
            record.remove()

    live_text = read_live(params["proc_cmdline_path"])
    report, pending = editor.report(parse_cmdline(live_text), module.check_mode)
    for key, why in editor.drifted.items():
        module.warn("%s: %s" % (key, why))
    result: dict[str, Any] = {
        "changed": bool(editor.changes),
        "bootloader": backend.name,
        "args": wanted,
        "cmdline_before": before,
        "cmdline": render_params(backend.model.params()),
        "live_cmdline": live_text,
        "changes": editor.changes,
        "pending_reboot": pending,
        "reboot_required": any(pending.values()),
        "commands": commands,
        "record": record.path,
        "report": report,
    }
    if module._diff:
        result["diff"] = backend.diff() or {
            "before": before + "\n",
            "after": result["cmdline"] + "\n",
        }
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "args": {"type": "raw", "default": {}},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "owner": {"type": "str", "required": True},
            "exclusive": {"type": "bool", "default": False},
            "bootloader": {"type": "str", "choices": ["auto", "grub", "grubby"], "default": "auto"},
            "grub_defaults_path": {"type": "path", "default": "/etc/default/grub"},
            "grub_dropin_dir": {"type": "path", "default": "/etc/default/grub.d"},
            "proc_cmdline_path": {"type": "path", "default": "/proc/cmdline"},
            "update_command": {"type": "list", "elements": "str"},
            "grubby_command": {"type": "path"},
            "state_dir": {"type": "path", "default": "/var/lib/lowlatency-tuning"},
        },
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except (CmdlineError, StateError, OSError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
