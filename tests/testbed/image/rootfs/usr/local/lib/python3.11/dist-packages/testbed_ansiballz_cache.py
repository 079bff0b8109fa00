"""Test-bed guests only: compile each of Ansible's module files once per guest.

Ansible runs every module task from a fresh zip file (AnsiballZ) that Python
imports without writing bytecode, so each task compiles ansible.module_utils
again. Under TCG emulation that is seconds per task. This hook, loaded by
testbed_ansiballz_cache.pth at interpreter start, keeps the compiled code of
files imported from such a zip, keyed by their path inside the zip and a
hash of their source: what runs is the same source, compiled once.

TESTBED_ANSIBALLZ_CACHE names the cache directory (tests use it).
"""

import hashlib
import marshal
import os
import zipimport

_CACHE = os.environ.get("TESTBED_ANSIBALLZ_CACHE", "/var/cache/testbed-ansiballz")
_compile_source = zipimport._compile_source


def _with_filename(code, filename):
    """The cached code with the file name of this run's zip (tracebacks)."""
    consts = tuple(
        _with_filename(c, filename) if isinstance(c, type(code)) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


def _cached_compile_source(pathname, source):
    base, sep, inner = pathname.partition("_payload.zip")
    if not sep or "ansible_" not in os.path.basename(base):
        return _compile_source(pathname, source)
    key = hashlib.sha256(inner.encode() + b"\0" + source).hexdigest()
    cached = os.path.join(_CACHE, key)
    try:
        with open(cached, "rb") as handle:
            return _with_filename(marshal.load(handle), pathname)
    except (OSError, ValueError, EOFError, TypeError):
        pass
    code = _compile_source(pathname, source)
    try:
        os.makedirs(_CACHE, mode=0o700, exist_ok=True)
        partial = f"{cached}.{os.getpid()}"
        with open(partial, "wb") as handle:
            marshal.dump(code, handle)
        os.replace(partial, cached)
    except OSError:
        pass
    return code


zipimport._compile_source = _cached_compile_source
