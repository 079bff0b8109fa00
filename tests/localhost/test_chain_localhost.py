"""Chain mode across hosts of a group, loaded from another inventory host (-c local).

tune.yml's service, benchmark and verify parts (tags) on a chain group of two
inventory hosts, front and back, benchmarked from a third, load: all three
names for this machine (tests/localhost/chain-inventory.yml), so the roles
work out the next host of the chain and the load host's address from the
inventory as they do across machines. front must forward to back (back's
request counter holds front's load too), the load must run on load, and
rollback.yml must leave the host as before. Skipped where the other localhost
test is (systemd, GRUB, not root).
"""

from __future__ import annotations

import json
import pathlib
import re
import urllib.request

from localhost_helpers import LOCALHOST_ONLY, playbook_runner, recap, snapshot, tail

INVENTORY = pathlib.Path(__file__).resolve().parent / "chain-inventory.yml"
PIDFILES = {
    name: pathlib.Path(f"/run/lowlatency-{name}/lowlatency-{name}.pid")
    for name in ("front", "back")
}
OK_REQUESTS = re.compile(r'^lowlatency_server_requests_total\{code="OK"\} ([0-9.e+]+)$', re.M)

pytestmark = LOCALHOST_ONLY


def argv(name: str) -> list[str]:
    pid = json.loads(PIDFILES[name].read_text())["pid"]
    return pathlib.Path(f"/proc/{pid}/cmdline").read_text().split("\0")


def test_chain_across_hosts_loaded_from_another(tmp_path):
    before = snapshot()
    assert not any(path.exists() for path in PIDFILES.values()), "a chain service is still running"
    playbook = playbook_runner(tmp_path, INVENTORY)
    # The chain's services call each other: one batch, not a canary first
    # (front's gate needs back). A play keyword, so an extra var.
    common = ["--forks", "1", "-e", "tune_hosts=chain", "-e", "tune_serial=100%"]
    try:
        tuned = playbook("tune", "--tags", "service,benchmark,verify", *common)
        assert tuned.returncode == 0, tail(tuned)
        assert set(recap(tuned)) == {"front", "back"}, tail(tuned)

        # front forwards to back, worked out from the group's order; back answers itself.
        front, back = argv("front"), argv("back")
        assert front[front.index("--downstream") + 1] == "127.0.0.1:50072"
        assert "--downstream" not in back
        assert back[back.index("--port") + 1] == "50072"

        # Both benchmarked from the load host; every request of front's went on to back.
        summaries = {}
        for host in ("front", "back"):
            (run_dir,) = (tmp_path / "artifacts" / host).iterdir()
            summaries[host] = json.loads((run_dir / "summary.json").read_text())
            assert summaries[host]["load_host"] == "load"
            assert summaries[host]["passed"] is True
            assert summaries[host]["after"]["errors"] == 0
        assert summaries["front"]["target"] == "127.0.0.1:50071"
        with urllib.request.urlopen("http://127.0.0.1:50172/metrics", timeout=10) as response:
            served = float(OK_REQUESTS.search(response.read().decode()).group(1))
        both = summaries["front"]["after"]["requests"] + summaries["back"]["after"]["requests"]
        assert served >= both, (served, both)
    finally:
        rolled_back = playbook("rollback", "--tags", "service", *common)
    assert rolled_back.returncode == 0, tail(rolled_back)
    assert snapshot() == before
