# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A NIC's coalescing, rings, channels and offloads through the ethtool command.

Reads what ``ethtool -c/-g/-l/-k IF`` print, changes what differs with
``ethtool -C/-G/-L/-K IF NAME VALUE ...`` and reads it back. A setting the
driver refuses keeps ethtool's own answer (the netlink error text, or the
``[fixed]`` and ``n/a`` marks of the read) as the reason it was skipped.

The nic_ethtool module and the nic role's re-apply script both run this file:
the role copies it (and linkwatch.py) beside the script, so it imports nothing
of the collection.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Optional, Tuple

# A runner takes ethtool's argv and returns (rc, stdout, stderr).
Runner = Callable[[List[str]], Tuple[int, str, str]]

# group -> (read flag, write flag, what ethtool prints first)
GROUPS = {
    "coalesce": ("-c", "-C", "Coalesce parameters"),
    "rings": ("-g", "-G", "Ring parameters"),
    "channels": ("-l", "-L", "Channel parameters"),
    "features": ("-k", "-K", "Features"),
}
# Order of the writes: channels and rings reset the NIC, so they go first and
# coalescing and offloads are set on the queues that are left.
ORDER = ("channels", "rings", "coalesce", "features")
RESETS = ("channels", "rings")

# ethtool -K takes these short names; -k prints the long ones.
FEATURE_NAMES = {
    "rx": "rx-checksumming",
    "tx": "tx-checksumming",
    "sg": "scatter-gather",
    "tso": "tcp-segmentation-offload",
    "ufo": "udp-fragmentation-offload",
    "gso": "generic-segmentation-offload",
    "gro": "generic-receive-offload",
    "lro": "large-receive-offload",
    "rxvlan": "rx-vlan-offload",
    "txvlan": "tx-vlan-offload",
    "ntuple": "ntuple-filters",
    "rxhash": "receive-hashing",
}

_PAIR_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 -]*?):\s+(\S.*?)\s*$")
_ADAPTIVE_RE = re.compile(r"^Adaptive RX:\s*(\S+)\s+TX:\s*(\S+)")
_FEATURE_RE = re.compile(
    r"^\s*([a-z0-9][a-z0-9_-]*):\s+(on|off)(\s+\[fixed\])?(\s+\[requested (on|off)\])?\s*$"
)


class EthtoolError(Exception):
    """ethtool could not read a group: the message is ethtool's answer."""


def key_name(label: str) -> str:
    """'RX Jumbo' -> 'rx-jumbo', the name ethtool -G/-L takes."""
    return "-".join(label.lower().split())


def feature_name(name: str) -> str:
    """The long name ethtool -k prints for a short or long name."""
    return FEATURE_NAMES.get(name, name)


def value_text(value: object) -> str:
    """A setting's value as ethtool takes and prints it: on/off, or a number."""
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    if text in ("true", "yes"):
        return "on"
    if text in ("false", "no"):
        return "off"
    return text


def parse_coalesce(text: str) -> Dict[str, str]:
    """ethtool -c: name -> value ('n/a' where the driver has no such parameter)."""
    values: Dict[str, str] = {}
    for line in text.splitlines():
        adaptive = _ADAPTIVE_RE.match(line.strip())
        if adaptive:
            values["adaptive-rx"], values["adaptive-tx"] = adaptive.group(1), adaptive.group(2)
            continue
        match = _PAIR_RE.match(line)
        if match and not line.startswith(GROUPS["coalesce"][2]) and " " not in match.group(1):
            values[match.group(1)] = match.group(2)
    return values


