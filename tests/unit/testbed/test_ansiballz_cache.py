"""The test image's bytecode cache for Ansible module payloads.

Each case runs a fresh interpreter that loads the hook and imports a module
from a zip named as Ansible names its payloads, so the real zipimport path
is exercised, as in a guest.
"""

from __future__ import annotations

import json
import marshal
import subprocess
import sys
import zipfile
from pathlib import Path

HOOK_DIR = (
    Path(__file__).resolve().parents[2]
    / "testbed/image/rootfs/usr/local/lib/python3.11/dist-packages"
)

IMPORT = """
import json, sys, traceback
import testbed_ansiballz_cache
sys.path.insert(0, sys.argv[1])
import payload_mod
try:
    payload_mod.fail()
except ValueError:
    where = traceback.extract_tb(sys.exc_info()[2])[-1].filename
print(json.dumps({"value": payload_mod.VALUE, "where": where}))
"""


def _payload(tmp_path: Path, run: str, value: int, name: str = "ansible_demo_payload.zip") -> Path:
    run_dir = tmp_path / run
    run_dir.mkdir()
    archive = run_dir / name
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(
            "payload_mod.py", f"VALUE = {value}\n\ndef fail():\n    raise ValueError('x')\n"
        )
    return archive


def _import(archive: Path, cache: Path) -> dict:
    env = {
        "PYTHONPATH": str(HOOK_DIR),
        "TESTBED_ANSIBALLZ_CACHE": str(cache),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", IMPORT, str(archive)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def test_payload_code_is_cached_and_reused_from_another_zip(tmp_path):
    cache = tmp_path / "cache"
    first = _import(_payload(tmp_path, "run1", 1), cache)
    assert first["value"] == 1
    entries = list(cache.iterdir())
    assert len(entries) == 1

    # The cached entry is what a later run executes: replace it with code from
    # another source and a second zip with the original source runs that code.
    entries[0].write_bytes(
        marshal.dumps(compile("VALUE = 42\ndef fail():\n    raise ValueError()\n", "x", "exec"))
    )
    second_zip = _payload(tmp_path, "run2", 1)
    second = _import(second_zip, cache)
    assert second["value"] == 42
    # Tracebacks name this run's zip, not the one the code was compiled from.
    assert second["where"] == str(second_zip / "payload_mod.py")


def test_changed_source_is_compiled_again(tmp_path):
    cache = tmp_path / "cache"
    _import(_payload(tmp_path, "run1", 1), cache)
    changed = _import(_payload(tmp_path, "run2", 7), cache)
    assert changed["value"] == 7
    assert len(list(cache.iterdir())) == 2


def test_other_zips_are_not_cached(tmp_path):
    cache = tmp_path / "cache"
    result = _import(_payload(tmp_path, "run1", 3, name="library.zip"), cache)
    assert result["value"] == 3
    assert not cache.exists()


def test_unwritable_cache_falls_back_to_compiling(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = _import(_payload(tmp_path, "run1", 5), blocker / "cache")
    assert result["value"] == 5
