"""Folded stacks (``frame;frame;... count``) to a flame graph SVG, and ``perf script`` folded.

py-spy writes folded stacks itself (``--format raw``); perf's samples are
folded here from ``perf script -F comm,pid,ip,sym,dso``. Debian packages no
folded-to-SVG tool (FlameGraph's scripts, inferno), so the SVG is drawn here:
one rectangle per frame, as wide as its samples, the root at the bottom, the
full name and the share of samples in each rectangle's tooltip.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from collections import Counter
from dataclasses import dataclass, field

Stacks = Counter  # tuple of frames, root first -> samples

WIDTH_PX = 1200
FRAME_PX = 16
FONT_PX = 11
CHAR_PX = 6.6  # average glyph width of FONT_PX monospace
MIN_WIDTH_PX = 0.3  # narrower frames are left out of the SVG (still in the raw file)
_PERF_FRAME = re.compile(r"^\s*[0-9a-f]+\s+(?P<sym>.*?)\s+\((?P<dso>.*)\)\s*$")


def parse_folded(text: str) -> Stacks:
    """Folded lines into stacks; a frame name may hold spaces, the count is after the last."""
    stacks: Stacks = Counter()
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def format_folded(stacks: Stacks) -> str:
    return "".join(f"{';'.join(stack)} {count}\n" for stack, count in stacks.most_common())


def _perf_frame(line: str) -> str | None:
    match = _PERF_FRAME.match(line)
    if match is None:
        return None
    sym, dso = match["sym"], match["dso"]
    if sym != "[unknown]":
        return sym
    return f"[{os.path.basename(dso)}]" if dso != "[unknown]" else "[unknown]"


def fold_perf_script(text: str) -> Stacks:
    """``perf script -F comm,pid,ip,sym,dso`` output (leaf first per sample) into stacks."""
    stacks: Stacks = Counter()
    comm: str | None = None
    frames: list[str] = []
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if comm is not None:
                stacks[(comm, *reversed(frames))] += 1
            comm, frames = None, []
        elif line[0].isspace():
            frame = _perf_frame(line)
            if frame is not None:
                frames.append(frame)
        else:
            # "comm pid": the command name may itself hold spaces.
            comm = line.rsplit(None, 1)[0]
    return stacks


def top_frames(stacks: Stacks, count: int = 5) -> list[dict[str, object]]:
    """The frames that were running (the leaves), by samples, with their share."""
    leaves: Counter = Counter()
    for stack, samples in stacks.items():
        leaves[stack[-1]] += samples
    total = sum(leaves.values()) or 1
    return [
        {"frame": frame, "samples": samples, "share": round(samples / total, 3)}
        for frame, samples in leaves.most_common(count)
    ]


@dataclass
class _Node:
    samples: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(stacks: Stacks) -> _Node:
    root = _Node()
    for stack, samples in stacks.items():
        root.samples += samples
        node = root
        for frame in stack:
            node = node.children.setdefault(frame, _Node())
            node.samples += samples
    return root


def _depth(node: _Node) -> int:
    return 1 + max((_depth(child) for child in node.children.values()), default=0)


def _colour(name: str) -> str:
    """A warm colour fixed per name, so one function has one colour across graphs."""
    digest = hashlib.blake2b(name.encode(), digest_size=3).digest()
    return f"rgb({205 + digest[0] % 50},{80 + digest[1] % 150},{digest[2] % 60})"


def render_svg(stacks: Stacks, title: str) -> str:
    """The flame graph of ``stacks`` as a standalone SVG document."""
    root = _tree(stacks)
    total = root.samples or 1
    height = (_depth(root) + 2) * FRAME_PX
    scale = WIDTH_PX / total
    rects: list[str] = []

    def draw(name: str, node: _Node, x: float, depth: int) -> None:
        width = node.samples * scale
        if width < MIN_WIDTH_PX:
            return
        y = height - (depth + 1) * FRAME_PX
        tip = html.escape(f"{name} ({node.samples} samples, {100 * node.samples / total:.1f}%)")
        chars = int(width / CHAR_PX)
        label = name if len(name) <= chars else (name[: chars - 2] + ".." if chars > 3 else "")
        rects.append(
            f'<g><title>{tip}</title><rect x="{x:.1f}" y="{y}" width="{width:.1f}" '
            f'height="{FRAME_PX - 1}" fill="{_colour(name)}"/>'
            + (
                f'<text x="{x + 2:.1f}" y="{y + FRAME_PX - 4}">{html.escape(label)}</text>'
                if label
                else ""
            )
            + "</g>"
        )
        for child_name, child in sorted(node.children.items()):
            draw(child_name, child, x, depth + 1)
            x += child.samples * scale

    draw("all", root, 0.0, 0)
    header = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{height}" '
        f'viewBox="0 0 {WIDTH_PX} {height}" font-family="monospace" font-size="{FONT_PX}">\n'
        f'<text x="4" y="{FONT_PX + 2}">{html.escape(title)}</text>\n'
    )
    return header + "\n".join(rects) + "\n</svg>\n"
