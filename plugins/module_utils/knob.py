# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How a kernel knob's value compares with the value a role set.

The setting module compares what it wrote with what the kernel reads back;
the verify role's host-side check compares what the roles recorded with what
the host reads now. Both go through these functions.
"""

from __future__ import annotations

from typing import Any, Optional

from ansible_collections.lowlatency.tuning.plugins.module_utils.cpus import (
    CpuSetError,
    parse_cpulist,
    parse_mask,
)

COMPARES = ("exact", "bracketed", "cpulist", "mask", "int")


def selected_word(text: str) -> str:
    """'always madvise [never]' -> 'never'; a file without brackets -> its text."""
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return " ".join(text.split())


def normalize(text: Optional[str], compare: str) -> Any:
    """Comparable form of a value as read or as given."""
    if text is None:
        return None
    if compare == "bracketed":
        return selected_word(text)
    if compare == "cpulist":
        return frozenset(parse_cpulist(text, allow_empty=True))
    if compare == "mask":
        return frozenset(parse_mask(text))
    if compare == "int":
        return int(text.strip())
    return " ".join(text.split())


def same(actual: Optional[str], expected: str, compare: str) -> bool:
    try:
        return normalize(actual, compare) == normalize(expected, compare)
    except (CpuSetError, ValueError):
        return False
