"""A stand-in for qemu-system-x86_64 in the watcher's tests.

It records its command line, daemonizes as QEMU does (pidfile, then the
parent returns), answers the QMP greeting on the events socket, and ends the
way the next word of $FAKE_QEMU_PLAN says: with a SHUTDOWN event of that
reason ("guest-reset", "guest-shutdown"), or on SIGTERM ("wait") with the
reason "host-signal" ("wait:REASON": with REASON, as when the guest reset
itself just as the signal came), or at once with an error ("fail").
"""

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

argv = sys.argv[1:]
plan = Path(os.environ["FAKE_QEMU_PLAN"])
steps = plan.read_text().split()
step, rest = steps[0], steps[1:]
plan.write_text("\n".join(rest))
with open(os.environ["FAKE_QEMU_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\n")
if step == "fail":
    sys.exit("qemu-system-x86_64: the stand-in was told to fail")

pidfile = Path(argv[argv.index("-pidfile") + 1])
events = next(
    a.split(",")[0].removeprefix("unix:")
    for a in argv
    if a.startswith("unix:") and "events.sock" in a
)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(events)
listener.listen(1)
read_end, write_end = os.pipe()
if os.fork():
    os.close(write_end)
    os.read(read_end, 1)  # the child is ready, as QEMU's parent waits for it
    sys.exit(0)
os.setsid()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):  # as QEMU's -daemonize: the caller waits on no pipe of ours
    os.dup2(null, fd)
pidfile.write_text(f"{os.getpid()}\n")
os.write(write_end, b"x")


def shutdown(reason):
    try:
        event = {"event": "SHUTDOWN", "data": {"guest": True, "reason": reason}}
        conn.sendall(json.dumps(event).encode() + b"\n")
        conn.close()
    finally:
        pidfile.unlink(missing_ok=True)
        os.unlink(events)
        os._exit(0)


on_signal = step.partition(":")[2] or "host-signal"
signal.signal(signal.SIGTERM, lambda *_: shutdown(on_signal))
conn, _peer = listener.accept()
conn.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\n')
conn.recv(4096)  # qmp_capabilities
conn.sendall(b'{"return": {}}\n')
if step.startswith("wait"):
    while True:
        time.sleep(1)
time.sleep(0.3)
shutdown(step)
