"""``lowlatency-service direct``: run a service as a plain background process (no systemd).

For hosts whose PID 1 is not systemd (containers, sandboxes) and for the
benchmark's temporary baseline instance. Prints one JSON object: ``changed``,
``state``, ``pid``. ``start`` is idempotent: a live process started with the
same command line is left alone, one with another is replaced. Run as root;
the service itself runs as ``--user``. A process that exits at once fails
the start with the end of its log (exit status 1).
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

from lowlatency_service.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    helps = {
        "start": "start COMMAND unless it runs already with the same command line",
        "stop": "stop the recorded process",
        "status": "read the recorded process",
    }
    for name, text in helps.items():
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("--pidfile", required=True, help="record of pid and command line")
        if name == "status":
            continue
        action.add_argument("--timeout", type=float, default=10.0, help="SIGTERM to SIGKILL, s")
        if name == "stop":
            continue
        action.add_argument("--log", required=True, help="stdout and stderr go here")
        action.add_argument("--user", required=True, help="user the process runs as")
        action.add_argument("--group", required=True, help="group the process runs as")
        action.add_argument(
            "--settle", type=float, default=1.0, help="a start must live this long, s"
        )
        action.add_argument(
            "--env",
            action="append",
            default=[],
            type=environment_entry,
            metavar="NAME=VALUE",
            help="set in the process's environment (e.g. LD_PRELOAD); a start compares it too",
        )
        # Everything after "--" is the process's command line, taken as it is.
        action.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")


def environment_entry(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not name.replace("_", "A").isalnum():
        raise argparse.ArgumentTypeError(f"must be NAME=VALUE, not {text!r}")
    return name, value


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
    """Stop the recorded process (SIGTERM, SIGKILL after timeout); True when one ran."""
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


def _exec_as(args: argparse.Namespace, log_fd: int, gid: int) -> None:
    """In the child: detach, redirect to the log, drop to the user and exec the command."""
    user = pwd.getpwnam(args.user)
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
    os.environ.update(dict(args.env))
    os.execv(args.argv[0], args.argv)


def start(args: argparse.Namespace) -> dict:
    record = read_record(args.pidfile)
    env = dict(args.env)
    # A record without "env" was started without --env.
    if alive(record) and record["argv"] == args.argv and record.get("env", {}) == env:
        return {"changed": False, "state": "running", "pid": record["pid"]}
    stop(args.pidfile, args.timeout)
    gid = grp.getgrnam(args.group).gr_gid
    log_fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.fchown(log_fd, 0, gid)
    pid = os.fork()
    if pid == 0:
        _exec_as(args, log_fd, gid)
    os.close(log_fd)
    tmp = args.pidfile + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"pid": pid, "argv": args.argv, **({"env": env} if env else {})}, handle)
    os.replace(tmp, args.pidfile)
    time.sleep(args.settle)
    finished, status = os.waitpid(pid, os.WNOHANG)
    if finished:
        with open(args.log, encoding="utf-8", errors="replace") as handle:
            tail = handle.read()[-2000:]
        os.unlink(args.pidfile)
        return {"failed": True, "msg": f"service exited at once (status {status}): {tail}"}
    return {"changed": True, "state": "started", "pid": pid}


def status(pidfile: str) -> dict:
    record = read_record(pidfile)
    running = alive(record)
    return {
        "changed": False,
        "state": "running" if running else "stopped",
        "pid": record["pid"] if running else None,
        "argv": record["argv"] if running else None,
    }


def run(args: argparse.Namespace) -> int:
    if args.action == "start":
        if args.argv[:1] == ["--"]:
            args.argv = args.argv[1:]
        if not args.argv:
            raise UsageError("direct start needs the command after --")
        result = start(args)
    elif args.action == "stop":
        result = {"changed": stop(args.pidfile, args.timeout), "state": "stopped", "pid": None}
    else:
        result = status(args.pidfile)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 1 if result.get("failed") else 0
