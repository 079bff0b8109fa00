# Copyright (c) lowlatency.tuning contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hold /dev/cpu_dma_latency at a value for as long as this process lives.

The kernel keeps a PM QoS request only while the file stays open, so the
value is written once as a binary 32-bit integer and the process sleeps.
Installed by the lowlatency.tuning.kernel role; run by
lowlatency-cpu-dma-latency.service (Type=notify: started means held).
"""

import os
import signal
import socket
import struct
import sys

DEVICE = "/dev/cpu_dma_latency"


def notify_ready() -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(b"READY=1")


def main(argv: list) -> int:
    if len(argv) not in (2, 3) or not argv[1].isdigit():
        sys.stderr.write("usage: cpu_dma_latency.py MICROSECONDS [DEVICE]\n")
        return 2
    value = int(argv[1])
    device = argv[2] if len(argv) == 3 else DEVICE
    fd = os.open(device, os.O_WRONLY)
    os.write(fd, struct.pack("=i", value))
    notify_ready()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
