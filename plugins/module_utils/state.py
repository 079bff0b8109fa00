# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The per-role record on the host that makes rollback possible.

Each role (the *owner*) keeps one JSON file, ``<state_dir>/<owner>.json``::

    {
      "version": 1,
      "owner": "kernel",
      "entries": {
        "setting": {"/proc/sys/vm/swappiness": {"original": "60", "expected": "10", ...}},
        "file": {"/etc/default/grub": {"exists": true, "copy": "...", ...}}
      }
    }

An entry's ``original`` is written the first time the owner changes the thing
and is never replaced afterwards: a second run, or a run with different
values, must not forget what the host had before the collection touched it.
``expected`` follows the latest run. Restoring drops the entry; the file goes
away with its last entry.

Files are written to a temporary file in the same directory and renamed over
the old one, so a crash leaves either the old or the new record, never half.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import tempfile
from typing import Any, Dict, List, Optional

DEFAULT_STATE_DIR = "/var/lib/lowlatency-tuning"
# What a report entry's status may say (the verify role reads these, never the reason):
# applied: read back in effect; would_change: check mode, the host differs;
# pending_reboot: written, in effect after a reboot; skipped: not done, the reason says why;
# drifted: written or expected, but the host reads back something else;
# restored: the original is back.
STATUSES = ("applied", "would_change", "pending_reboot", "skipped", "drifted", "restored")
FORMAT_VERSION = 1
KINDS = ("setting", "file")

_OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StateError(Exception):
    """The record cannot be read or written, or a name is not acceptable."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_owner(owner: str) -> str:
    """Return owner if it is safe as a file name, else raise StateError."""
    if not isinstance(owner, str) or not _OWNER_RE.match(owner):
        raise StateError(
            "owner %r is not a valid record name: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit (the role name, e.g. 'kernel')" % (owner,)
        )
    return owner


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise StateError("unknown record kind %r, expected one of %s" % (kind, ", ".join(KINDS)))
    return kind


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write data to path through a temporary file and a rename."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def report_entry(
    setting: str,
    expected: Any,
    actual: Any,
    status: str,
    *,
    reason: str = "",
    pending_reboot: bool = False,
) -> Dict[str, Any]:
    """One entry of a role's report (the modules' RV(report))."""
    if status not in STATUSES:
        raise ValueError("report status %r is not one of %s" % (status, ", ".join(STATUSES)))
    entry = dict(setting=setting, expected=expected, actual=actual, status=status)
    return dict(entry, reason=reason, pending_reboot=pending_reboot)


def text_diff(header: str, before: Optional[str], after: Optional[str]) -> Dict[str, str]:
    """A diff entry as Ansible's --diff shows it: None is shown as absent."""
    return {
        "before_header": header,
        "after_header": header,
        "before": "" if before is None else before.rstrip("\n") + "\n",
        "after": "" if after is None else after.rstrip("\n") + "\n",
    }


class RoleState:
    """The record of one owner. Load, change in memory, then save()."""

    def __init__(self, owner: str, state_dir: str = DEFAULT_STATE_DIR) -> None:
        self.owner = check_owner(owner)
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, "%s.json" % owner)
        self.data = self._load()

    def _empty(self) -> Dict[str, Any]:
        return {"version": FORMAT_VERSION, "owner": self.owner, "entries": {}}

    def _load(self) -> Dict[str, Any]:
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return self._empty()
        except OSError as exc:
            raise StateError("cannot read the record %s: %s" % (self.path, exc)) from exc
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise StateError(
                "the record %s is not valid JSON (%s); it holds the values to restore, "
                "so it is left alone: fix or move it by hand" % (self.path, exc)
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            raise StateError("the record %s has no 'entries' mapping" % self.path)
        if data.get("version") != FORMAT_VERSION:
            raise StateError(
                "the record %s has format version %r, this collection reads version %d"
                % (self.path, data.get("version"), FORMAT_VERSION)
            )
        return data

    @property
    def exists(self) -> bool:
        return os.path.exists(self.path)

    def entries(self, kind: str) -> Dict[str, Dict[str, Any]]:
        """The entries of one kind, key -> entry (a live view)."""
        return self.data["entries"].setdefault(_check_kind(kind), {})

    def get(self, kind: str, key: str) -> Optional[Dict[str, Any]]:
        return self.data["entries"].get(_check_kind(kind), {}).get(key)

    def keys(self, kind: Optional[str] = None) -> List[str]:
        """Sorted keys of one kind, or of every kind."""
        kinds = [_check_kind(kind)] if kind else list(KINDS)
        found: List[str] = []
        for one in kinds:
            found.extend(self.data["entries"].get(one, {}).keys())
        return sorted(found)

    def record(
        self, kind: str, key: str, original: Any, expected: Any = None, **extra: Any
    ) -> bool:
        """Remember original (first time only) and expected for key.

        Returns True if the in-memory record changed. A later call for a key
        already recorded keeps its original and only updates expected and extra.
        """
        entries = self.entries(kind)
        entry = entries.get(key)
        if entry is None:
            entry = {"original": original, "expected": expected, "recorded": _now()}
            entry.update(extra)
            entries[key] = entry
            return True
        changed = False
        updates = dict(extra)
        updates["expected"] = expected
        for name, value in updates.items():
            if name in ("original", "recorded"):
                continue
            if entry.get(name) != value:
                entry[name] = value
                changed = True
        return changed

    def forget(self, kind: str, key: str) -> bool:
        """Drop the entry for key. Returns True if there was one."""
        entries = self.data["entries"].get(_check_kind(kind), {})
        if key not in entries:
            return False
        del entries[key]
        if not entries:
            del self.data["entries"][kind]
        return True

    def is_empty(self) -> bool:
        return not any(self.data["entries"].values())

    def save(self) -> None:
        """Write the record atomically (0600); remove the file when empty."""
        if self.is_empty():
            if os.path.exists(self.path):
                os.unlink(self.path)
            return
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
            payload = json.dumps(self.data, indent=2, sort_keys=True) + "\n"
            atomic_write(self.path, payload.encode("utf-8"), 0o600)
        except OSError as exc:
            raise StateError("cannot write the record %s: %s" % (self.path, exc)) from exc


def list_owners(state_dir: str = DEFAULT_STATE_DIR) -> List[str]:
    """Owners that have a record in state_dir."""
    try:
        names = os.listdir(state_dir)
    except FileNotFoundError:
        return []
    owners = []
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext == ".json" and _OWNER_RE.match(stem):
            owners.append(stem)
    return sorted(owners)


def recorded(owner: str, state_dir: str = DEFAULT_STATE_DIR) -> Dict[str, Dict[str, Any]]:
    """What owner has recorded: kind -> key -> entry (a copy)."""
    data = RoleState(owner, state_dir).data["entries"]
    return {kind: dict(data.get(kind, {})) for kind in KINDS}
