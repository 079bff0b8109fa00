# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Drift the host reads now against what the roles recorded in the state dir.

Two checks, both driven by the records (``<state_dir>/<owner>.json``) alone,
so that the verify role's module and the host-side timer run the same code:

- Overrides: a configuration file the roles wrote can be overridden by one the
  host reads after it. A later-sorting ``sysctl.d`` file (systemd-sysctl's
  order), a later ``system.conf.d`` file, a unit drop-in that sorts after the
  role's (systemd's ``DropInPaths`` order, the effective value from
  ``systemctl show``), and an environment file loaded after the role's
  ``/etc/default/NAME`` (``EnvironmentFiles`` of ``NAME.service``). Each
  recorded file gives one row, ``drifted`` naming the overriding file.
- Settings: every recorded ``/sys`` or ``/proc/sys`` knob read now and compared
  with the value recorded as expected (the host-side timer only; in a play the
  roles read their knobs themselves).

Rows are report entries (state.report_entry) with the recording ``owner``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ansible_collections.lowlatency.tuning.plugins.module_utils.cpus import (
    CpuSetError,
    parse_cpulist,
)
from ansible_collections.lowlatency.tuning.plugins.module_utils.knob import same
from ansible_collections.lowlatency.tuning.plugins.module_utils.state import (
    StateError,
    list_owners,
    recorded,
    report_entry,
)

# systemd-sysctl's and procps' search path, highest priority first: a file
# masks a same-named one further down; all are applied in file-name order.
SYSCTL_DIRS = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
)
# Read after every sysctl.d file by `sysctl --system`, and at 99 through
# Debian's /etc/sysctl.d/99-sysctl.conf symlink by systemd-sysctl.
SYSCTL_CONF = "/etc/sysctl.conf"
MANAGER_DIRS = (
    "/etc/systemd/system.conf.d",
    "/run/systemd/system.conf.d",
    "/usr/local/lib/systemd/system.conf.d",
    "/usr/lib/systemd/system.conf.d",
)
MANAGER_CONF = "/etc/systemd/system.conf"
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system")
# A concrete unit's drop-in (not a template's, a prefix's or a unit type's).
_DROPIN_RE = re.compile(
    r"^(?:%s)/([^/@]+(?:@[^/.]+)?(?<!-)\.[a-z]+)\.d/[^/]+\.conf$"
    % "|".join(map(re.escape, UNIT_DIRS))
)
_ENV_FILE_RE = re.compile(r"^/etc/(?:default|sysconfig)/([A-Za-z0-9_.@-]+)$")
KNOB_PREFIXES = ("/sys/", "/proc/sys/", "/proc/irq/")

# How systemctl show prints what a drop-in says: compared in these forms.
_CPU_KEYS = frozenset(
    ("CPUAffinity", "AllowedCPUs", "StartupAllowedCPUs", "AllowedMemoryNodes", "NUMAMask")
)
_INT_KEYS = frozenset(("Nice", "CPUSchedulingPriority", "OOMScoreAdjust", "IOSchedulingPriority"))
_NAMED = {
    "CPUSchedulingPolicy": {"other": 0, "fifo": 1, "rr": 2, "batch": 3, "idle": 5},
    "NUMAPolicy": {"default": 0, "preferred": 1, "bind": 2, "interleave": 3, "local": 4},
}
_SIZE_SUFFIX = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_SIZE_RE = re.compile(r"^(\d+)([KMGTPE]?)$")
# Properties every systemctl show call asks for, beside the settings' own keys.
_UNIT_PROPS = ("Id", "LoadState", "DropInPaths", "FragmentPath", "EnvironmentFiles")

Runner = Callable[[List[str]], Tuple[int, str, str]]


