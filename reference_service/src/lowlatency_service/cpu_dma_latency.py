"""Holding the CPU idle-state exit latency at 0 through /dev/cpu_dma_latency (PM QoS).

While a process keeps the device open after writing a 32-bit 0, the kernel
keeps every CPU out of idle states that take time to leave, so a wake-up
across cores costs microseconds instead of tens of them; closing the file
drops the request. This is the host-level measure the kernel role applies
permanently; ``compare`` holds it only for the runs that measure it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager

DEVICE = "/dev/cpu_dma_latency"


def unavailable_reason(path: str = DEVICE) -> str | None:
    """None when the process may hold the latency at 0, else why it may not."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return f"{path} does not exist (kernel without PM QoS, or a container without the device)"
    except PermissionError:
        return f"{path} is not writable by this user (root only, or the device is not passed in)"
    except OSError as exc:
        return f"{path} cannot be opened: {exc.strerror}"
    os.close(fd)
    return None


@contextmanager
def held_at_zero(path: str = DEVICE) -> Iterator[None]:
    """Keep the idle-state latency at 0 for the duration of the with block."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, struct.pack("=i", 0))
        yield
    finally:
        os.close(fd)
