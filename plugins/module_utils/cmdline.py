# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kernel command line parsing and editing, for GRUB defaults files and grubby.

Two quoting layers meet here: the shell quoting of a ``GRUB_CMDLINE_LINUX=...``
assignment, and the kernel's own quoting of one parameter (``key="a b"``).
Everything is kept as (key, value) pairs; a flag has the value None.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Union

Value = Optional[str]

# Variables whose words end up on the default entry's command line, in order.
GRUB_VARS = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")

_ASSIGN_RE = re.compile(r"^[ \t]*(?:export[ \t]+)?(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=", re.MULTILINE)
_REF_RE = re.compile(r"^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class CmdlineError(ValueError):
    """Input that cannot be turned into kernel parameters."""


def split_cmdline(text: str) -> list[str]:
    """Split a command line into parameters the way the kernel does.

    Whitespace separates parameters except inside double quotes; the quotes
    stay in the returned words so that parse_param can tell where they were.
    """
    words = []
    current: list[str] = []
    in_quotes = False
    started = False
    for char in text:
        if char == '"':
            in_quotes = not in_quotes
            current.append(char)
            started = True
        elif char.isspace() and not in_quotes:
            if started:
                words.append("".join(current))
                current = []
                started = False
        else:
            current.append(char)
            started = True
    if in_quotes:
        raise CmdlineError("unbalanced double quote in command line: %s" % text)
    if started:
        words.append("".join(current))
    return words


def parse_param(word: str) -> tuple[str, Value]:
    """``key=value`` -> (key, value), ``flag`` -> (flag, None); quotes removed."""
    key, sep, value = word.partition("=")
    key = key.replace('"', "")
    if not sep:
        return key, None
    return key, value.replace('"', "")


def format_param(key: str, value: Value) -> str:
    if value is None:
        return key
    if any(char.isspace() for char in value):
        return '%s="%s"' % (key, value)
    return "%s=%s" % (key, value)


def parse_cmdline(text: str) -> list[tuple[str, Value]]:
    return [parse_param(word) for word in split_cmdline(text)]


def values_of(params: list[tuple[str, Value]], key: str) -> list[Value]:
    return [value for name, value in params if name == key]


def _dict_items(args: dict) -> list[tuple[str, Value]]:
    items: list[tuple[str, Value]] = []
    for key, value in args.items():
        if value is False:
            raise CmdlineError("argument %s: false is ambiguous; leave the key out instead" % key)
        if value is None or value is True:
            items.append((str(key), None))
        elif isinstance(value, (str, int, float)):
            items.append((str(key), str(value)))
        else:
            raise CmdlineError(
                "argument %s: value must be a string or number, got %s"
                % (key, type(value).__name__)
            )
    return items


def _list_items(args: Union[list, tuple]) -> list[tuple[str, Value]]:
    items: list[tuple[str, Value]] = []
    for word in args:
        if not isinstance(word, str):
            raise CmdlineError(
                "argument %r: list items must be strings like key=value or flag" % (word,)
            )
        params = parse_cmdline(word)
        if len(params) != 1:
            raise CmdlineError("argument %r: one parameter per list item" % word)
        items.append(params[0])
    return items


def normalize_args(args: Any) -> dict[str, Value]:
    """Accept a dict ``{key: value}`` or a list of ``key=value``/flag strings.

    In a dict, a value of None or True means a flag. Booleans False and
    duplicate keys are refused: both are ambiguous.
    """
    if args is None:
        items: list[tuple[str, Value]] = []
    elif isinstance(args, dict):
        items = _dict_items(args)
    elif isinstance(args, (list, tuple)):
        items = _list_items(args)
    elif isinstance(args, str):
        items = parse_cmdline(args)
    else:
        raise CmdlineError("args must be a dict or a list, got %s" % type(args).__name__)
    result: dict[str, Value] = {}
    for key, value in items:
        if not _KEY_RE.match(key):
            raise CmdlineError("argument key %r is not a valid kernel parameter name" % key)
        if value is not None and '"' in value:
            raise CmdlineError("argument %s: value must not contain double quotes" % key)
        if key in result:
            raise CmdlineError("argument %s given twice" % key)
        result[key] = value
    return result


def _double_quoted(text: str, pos: int, out: list[str]) -> tuple[int, bool]:
    """Read a double-quoted string starting after its opening quote."""
    has_refs = False
    start = pos
    while True:
        if pos >= len(text):
            raise CmdlineError("unterminated double quote at offset %d" % (start - 1))
        char = text[pos]
        if char == '"':
            return pos + 1, has_refs
        if char == "\\" and pos + 1 < len(text) and text[pos + 1] in '"\\$`\n':
            nxt = text[pos + 1]
            if nxt != "\n":
                out.append("\0" if nxt == "$" else nxt)
            pos += 2
            continue
        has_refs = has_refs or char == "$"
        out.append(char)
        pos += 1


def shell_unquote(text: str, start: int) -> tuple[str, int, bool]:
    """Read one shell word from text[start:]: returns (value, end, has_refs).

    Handles double, single and no quotes and backslash escapes, across lines
    inside quotes. ``$`` expansions are kept literally; has_refs tells whether
    an unescaped one was seen (GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX ...").
    A literal (escaped or single-quoted) ``$`` comes back as NUL so that it
    cannot be mistaken for a reference.
    """
    out: list[str] = []
    pos = start
    has_refs = False
    while pos < len(text) and text[pos] not in " \t\r\n;#":
        char = text[pos]
        if char == "'":
            close = text.find("'", pos + 1)
            if close < 0:
                raise CmdlineError("unterminated single quote at offset %d" % pos)
            out.append(text[pos + 1 : close].replace("$", "\0"))
            pos = close + 1
        elif char == '"':
            pos, refs = _double_quoted(text, pos + 1, out)
            has_refs = has_refs or refs
        elif char == "\\" and pos + 1 < len(text):
            out.append("\0" if text[pos + 1] == "$" else text[pos + 1])
            pos += 2
        else:
            has_refs = has_refs or char == "$"
            out.append(char)
            pos += 1
    return "".join(out), pos, has_refs


def shell_quote(words: list[str]) -> str:
    """Double-quote words for a defaults file; ``$NAME`` references stay live."""
    parts = []
    for word in words:
        if _REF_RE.match(word):
            parts.append(word)
        else:
            escaped = (
                word.replace("\\", "\\\\")
                .replace('"', '\\"')
                .replace("`", "\\`")
                .replace("$", "\\$")
            )
            parts.append(escaped)
    return '"%s"' % " ".join(parts)


class Word:
    """One kernel parameter in one assignment, editable in place."""

    def __init__(self, key: str, value: Value) -> None:
        self.key = key
        self.value = value
        self.removed = False

    def render(self) -> str:
        return format_param(self.key, self.value)


class Assignment:
    """``VAR=value`` in one file; items are Words or ``$NAME`` references."""

    def __init__(
        self, path: str, var: str, start: int, end: int, items: list[Union[Word, str]]
    ) -> None:
        self.path = path
        self.var = var
        self.start = start
        self.end = end
        self.items = items
        self.dirty = False

    def render(self) -> str:
        words = []
        for item in self.items:
            if isinstance(item, Word):
                if not item.removed:
                    words.append(item.render())
            else:
                words.append(item)
        return shell_quote(words)


def parse_assignments(path: str, text: str) -> list[Assignment]:
    result = []
    for match in _ASSIGN_RE.finditer(text):
        value, end, _refs = shell_unquote(text, match.end())
        items: list[Union[Word, str]] = []
        for word in split_cmdline(value):
            if _REF_RE.match(word):
                items.append(word)
            else:
                key, val = parse_param(word.replace("\0", "$"))
                items.append(Word(key, val))
        result.append(Assignment(path, match.group(1), match.end(), end, items))
    return result


class CmdlineModel:
    """The default entry's parameters, each Word tied to where it is written.

    For GRUB the assignments are evaluated in the order update-grub sources
    them (the defaults file, then the drop-ins), expanding references, so
    that only words that reach the command line are edited. For grubby there
    is one pseudo assignment holding the current args.
    """

    def __init__(
        self, assignments: list[Assignment], append_var: str = "GRUB_CMDLINE_LINUX"
    ) -> None:
        self.assignments = assignments
        self.append_var = append_var
        self.created: Optional[Assignment] = None

    def _evaluate(self) -> dict[str, list[Word]]:
        env: dict[str, list[Word]] = {}
        self._last: dict[str, Assignment] = {}
        for assignment in self.assignments:
            words: list[Word] = []
            for item in assignment.items:
                if isinstance(item, Word):
                    if not item.removed:
                        words.append(item)
                else:
                    match = _REF_RE.match(item)
                    name = (match.group(1) or match.group(2)) if match else ""
                    words.extend(env.get(name, []))
            env[assignment.var] = words
            self._last[assignment.var] = assignment
        return env

    def words(self) -> list[Word]:
        env = self._evaluate()
        result: list[Word] = []
        for var in GRUB_VARS:
            result.extend(env.get(var, []))
        return result

    def params(self) -> list[tuple[str, Value]]:
        return [(word.key, word.value) for word in self.words()]

    def values(self, key: str) -> list[Value]:
        return values_of(self.params(), key)

    def _owner_of(self, word: Word) -> Assignment:
        for assignment in self.assignments:
            if any(item is word for item in assignment.items):
                return assignment
        raise KeyError(word.key)

    def _target(self) -> Assignment:
        self._evaluate()
        if self.append_var in self._last:
            return self._last[self.append_var]
        if self.created is None:
            self.created = Assignment("", self.append_var, -1, -1, [])
            self.assignments.append(self.created)
        return self.created

    def set_values(self, key: str, values: list[Value]) -> bool:
        """Make ``key`` occur exactly with ``values`` (in order); True if changed."""
        if self.values(key) == values:
            return False
        occurrences = [word for word in self.words() if word.key == key]
        if occurrences:
            first = occurrences[0]
            assignment = self._owner_of(first)
            index = next(i for i, item in enumerate(assignment.items) if item is first)
        else:
            assignment = self._target()
            index = len(assignment.items)
        for word in occurrences:
            word.removed = True
            self._owner_of(word).dirty = True
        new_words: list[Union[Word, str]] = [Word(key, value) for value in values]
        assignment.items[index:index] = new_words
        assignment.dirty = True
        return True

    def render_files(self, texts: dict[str, str], main_path: str) -> dict[str, str]:
        """New content for every file with a changed assignment."""
        result = {}
        by_path: dict[str, list[Assignment]] = {}
        for assignment in self.assignments:
            if assignment.dirty and assignment is not self.created:
                by_path.setdefault(assignment.path, []).append(assignment)
        for path, assignments in by_path.items():
            text = texts[path]
            for assignment in sorted(assignments, key=lambda a: a.start, reverse=True):
                text = text[: assignment.start] + assignment.render() + text[assignment.end :]
            result[path] = text
        if self.created is not None and self.created.dirty:
            text = result.get(main_path, texts.get(main_path, ""))
            if text and not text.endswith("\n"):
                text += "\n"
            text += "%s=%s\n" % (self.created.var, self.created.render())
            result[main_path] = text
        return result