def run_command(argv: List[str]) -> Tuple[int, str, str]:
    """Run argv; (rc, stdout, stderr), rc 127 when the program is missing, 124 on a timeout."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except FileNotFoundError as exc:
        return 127, "", str(exc)
    except subprocess.TimeoutExpired:
        return 124, "", "no answer in 60 s"
    return proc.returncode, proc.stdout, proc.stderr


def under(root: str, path: str) -> str:
    return path if root == "/" else os.path.join(root, path.lstrip("/"))


def read_text(root: str, path: str) -> Optional[str]:
    try:
        with open(under(root, path), encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


# --- configuration directories (sysctl.d, system.conf.d) ---------------------


def conf_files(dirs: Sequence[str], root: str = "/") -> Tuple[List[str], Dict[str, str]]:
    """(paths in the order they apply, masked path -> the path that masks it).

    As systemd's conf_files_list: *.conf files of all dirs sorted by file name;
    a name in an earlier dir masks the same name further down; a symlink to
    /dev/null (or an empty-named target) only masks.
    """
    chosen: Dict[str, str] = {}
    masked: Dict[str, str] = {}
    for directory in dirs:
        try:
            names = os.listdir(under(root, directory))
        except OSError:
            continue
        for name in names:
            if not name.endswith(".conf"):
                continue
            path = os.path.join(directory, name)
            if name in chosen:
                masked[path] = chosen[name]
                continue
            chosen[name] = path
    ordered = []
    for name in sorted(chosen):
        path = chosen[name]
        real = under(root, path)
        if os.path.islink(real) and os.readlink(real) == "/dev/null":
            continue
        if os.path.isfile(real):
            ordered.append(path)
    return ordered, masked


def sysctl_order(root: str = "/") -> Tuple[List[str], Dict[str, str]]:
    """The files systemd-sysctl and `sysctl --system` apply, in order, and the masked ones."""
    ordered, masked = conf_files(SYSCTL_DIRS, root)
    conf = under(root, SYSCTL_CONF)
    if os.path.isfile(conf):
        real = os.path.realpath(conf)
        if not any(os.path.realpath(under(root, path)) == real for path in ordered):
            ordered.append(SYSCTL_CONF)
    return ordered, masked


def sysctl_key(key: str) -> str:
    """systemd's normalisation: a key written with '/' swaps '/' and '.'."""
    key = key.strip().lstrip("-")
    slash, dot = key.find("/"), key.find(".")
    if slash >= 0 and (dot < 0 or slash < dot):
        key = key.translate(str.maketrans("/.", "./"))
    return key