def parse_sections(text: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    """ethtool -g and -l: (pre-set maximums, current settings), name -> value."""
    maximums: Dict[str, str] = {}
    current: Dict[str, str] = {}
    section: Optional[Dict[str, str]] = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Pre-set maximums"):
            section = maximums
        elif stripped.startswith("Current hardware settings"):
            section = current
        elif section is not None:
            match = _PAIR_RE.match(line)
            if match:
                section[key_name(match.group(1))] = match.group(2)
    return maximums, current


def parse_features(text: str) -> Dict[str, Tuple[str, bool]]:
    """ethtool -k: long name -> (on/off, fixed by the driver)."""
    features: Dict[str, Tuple[str, bool]] = {}
    for line in text.splitlines():
        match = _FEATURE_RE.match(line)
        if match:
            features[match.group(1)] = (match.group(2), bool(match.group(3)))
    return features


def answer(rc: int, out: str, err: str) -> str:
    """ethtool's answer in one line: what it printed, else its exit code."""
    lines = [line.strip() for line in (err + "\n" + out).splitlines() if line.strip()]
    return "; ".join(lines) if lines else "exit code %d" % rc


class Nic:
    """One interface's four groups, read through a runner of the ethtool command."""

    def __init__(self, interface: str, run: Runner, ethtool: str = "ethtool") -> None:
        self.interface = interface
        self.run = run
        self.ethtool = ethtool

    def read(self, group: str) -> Dict[str, Dict[str, object]]:
        """name -> {value, limit (rings, channels: the maximum), note (why it cannot change)}."""
        flag = GROUPS[group][0]
        rc, out, err = self.run([self.ethtool, flag, self.interface])
        if rc != 0:
            raise EthtoolError("ethtool %s %s: %s" % (flag, self.interface, answer(rc, out, err)))
        found: Dict[str, Dict[str, object]] = {}
        if group == "coalesce":
            for name, value in parse_coalesce(out).items():
                note = "ethtool -c shows n/a: the driver has no %s" % name if value == "n/a" else ""
                found[name] = {"value": value, "limit": None, "note": note}
        elif group == "features":
            for name, (value, fixed) in parse_features(out).items():
                note = (
                    "ethtool -k shows %s: %s [fixed]: the driver does not let it change"
                    % (
                        name,
                        value,
                    )
                    if fixed
                    else ""
                )
                found[name] = {"value": value, "limit": None, "note": note}
        else:
            maximums, current = parse_sections(out)
            for name, value in current.items():
                limit = maximums.get(name)
                note = ""
                if value == "n/a":
                    note = "ethtool %s shows n/a: the driver has no %s %s" % (flag, group, name)
                found[name] = {"value": value, "limit": limit, "note": note}
        return found

    def set(self, group: str, values: Dict[str, str]) -> Tuple[int, str]:
        """ethtool -C/-G/-L/-K IF name value ...: (rc, its answer)."""
        argv = [self.ethtool, GROUPS[group][1], self.interface]
        for name, value in values.items():
            argv.extend([name, value])
        rc, out, err = self.run(argv)
        return rc, answer(rc, out, err)


def lookup(
    group: str, name: str, found: Dict[str, Dict[str, object]]
) -> Optional[Dict[str, object]]:
    return found.get(feature_name(name) if group == "features" else name)


def predict(group: str, name: str, want: str, entry: Optional[Dict[str, object]]) -> str:
    """Why a setting cannot be made, foreseen from the read ('' when it may be)."""
    if entry is None:
        return "ethtool %s does not list %s for this driver" % (GROUPS[group][0], name)
    if entry["note"]:
        return str(entry["note"])
    limit = entry.get("limit")
    if want.isdigit() and isinstance(limit, str) and limit.isdigit() and int(want) > int(limit):
        return "%s %s exceeds the driver's maximum %s (ethtool %s)" % (
            group,
            name,
            limit,
            GROUPS[group][0],
        )
    return ""


def channel_settings(count: int, found: Dict[str, Dict[str, object]]) -> Tuple[Dict[str, str], str]:
    """The -L settings for count queues: combined where the driver has them, else rx and tx.

    Capped at the driver's maximum; the second value says how the count was chosen.
    """
    combined = found.get("combined", {})
    limit = combined.get("limit")
    if isinstance(limit, str) and limit.isdigit() and int(limit) > 0:
        if count > int(limit):
            return {"combined": limit}, "%d wanted, capped at the driver's maximum %s" % (
                count,
                limit,
            )
        return {"combined": str(count)}, ""
    settings: Dict[str, str] = {}
    notes = []
    for name in ("rx", "tx"):
        limit = found.get(name, {}).get("limit")
        if isinstance(limit, str) and limit.isdigit() and int(limit) > 0:
            settings[name] = str(min(count, int(limit)))
            if count > int(limit):
                notes.append("%s capped at the driver's maximum %s" % (name, limit))
    if not settings:
        settings["combined"] = str(count)
    return settings, "; ".join(notes)


def _value(found: Dict[str, Dict[str, object]], group: str, name: str) -> Optional[str]:
    entry = lookup(group, name, found)
    return None if entry is None else str(entry["value"])


def _row(
    group: str,
    name: str,
    want: str,
    seen: Tuple[Optional[str], Optional[str]],
    verdict: Tuple[str, str],
) -> Dict[str, object]:
    """One row; seen is (before, actual), verdict (status, reason)."""
    (before, actual), (status, reason) = seen, verdict
    changed = status == "would_change" or (status in ("applied", "drifted") and before != actual)
    return dict(
        group=group,
        name=name,
        expected=want,
        before=before,
        actual=actual,
        status=status,
        changed=changed,
        reason=reason,
    )


def _write(
    nic: Nic, group: str, todo: Dict[str, str], found: Dict[str, Dict[str, object]]
) -> Tuple[Dict[str, Tuple[int, str]], Dict[str, Dict[str, object]]]:
    """Write todo; (ethtool's answer per setting, the group read back)."""
    # What the read shows the driver cannot take is tried alone: its refusal
    # must not take the rest of the group with it.
    hopeful = {n: v for n, v in todo.items() if not predict(group, n, v, lookup(group, n, found))}
    answers: Dict[str, Tuple[int, str]] = {}
    if hopeful:
        answers = dict.fromkeys(hopeful, nic.set(group, hopeful))
    for name, want in todo.items():
        if name not in hopeful:
            answers[name] = nic.set(group, {name: want})
    after = _read_back(nic, group)
    missed = [name for name, want in hopeful.items() if _value(after, group, name) != want]
    if missed and len(hopeful) > 1:
        for name in missed:
            answers[name] = nic.set(group, {name: hopeful[name]})
        after = _read_back(nic, group)
    return answers, after


def apply_group(
    nic: Nic,
    group: str,
    wants: Dict[str, str],
    *,
    check: bool,
    on_change: Optional[Callable[[str, str, Optional[str], str], None]] = None,
    on_refused: Optional[Callable[[str, str], None]] = None,
    found: Optional[Dict[str, Dict[str, object]]] = None,
    revert_along: bool = False,
) -> List[Dict[str, object]]:
    """Make one group hold wants; one row per setting.

    A row: group, name, expected, before, actual, status (applied, would_change,
    skipped, drifted), changed, reason. Every setting that differs goes into one
    ethtool call (a NIC resets once for all its ring sizes); the ones that do
    not read back as wanted are then tried alone, so that each refusal carries
    the driver's own answer. on_change(group, name, before, want) runs before
    the write (the module records the original there), on_refused(group, name)
    after a setting the driver kept as it was. Features the driver switched
    along with the asked ones get rows of their own: recorded through on_change,
    or with revert_along (a restore) set back to what they were.
    """
    if found is None:
        try:
            found = nic.read(group)
        except EthtoolError as exc:
            return [
                _row(group, n, w, (None, None), ("skipped", str(exc))) for n, w in wants.items()
            ]
    rows: List[Dict[str, object]] = []
    todo: Dict[str, str] = {}
    before: Dict[str, Optional[str]] = {}
    for name, want in wants.items():
        current = before[name] = _value(found, group, name)
        if current == want:
            rows.append(
                _row(group, name, want, (current, current), ("applied", "already in effect"))
            )
        elif check:
            why = predict(group, name, want, lookup(group, name, found))
            status = "skipped" if why else "would_change"
            rows.append(_row(group, name, want, (current, current), (status, why)))
        else:
            todo[name] = want
            if on_change is not None and current is not None:
                on_change(group, name, current, want)
    if not todo:
        return rows
    answers, after = _write(nic, group, todo, found)
    command = "ethtool %s %s" % (GROUPS[group][1], nic.interface)
    for name, want in todo.items():
        seen = (before[name], _value(after, group, name))
        said = answers[name][1]
        note = predict(group, name, want, lookup(group, name, found))
        verdict = _verdict(command, (name, want), seen, said + (" (%s)" % note if note else ""))
        if verdict[0] == "skipped" and on_refused is not None:
            on_refused(group, name)
        rows.append(_row(group, name, want, seen, verdict))
    if group == "features":
        along = _switched_along(todo, found, after)
        rows.extend(
            _set_back(nic, along) if revert_along else _record_along(nic, todo, along, on_change)
        )
    return rows


def _switched_along(
    todo: Dict[str, str], found: Dict[str, Dict[str, object]], after: Dict[str, Dict[str, object]]
) -> Dict[str, Tuple[str, str]]:
    """Features the driver switched with the asked ones (tso takes every TCP
    segmentation feature along): name -> (before, after)."""
    asked = {feature_name(name) for name in todo}
    along = {}
    for name in sorted(after):
        before, now = _value(found, "features", name), _value(after, "features", name)
        if name not in asked and before is not None and now is not None and before != now:
            along[name] = (before, now)
    return along


def _record_along(
    nic: Nic,
    todo: Dict[str, str],
    along: Dict[str, Tuple[str, str]],
    on_change: Optional[Callable[[str, str, Optional[str], str], None]],
) -> List[Dict[str, object]]:
    """Rows for what was switched along, recorded so that a restore is exact."""
    reason = "switched along with %s on %s" % (", ".join(sorted(todo)), nic.interface)
    rows = []
    for name, (before, now) in along.items():
        if on_change is not None:
            on_change("features", name, before, now)
        rows.append(_row("features", name, now, (before, now), ("applied", reason)))
    return rows


def _set_back(nic: Nic, along: Dict[str, Tuple[str, str]]) -> List[Dict[str, object]]:
    """A restore that switched other features along sets them back, one at a time."""
    answers = {name: nic.set("features", {name: before}) for name, (before, _now) in along.items()}
    after = _read_back(nic, "features")
    command = "ethtool -K %s" % nic.interface
    rows = []
    for name, (before, now) in along.items():
        seen = (now, _value(after, "features", name))
        verdict = _verdict(command, (name, before), seen, answers[name][1])
        rows.append(_row("features", name, before, seen, verdict))
    return rows


def _verdict(
    command: str,
    setting: Tuple[str, str],
    seen: Tuple[Optional[str], Optional[str]],
    said: str,
) -> Tuple[str, str]:
    """(status, reason) of a written setting: taken, kept as it was (skipped), or neither."""
    before, actual = seen
    if actual == setting[1]:
        return "applied", "set by %s" % command
    reason = "%s %s %s: %s" % (command, setting[0], setting[1], said)
    if actual == before:
        return "skipped", reason
    return "drifted", "%s: reads back %s" % (reason, actual)


def _read_back(nic: Nic, group: str) -> Dict[str, Dict[str, object]]:
    try:
        return nic.read(group)
    except EthtoolError:
        return {}


def apply_nic(
    nic: Nic,
    wants: Dict[str, Dict[str, str]],
    channels: Optional[int],
    *,
    check: bool,
    on_change: Optional[Callable[[str, str, Optional[str], str], None]] = None,
    on_refused: Optional[Callable[[str, str], None]] = None,
) -> List[Dict[str, object]]:
    """Every group of one interface, channels and rings first; the rows of apply_group.

    wants: group -> name -> value as ethtool prints it (coalesce, rings, features);
    channels: the queue count, None to leave the channels. A channel row's note
    says when the count was capped.
    """
    rows: List[Dict[str, object]] = []
    for group in ORDER:
        found = None
        note = ""
        if group == "channels":
            if channels is None:
                continue
            try:
                found = nic.read("channels")
            except EthtoolError as exc:
                rows.append(
                    dict(
                        group=group,
                        name="combined",
                        expected=str(channels),
                        before=None,
                        actual=None,
                        status="skipped",
                        changed=False,
                        reason=str(exc),
                    )
                )
                continue
            settings, note = channel_settings(channels, found)
        else:
            settings = wants.get(group, {})
        if not settings:
            continue
        rows_of_group = apply_group(
            nic,
            group,
            settings,
            check=check,
            on_change=on_change,
            on_refused=on_refused,
            found=found,
        )
        for row in rows_of_group:
            if note and row["status"] in ("applied", "would_change"):
                row["reason"] = "%s; %s" % (row["reason"], note)
            rows.append(row)
    return rows
