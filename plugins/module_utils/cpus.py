# -*- coding: utf-8 -*-
# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""CPU set notations: cpulists (``2-5,8``), hex masks (``3c``, ``00000000,0000000f``), lists.

Shared by the filter plugins, the setting module (to compare a cpumask file
with what was written) and the cpu_topology module.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Optional, Union

_RANGE_RE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+)/(\d+))?)?$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")

CpuInput = Union[str, int, Iterable[int], None]


class CpuSetError(ValueError):
    """Text that is not a valid cpulist or mask."""


def parse_cpulist(text: CpuInput, allow_empty: bool = False) -> List[int]:
    """Parse a kernel cpulist ('0-3,8', '0-7:2/4') into a sorted list of CPU numbers.

    An int is one CPU; a list of ints is taken as CPU numbers (validated).
    """
    if text is None:
        text = ""
    if isinstance(text, bool):
        raise CpuSetError("cpulist must be a string like '0-3,8', not a boolean (%r)" % text)
    if isinstance(text, int):
        text = str(text)
    if not isinstance(text, str):
        try:
            items = list(text)
        except TypeError:
            raise CpuSetError("cpulist must be a string like '0-3,8', got %r" % (text,)) from None
        return _validate_numbers(items, allow_empty)
    stripped = text.strip()
    if not stripped:
        if allow_empty:
            return []
        raise CpuSetError("empty cpulist: at least one CPU is needed here")
    cpus: set = set()
    for part in stripped.split(","):
        cpus.update(_parse_range(part.strip(), text))
    return sorted(cpus)


def _parse_range(part: str, text: str) -> List[int]:
    match = _RANGE_RE.match(part)
    if not match:
        raise CpuSetError(
            "invalid cpulist %r: %r is not a CPU number or a range like '2-5' "
            "(numbers are non-negative integers)" % (text, part)
        )
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if last < first:
        raise CpuSetError("invalid cpulist %r: range %r ends before it starts" % (text, part))
    if match.group(3) is None:
        return list(range(first, last + 1))
    used, group = int(match.group(3)), int(match.group(4))
    if group == 0 or used == 0 or used > group:
        raise CpuSetError(
            "invalid cpulist %r: in %r the used/group sizes must satisfy 0 < used <= group"
            % (text, part)
        )
    cpus = []
    for start in range(first, last + 1, group):
        cpus.extend(range(start, min(start + used, last + 1)))
    return cpus


def _validate_numbers(items: List[object], allow_empty: bool) -> List[int]:
    cpus = set()
    for item in items:
        number = int(item.strip()) if isinstance(item, str) and item.strip().isdigit() else item
        if isinstance(number, bool) or not isinstance(number, int):
            raise CpuSetError("CPU numbers must be integers, got %r" % (item,))
        if number < 0:
            raise CpuSetError("CPU numbers must not be negative, got %d" % number)
        cpus.add(number)
    if not cpus and not allow_empty:
        raise CpuSetError("empty CPU list: at least one CPU is needed here")
    return sorted(cpus)


def format_cpulist(cpus: CpuInput) -> str:
    """Compress CPU numbers into a cpulist: [0, 1, 2, 5] -> '0-2,5'; [] -> ''."""
    numbers = parse_cpulist(cpus, allow_empty=True)
    parts = []
    start = prev = None
    for cpu in numbers:
        if start is None:
            start = prev = cpu
        elif cpu == prev + 1:
            prev = cpu
        else:
            parts.append(_range_text(start, prev))
            start = prev = cpu
    if start is not None:
        parts.append(_range_text(start, prev))
    return ",".join(parts)


def _range_text(start: int, end: int) -> str:
    return str(start) if start == end else "%d-%d" % (start, end)


def cpus_to_mask(cpus: CpuInput, nr_cpus: Optional[int] = None) -> str:
    """Hex mask for a set of CPUs, as the kernel prints it.

    Up to 32 CPUs the mask is plain hex ('3c'). Above 32 (by the highest CPU
    or by nr_cpus) it is split into comma-separated 32-bit words of eight
    digits each, as /proc/irq/N/smp_affinity shows ('00000001,00000000').
    An empty set is '0'.
    """
    numbers = parse_cpulist(cpus, allow_empty=True)
    width = max(numbers[-1] + 1 if numbers else 0, nr_cpus or 0)
    value = 0
    for cpu in numbers:
        value |= 1 << cpu
    if width <= 32:
        return "%x" % value
    words = (width + 31) // 32
    return ",".join(
        "%08x" % ((value >> (32 * index)) & 0xFFFFFFFF) for index in reversed(range(words))
    )


def parse_mask(text: Union[str, int], allow_empty: bool = True) -> List[int]:
    """CPUs set in a hex mask; accepts '0x' and comma-split 32-bit words."""
    if isinstance(text, bool):
        raise CpuSetError("mask must be hex text like '3c', not a boolean (%r)" % text)
    if isinstance(text, int):
        if text < 0:
            raise CpuSetError("mask must not be negative, got %d" % text)
        value = text
    else:
        if not isinstance(text, str):
            raise CpuSetError("mask must be hex text like '3c', got %r" % (text,))
        stripped = text.strip()
        if stripped[:2].lower() == "0x":
            stripped = stripped[2:]
        if not stripped:
            raise CpuSetError("empty mask %r: expected hex digits like '3c'" % (text,))
        words = stripped.split(",")
        for word in words:
            if not _HEX_RE.match(word):
                raise CpuSetError("invalid mask %r: %r is not hex digits" % (text, word))
            if len(words) > 1 and len(word) > 8:
                raise CpuSetError(
                    "invalid mask %r: comma-separated words hold 32 bits (8 hex digits), "
                    "%r is longer" % (text, word)
                )
        value = 0
        for word in words:
            value = (value << 32) | int(word, 16)
    cpus = [bit for bit in range(value.bit_length()) if value >> bit & 1]
    if not cpus and not allow_empty:
        raise CpuSetError("mask %r selects no CPU" % (text,))
    return cpus
