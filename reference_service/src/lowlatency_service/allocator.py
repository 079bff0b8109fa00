"""The service's malloc as a setting: system, jemalloc or mimalloc through ``LD_PRELOAD``.

The libraries are the distributions' (Debian: libjemalloc2 and
libmimalloc2.0; EL: jemalloc), looked up by soname in the usual library
directories. A preload that the dynamic loader ignores (a wrong path, a
static binary, a setuid one) is silent, so the choice counts only when the
library shows up in the running process's ``/proc/PID/maps``.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Mapping

SONAMES = {"system": None, "jemalloc": "libjemalloc.so.2", "mimalloc": "libmimalloc.so.2"}
PACKAGES = {"jemalloc": "libjemalloc2 (EL: jemalloc)", "mimalloc": "libmimalloc2.0"}
ALLOCATORS = tuple(SONAMES)


def library_dirs() -> list[str]:
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [f"/usr/lib/{multiarch}", f"/lib/{multiarch}"] if multiarch else []
    return [*dirs, "/usr/lib64", "/usr/lib", "/usr/local/lib"]


def library(name: str, dirs: list[str] | None = None) -> str | None:
    """The path of the allocator's shared library, None for system or when absent."""
    soname = SONAMES[name]
    if soname is None:
        return None
    for directory in library_dirs() if dirs is None else dirs:
        path = os.path.join(directory, soname)
        if os.path.isfile(path):
            return path
    return None


def absent_reason(name: str, dirs: list[str] | None = None) -> str | None:
    """Why ``name`` cannot be preloaded here, or None."""
    if SONAMES[name] is None or library(name, dirs) is not None:
        return None
    searched = ", ".join(library_dirs() if dirs is None else dirs)
    return f"{SONAMES[name]} not found in {searched} (install {PACKAGES[name]})"


def environment(path: str | None, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``path`` first in LD_PRELOAD (system: LD_PRELOAD left as it is)."""
    env = dict(base)
    if path is not None:
        env["LD_PRELOAD"] = " ".join(filter(None, (path, base.get("LD_PRELOAD", ""))))
    return env


def mapped(pid: int, path: str, proc: str = "/proc") -> bool:
    """Whether the process has ``path`` (or the file it links to) mapped."""
    wanted = {path, os.path.realpath(path)}
    with open(f"{proc}/{pid}/maps", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() in wanted:
                return True
    return False