def parse_sysctl(text: str) -> List[Tuple[str, str]]:
    """(key, value) assignments of a sysctl.d file, in order."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        found.append((sysctl_key(key), " ".join(value.split())))
    return found


def _key_matches(pattern: str, key: str) -> bool:
    if any(char in pattern for char in "*?["):
        return fnmatch.fnmatchcase(key, pattern)
    return pattern == key


def parse_ini(text: str) -> List[Tuple[str, str, str]]:
    """(section, key, value) of a systemd-style file, continuation lines joined."""
    found = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            line = pending + " " + line
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            found.append((section, key.strip(), value.strip()))
    return found


def overridden_keys(
    ours: Dict[str, str],
    later: Iterable[Tuple[str, List[Tuple[str, str]]]],
    matches: Callable[[str, str], bool] = _key_matches,
) -> Dict[str, Tuple[str, str]]:
    """Our key -> (final value, file) where the files applied after ours end elsewhere."""
    final: Dict[str, Tuple[str, str]] = {}
    for path, assignments in later:
        for pattern, value in assignments:
            for key in ours:
                if matches(pattern, key):
                    final[key] = (value, path)
    return {key: hit for key, hit in final.items() if hit[0] != ours[key]}


def check_conf_dir(
    owner: str, path: str, dirs: Sequence[str], root: str = "/", kind: str = "sysctl"
) -> Optional[Dict[str, Any]]:
    """The override row of one recorded sysctl.d or system.conf.d file (None: not in place)."""
    if kind == "sysctl":
        ordered, masked = sysctl_order(root)
    else:
        ordered, masked = conf_files(dirs, root)

    def assignments(one: str) -> List[Tuple[str, str]]:
        text = read_text(root, one) or ""
        if kind == "sysctl":
            return parse_sysctl(text)
        return [("%s.%s" % (sec, key), " ".join(val.split())) for sec, key, val in parse_ini(text)]

    if path in masked:
        return _row(
            owner,
            path,
            "not read",
            "drifted",
            "%s masks it: a file of the same name in a directory read first" % masked[path],
        )
    if path not in ordered:
        return None
    ours = dict(assignments(path))
    index = ordered.index(path)
    hits = overridden_keys(ours, ((one, assignments(one)) for one in ordered[index + 1 :]))
    return _override_row(owner, path, ours, hits, "applied after it")


def _override_row(
    owner: str,
    path: str,
    ours: Dict[str, str],
    hits: Dict[str, Tuple[str, str]],
    how: str,
    *,
    effective: Optional[Dict[str, str]] = None,
) -> Dict[str, Any]:
    if not hits:
        return _row(
            owner,
            path,
            "none",
            "applied",
            "no file %s sets its %d key(s) otherwise" % (how, len(ours)),
        )
    parts = []
    for key in sorted(hits):
        value, source = hits[key]
        now = " (in effect: %s)" % effective[key] if effective and key in effective else ""
        parts.append("%s=%s by %s%s" % (key, value, source, now))
    files = sorted({hit[1] for hit in hits.values()})
    reason = "overridden by %s; ours: %s" % (
        ", ".join(files),
        ", ".join("%s=%s" % (key, ours[key]) for key in sorted(hits)),
    )
    return _row(owner, path, "; ".join(parts), "drifted", reason)


def _row(owner: str, path: str, actual: Any, status: str, reason: str) -> Dict[str, Any]:
    row = report_entry("overrides of %s" % path, "none", actual, status, reason=reason)
    row["owner"] = owner
    return row


# --- systemd units (drop-ins, environment files) -----------------------------


def parse_show(text: str) -> List[Dict[str, List[str]]]:
    """systemctl show output of several units: one dict per unit, property -> values."""
    units: List[Dict[str, List[str]]] = []
    current: Dict[str, List[str]] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if current:
                units.append(current)
                current = {}
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            current.setdefault(key, []).append(value)
    return units


def size_value(text: str) -> Any:
    """A systemd limit ('64M', 'infinity', '67108864', 'soft:hard' -> hard) as bytes."""
    text = text.strip().split(":")[-1]
    if text == "infinity" or text == str(2**64 - 1):
        return "infinity"
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * 1024 ** _SIZE_SUFFIX[match.group(2)]


def unit_value(key: str, text: str) -> Any:
    """A unit setting as a drop-in writes it and as systemctl show prints it, comparable."""
    text = " ".join(text.split())
    if key in _CPU_KEYS:
        return frozenset(parse_cpulist(text.replace(" ", ","), allow_empty=True))
    if key in _INT_KEYS:
        return int(text)
    if key in _NAMED:
        return int(text) if text.isdigit() else _NAMED[key][text.lower()]
    if key.startswith("Limit"):
        return size_value(text)
    return text


def env_assignments(text: str) -> Dict[str, str]:
    """Environment= words (or an environment file's lines) as name -> value."""
    found = {}
    for word in shlex.split(text, comments=True):
        if "=" in word:
            name, value = word.split("=", 1)
            found[name] = value
    return found


def dropin_settings(text: str) -> Dict[str, str]:
    """What a drop-in sets: key -> its last value; Environment as Environment:NAME."""
    found: Dict[str, str] = {}
    for _section, key, value in parse_ini(text):
        if key == "Environment":
            for name, env_value in env_assignments(value).items():
                found["Environment:%s" % name] = env_value
        else:
            found[key] = value
    return found


def _differs(key: str, ours: str, theirs: str) -> bool:
    name = key.split(":", 1)[0]
    try:
        return unit_value(name, ours) != unit_value(name, theirs)
    except (KeyError, ValueError, CpuSetError):
        return " ".join(ours.split()) != " ".join(theirs.split())


def _unit_props(keys: Iterable[str]) -> List[str]:
    return sorted({key.split(":", 1)[0] for key in keys})


def show_units(
    units: Sequence[str], props: Sequence[str], run: Runner
) -> Tuple[Dict[str, Dict[str, List[str]]], str]:
    """({unit: properties}, error) from one systemctl show call for all units."""
    if not units:
        return {}, ""
    argv = ["systemctl", "show", "--no-pager"]
    for prop in sorted(set(_UNIT_PROPS) | set(props)):
        argv += ["-p", prop]
    rc, out, err = run([*argv, "--", *units])
    if rc != 0:
        return {}, "systemctl show failed (rc %s): %s" % (rc, (err or out).strip()[:200])
    shown = {}
    for block in parse_show(out):
        unit = (block.get("Id") or [""])[0]
        if unit:
            shown[unit] = block
    return shown, ""


def dropin_unit(path: str) -> Optional[str]:
    match = _DROPIN_RE.match(path)
    return match.group(1) if match else None


def env_file_unit(path: str) -> Optional[str]:
    match = _ENV_FILE_RE.match(path)
    return "%s.service" % match.group(1) if match else None


def check_dropin(
    owner: str, path: str, shown: Dict[str, List[str]], root: str = "/"
) -> Optional[Dict[str, Any]]:
    """The override row of one recorded unit drop-in, from its unit's systemctl show block."""
    text = read_text(root, path)
    if text is None:
        return None
    unit = dropin_unit(path)
    ours = dropin_settings(text)
    paths = " ".join(shown.get("DropInPaths", [""])).split()
    if path not in paths:
        return _row(
            owner,
            path,
            "not loaded",
            "drifted",
            "%s does not read it (DropInPaths: %s): a daemon-reload is pending, or the unit is gone"
            % (unit, " ".join(paths) or "none"),
        )
    later = paths[paths.index(path) + 1 :]
    fragment = (shown.get("FragmentPath") or [""])[0]
    others = [one for one in [fragment, *paths] if one and one != path]
    settings = {one: dropin_settings(read_text(root, one) or "") for one in others}
    effective: Dict[str, str] = {}
    hits: Dict[str, Tuple[str, str]] = {}
    for key, value in ours.items():
        name, env_name = key.split(":", 1) if ":" in key else (key, "")
        values = shown.get(name)
        if values is None:
            # A property systemctl does not show for this unit: the last later file decides.
            setters = [(one, settings[one][key]) for one in later if key in settings[one]]
            if setters and _differs(key, value, setters[-1][1]):
                hits[key] = (setters[-1][1], setters[-1][0])
            continue
        now = " ".join(values)
        if env_name:
            now = env_assignments(now).get(env_name, "")
        if not _differs(key, value, now):
            continue
        effective[key] = now
        setters = [one for one in later if key in settings[one]]
        if setters:
            hits[key] = (settings[setters[-1]][key], setters[-1])
        else:
            setters = [one for one in others if key in settings[one]]
            source = (
                ", ".join(setters)
                if setters
                else "a runtime change (systemctl set-property) or a default"
            )
            hits[key] = (now, source)
    return _override_row(owner, path, ours, hits, "read after it by %s" % unit, effective=effective)


def check_env_file(
    owner: str, path: str, shown: Dict[str, List[str]], root: str = "/"
) -> Optional[Dict[str, Any]]:
    """The override row of a recorded /etc/default/NAME that NAME.service loads."""
    unit = env_file_unit(path)
    if (shown.get("LoadState") or [""])[0] != "loaded":
        return None
    files = [value.split(" (", 1)[0] for value in shown.get("EnvironmentFiles", [])]
    paths = " ".join(shown.get("DropInPaths", [""])).split()
    if path not in files:
        resetting = [
            one for one in paths if "EnvironmentFile" in dropin_settings(read_text(root, one) or "")
        ]
        if not resetting:
            return None
        return _row(
            owner,
            path,
            "not loaded",
            "drifted",
            "%s no longer loads it: %s sets EnvironmentFile= (now: %s)"
            % (unit, ", ".join(resetting), ", ".join(files) or "none"),
        )
    try:
        ours = env_assignments(read_text(root, path) or "")
    except ValueError:
        return None
    later = []
    for one in files[files.index(path) + 1 :]:
        try:
            later.append((one, list(env_assignments(read_text(root, one) or "").items())))
        except ValueError:
            continue
    hits = overridden_keys(ours, later, matches=str.__eq__)
    return _override_row(owner, path, ours, hits, "that %s loads after it" % unit)


# --- the whole host ------------------------------------------------------------


def _owners(state_dir: str, owners: Optional[Sequence[str]]) -> List[str]:
    if owners is not None:
        return list(owners)
    try:
        return list_owners(state_dir)
    except OSError as exc:
        raise StateError("cannot read the state dir %s: %s" % (state_dir, exc)) from exc


def unreadable_row(state_dir: str, exc: Exception) -> Dict[str, Any]:
    """The one row when the records cannot be read: nothing to compare with."""
    row = report_entry(state_dir, None, None, "skipped", reason="records unreadable: %s" % exc)
    row["owner"] = "verify"
    return row


def recorded_files(state_dir: str, owners: Optional[Sequence[str]] = None) -> List[Tuple[str, str]]:
    """(owner, path) of every file the roles recorded."""
    found = []
    for owner in _owners(state_dir, owners):
        for path in sorted(recorded(owner, state_dir)["file"]):
            found.append((owner, path))
    return found


def check_overrides(
    state_dir: str,
    owners: Optional[Sequence[str]] = None,
    root: str = "/",
    run: Runner = run_command,
) -> List[Dict[str, Any]]:
    """A row per recorded file something can override: sysctl.d, system.conf.d, drop-ins, env files.

    Raises StateError when a record cannot be read.
    """
    files = recorded_files(state_dir, owners)
    rows: List[Optional[Dict[str, Any]]] = []
    units: Dict[str, List[Tuple[str, str]]] = {}
    props: set = set()
    for owner, path in files:
        directory = os.path.dirname(path)
        if directory in SYSCTL_DIRS or path == SYSCTL_CONF:
            rows.append(check_conf_dir(owner, path, SYSCTL_DIRS, root))
        elif directory in MANAGER_DIRS:
            rows.append(check_conf_dir(owner, path, MANAGER_DIRS, root, kind="manager"))
        elif dropin_unit(path):
            text = read_text(root, path)
            if text is not None:
                units.setdefault(dropin_unit(path) or "", []).append((owner, path))
                props.update(_unit_props(dropin_settings(text)))
        elif env_file_unit(path) and os.path.isfile(under(root, path)):
            units.setdefault(env_file_unit(path) or "", []).append((owner, path))
    shown, error = show_units(sorted(units), sorted(props), run)
    for unit, entries in sorted(units.items()):
        for owner, path in entries:
            if error:
                rows.append(
                    _row(
                        owner,
                        path,
                        None,
                        "skipped",
                        "cannot ask systemd about %s: %s" % (unit, error),
                    )
                )
            elif dropin_unit(path):
                rows.append(check_dropin(owner, path, shown.get(unit, {}), root))
            else:
                rows.append(check_env_file(owner, path, shown.get(unit, {}), root))
    return [row for row in rows if row is not None]


def check_settings(
    state_dir: str, owners: Optional[Sequence[str]] = None, root: str = "/"
) -> List[Dict[str, Any]]:
    """One row per recorded setting: the knob read now against the value recorded as expected."""
    rows = []
    for owner in _owners(state_dir, owners):
        for key, entry in sorted(recorded(owner, state_dir)["setting"].items()):
            expected = entry.get("expected")
            compare = entry.get("compare", "exact")
            if not key.startswith(KNOB_PREFIXES) or expected is None:
                status, actual, reason = (
                    "skipped",
                    None,
                    "not a knob the host-side check reads: %s's own check reads it" % owner,
                )
            else:
                actual = read_text(root, key)
                actual = actual.strip() if actual is not None else None
                if actual is None:
                    status, reason = "skipped", "absent or unreadable now: %s" % key
                elif same(actual, str(expected), compare) or _irq_subset(
                    key, actual, str(expected)
                ):
                    status, reason = "applied", ""
                else:
                    status, reason = (
                        "drifted",
                        "recorded %r (compare %s), the host reads %r" % (expected, compare, actual),
                    )
            row = report_entry(key, expected, actual, status, reason=reason)
            row["owner"] = owner
            rows.append(row)
    return rows


def _irq_subset(key: str, actual: str, expected: str) -> bool:
    """An IRQ affinity within the recorded CPUs counts, as the irq role accepts for managed IRQs."""
    if not key.startswith("/proc/irq/") or not key.endswith("_list"):
        return False
    try:
        have = set(parse_cpulist(actual, allow_empty=True))
        return bool(have) and have <= set(parse_cpulist(expected, allow_empty=True))
    except CpuSetError:
        return False


def check_host(state_dir: str, root: str = "/", run: Runner = run_command) -> List[Dict[str, Any]]:
    """Every recorded setting and every recorded file's overrides (the host-side timer's check)."""
    try:
        return check_settings(state_dir, root=root) + check_overrides(state_dir, root=root, run=run)
    except StateError as exc:
        return [unreadable_row(state_dir, exc)]


# --- Prometheus textfile ------------------------------------------------------

METRIC_STATUS = "lowlatency_tuning_setting_status"
METRIC_COUNT = "lowlatency_tuning_settings"
METRIC_LAST_RUN = "lowlatency_tuning_verify_last_run_timestamp_seconds"
METRIC_STATUSES = ("applied", "drifted", "skipped")


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def textfile(rows: Sequence[Dict[str, Any]], now: float) -> str:
    """Prometheus text of rows: a 0/1 gauge per setting and status, counts, the run's time."""
    lines = [
        "# HELP %s 1 for the status the setting has now, 0 for the others." % METRIC_STATUS,
        "# TYPE %s gauge" % METRIC_STATUS,
    ]
    counts = {status: 0 for status in METRIC_STATUSES}
    seen = set()
    for row in rows:
        status = row["status"]
        identity = (row.get("owner", ""), row["setting"])
        if identity in seen:
            continue
        seen.add(identity)
        counts[status] += 1
        for one in METRIC_STATUSES:
            lines.append(
                '%s{owner="%s",setting="%s",status="%s"} %d'
                % (METRIC_STATUS, _label(identity[0]), _label(identity[1]), one, one == status)
            )
    lines += [
        "# HELP %s Settings per status." % METRIC_COUNT,
        "# TYPE %s gauge" % METRIC_COUNT,
    ]
    lines += [
        '%s{status="%s"} %d' % (METRIC_COUNT, status, counts[status]) for status in METRIC_STATUSES
    ]
    lines += [
        "# HELP %s When the host-side verify check last ran (Unix time)." % METRIC_LAST_RUN,
        "# TYPE %s gauge" % METRIC_LAST_RUN,
        "%s %.3f" % (METRIC_LAST_RUN, now),
    ]
    return "\n".join(lines) + "\n"
