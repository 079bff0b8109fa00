"""The link watch the irq and nic roles' re-apply units run."""

from __future__ import annotations

import sys

import pytest
from ansible_collections.lowlatency.tuning.plugins.module_utils import linkwatch


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("3: eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP", "eth1"),
        ("Deleted 3: eth1: <BROADCAST,MULTICAST> mtu 1500", "eth1"),
        ("5: vlan7@eth1: <BROADCAST> mtu 1500", "vlan7"),
    ],
)
def test_link_lines(line, name):
    assert linkwatch.LINK_RE.match(line).group(1) == name


def test_applies_at_start_and_after_events_of_its_interfaces(monkeypatch):
    monkeypatch.setattr(linkwatch, "SETTLE_SECONDS", 0.05)
    events = [
        "3: eth1: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 state DOWN",
        "4: eth2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP",
        "3: eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP",
    ]
    # Two events of eth1 within the settle time are one apply; eth2 is not watched.
    script = (
        "import sys, time\n"
        + "".join(f"print({line!r}, flush=True)\n" for line in events)
        + "time.sleep(0.5)\nsys.exit(3)\n"
    )
    calls: list[list[str]] = []
    code = linkwatch.watch_links({"eth1"}, calls.append, [sys.executable, "-c", script])
    assert calls == [[], ["eth1"]]
    assert code == 3
