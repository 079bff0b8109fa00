"""Run the reference service as a plain background process (no systemd).

Used by the reference_service role on hosts whose PID 1 is not systemd
(containers, sandboxes). Prints one JSON object: ``changed``, ``state``,
``pid``. Commands: ``start`` (idempotent: a live process started with the
same command line is left alone, one with another is replaced), ``stop`` and
``status``. Run as root; the service itself runs as ``--user``.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import signal
import sys
import time


def read_record(pidfile: str) -> dict | None:
    try:
        with open(pidfile, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def alive(record: dict | None) -> bool:
    if not record:
        return False
    try:
        with open(f"/proc/{record['pid']}/cmdline", "rb") as handle:
            cmdline = handle.read().split(b"\0")
    except OSError:
        return False
    # A reused PID runs something else: the service's executable is on its command line.
    return record["argv"][0].encode() in cmdline


def stop(pidfile: str, timeout: float) -> bool:
    record = read_record(pidfile)
    running = alive(record)
    if running:
        pid = record["pid"]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive(record):
            time.sleep(0.1)
        if alive(record):
            os.kill(pid, signal.SIGKILL)
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    return running


def start(args: argparse.Namespace) -> dict:
    record = read_record(args.pidfile)
    if alive(record) and record["argv"] == args.argv:
        return {"changed": False, "state": "running", "pid": record["pid"]}
    stop(args.pidfile, args.timeout)
    user = pwd.getpwnam(args.user)
    gid = grp.getgrnam(args.group).gr_gid
    log_fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.fchown(log_fd, 0, gid)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.initgroups(args.user, gid)
        os.setgid(gid)
        os.setuid(user.pw_uid)
        os.chdir("/")
        os.environ.update({"HOME": user.pw_dir, "USER": args.user, "LOGNAME": args.user})
        os.execv(args.argv[0], args.argv)
    os.close(log_fd)
    tmp = args.pidfile + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"pid": pid, "argv": args.argv}, handle)
    os.replace(tmp, args.pidfile)
    time.sleep(args.settle)
    finished, status = os.waitpid(pid, os.WNOHANG)
    if finished:
        with open(args.log, encoding="utf-8", errors="replace") as handle:
            tail = handle.read()[-2000:]
        os.unlink(args.pidfile)
        message = f"service exited at once (status {status}): {tail}"
        raise SystemExit(json.dumps({"failed": True, "msg": message}))
    return {"changed": True, "state": "started", "pid": pid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--log")
    parser.add_argument("--user")
    parser.add_argument("--group")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=1.0)
    # Everything after "--" is the service's command line, taken as it is.
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.argv = argv[split + 1 :]
    if args.command == "start":
        if not (args.argv and args.log and args.user and args.group):
            parser.error("start needs --log, --user, --group and the command after --")
        result = start(args)
    elif args.command == "stop":
        result = {"changed": stop(args.pidfile, args.timeout), "state": "stopped", "pid": None}
    else:
        record = read_record(args.pidfile)
        running = alive(record)
        result = {
            "changed": False,
            "state": "running" if running else "stopped",
            "pid": record["pid"] if running else None,
            "argv": record["argv"] if running else None,
        }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
