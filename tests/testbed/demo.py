"""make demo: tune a throwaway test-bed VM end to end and show what changed.

Boots one guest of the QEMU test bed (2 NUMA nodes, SMT, a 4-queue NIC),
runs the collection's tune.yml against it exactly as a user would
(``ansible-playbook lowlatency.tuning.tune``) with a baseline benchmark
before tuning and a reboot into the new boot arguments, then prints the
per-setting verify report and the percentiles before and after, and stops
the guest.

Figures from an emulated (TCG) guest on a shared host show the mechanism:
which settings land, the service pinned, the gate working. They are not the
latency the hardware reaches; `make compare` measures that natively.

    python tests/testbed/demo.py [--keep] [--accel tcg|kvm] [--tcg-thread single|multi] [--dir DIR]

Run from the repository root, with the venv's Python (make demo does that).
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from subprocess import DEVNULL

import yaml

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / "tests" / "testbed"

# The guest's variables are the integration scenario's (molecule.yml): the
# same 4-vCPU, 2-node guest, its layout, reboot and benchmark limits for an
# emulated guest. Where the artifacts go and drift handling are the demo's own.
SCENARIO = REPO / "molecule" / "integration" / "molecule.yml"


def scenario_vars(artifacts: Path) -> dict:
    config = yaml.safe_load(SCENARIO.read_text())
    host_vars = dict(config["provisioner"]["inventory"]["group_vars"]["all"])
    # The demo shows drift in its report instead of stopping the play on it.
    host_vars.pop("verify_fail_on_drift", None)
    host_vars.update(benchmark_artifacts_dir=str(artifacts), verify_artifacts_dir=str(artifacts))
    return host_vars


FIGURES = (
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "tail_ratio",
    "throughput_rps",
    "errors",
)
# The Ansible settings (strategy, SSH options, timeouts) are the molecule
# scenarios' own, read from their base configuration rather than copied.
BASE_CONFIG = REPO / ".config" / "molecule" / "config.yml"
NOTE = (
    "These figures come from an emulated (TCG) virtual machine on a shared host. They show the\n"
    "mechanism (what tune.yml sets, the service pinned, the gate at work), not the latency the\n"
    "hardware can reach. `make compare` measures default vs tuned natively on this machine."
)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+ " + " ".join(argv), flush=True)
    return subprocess.run(argv, check=False, **kwargs)


def stop_guests(vms: Path) -> None:
    run([sys.executable, str(TESTBED / "vm.py"), "--state-dir", str(vms), "stop"], stdout=DEVNULL)


def verify_table(rows: list[dict]) -> list[str]:
    """The verify role's own table filter, so the demo prints what the role prints."""
    spec = importlib.util.spec_from_file_location(
        "verify_filters", REPO / "plugins/filter/verify.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.verify_table(rows, width=48)


def before_after(summary: dict) -> list[str]:
    before = summary.get("baseline") or {}
    after = summary.get("after") or {}
    lines = [f"{'figure':<16}{'before':>14}{'after':>14}{'after/before':>14}"]
    for key in FIGURES:
        old, new = before.get(key), after.get(key)
        ratio = ""
        if isinstance(old, (int, float)) and isinstance(new, (int, float)) and old:
            ratio = f"{new / old:.2f}"
        old_text = "-" if old is None else str(old)
        new_text = "-" if new is None else str(new)
        lines.append(f"{key:<16}{old_text:>14}{new_text:>14}{ratio:>14}")
    return lines


def latest_run(artifacts: Path, host: str, name: str) -> Path | None:
    found = sorted((artifacts / host).glob(f"*/{name}"), key=lambda path: path.stat().st_mtime)
    return found[-1] if found else None


def expand(value: object, env: dict[str, str]) -> str:
    """Molecule's ``${VAR}`` and ``${VAR:-default}`` interpolation of a config value."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m[1], m[2] or ""), text)


def ansible_env(work: Path, base: dict[str, str]) -> dict[str, str]:
    """Write work/ansible.cfg from the scenarios' config_options; return the run's environment.

    The guest's host key changes with every demo, so known hosts go nowhere.
    """
    env = dict(base, MOLECULE_PROJECT_DIRECTORY=str(REPO))
    provisioner = yaml.safe_load(BASE_CONFIG.read_text())["provisioner"]
    config = configparser.ConfigParser(interpolation=None)
    for section, options in provisioner["config_options"].items():
        config[section] = {key: expand(value, env) for key, value in options.items()}
    ssh = config["ssh_connection"]
    ssh["ssh_args"] = ssh.get("ssh_args", "") + " -o UserKnownHostsFile=/dev/null"
    config["defaults"]["retry_files_enabled"] = "false"
    path = work / "ansible.cfg"
    with path.open("w") as handle:
        config.write(handle)
    env.update({key: expand(value, env) for key, value in provisioner.get("env", {}).items()})
    env.update(ANSIBLE_CONFIG=str(path), ANSIBLE_COLLECTIONS_PATH=str(work / "collections"))
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--dir", type=Path, default=REPO / ".cache" / "demo", help="work directory")
    parser.add_argument(
        "--accel", choices=("tcg", "kvm"), default=os.environ.get("TESTBED_ACCEL", "tcg")
    )
    parser.add_argument(
        "--tcg-thread",
        choices=("single", "multi"),
        default=os.environ.get("TESTBED_TCG_THREAD", "multi"),
    )
    parser.add_argument("--keep", action="store_true", help="leave the guest running afterwards")
    args = parser.parse_args()
    if shutil.which("qemu-system-x86_64") is None:
        print("demo: qemu-system-x86_64 not found; run `make system-deps` first", file=sys.stderr)
        return 2

    work = args.dir.resolve()
    vms = work / "vms"
    artifacts = work / "artifacts"
    work.mkdir(parents=True, exist_ok=True)
    # A new demo starts from a fresh guest: an earlier --keep guest is stopped.
    stop_guests(vms)

    image = run([str(TESTBED / "image/build-image.sh")], capture_output=True, text=True)
    if image.returncode != 0:
        print(image.stderr, file=sys.stderr)
        return 1
    image_path = image.stdout.strip().splitlines()[-1]

    start = run(
        [sys.executable, str(TESTBED / "vm.py"), "--state-dir", str(vms), "start", "--name", "demo",
         "--image", image_path, "--accel", args.accel, "--tcg-thread", args.tcg_thread,
         "--boot-timeout", "900"],
        capture_output=True, text=True,
    )  # fmt: skip
    if start.returncode != 0:
        print(start.stdout + start.stderr, file=sys.stderr)
        return 1
    guest = json.loads(start.stdout.strip().splitlines()[-1])
    began = time.monotonic()
    try:
        inventory = work / "inventory.json"
        host_vars = dict(
            scenario_vars(artifacts),
            ansible_host=guest["address"],
            ansible_port=guest["port"],
            ansible_user=guest["user"],
            ansible_ssh_private_key_file=guest["identity_file"],
            ansible_python_interpreter="/usr/bin/python3",
        )
        inventory.write_text(json.dumps({"all": {"hosts": {"demo": host_vars}}}, indent=2) + "\n")

        collections = work / "collections" / "ansible_collections" / "lowlatency"
        collections.mkdir(parents=True, exist_ok=True)
        link = collections / "tuning"
        if not link.is_symlink():
            link.symlink_to(REPO)
        env = ansible_env(work, dict(os.environ))
        playbook = Path(sys.executable).with_name("ansible-playbook")
        tune = run(
            [str(playbook), "lowlatency.tuning.tune", "-i", str(inventory)], env=env, cwd=work
        )
        minutes = (time.monotonic() - began) / 60

        result = "passed" if tune.returncode == 0 else "FAILED"
        print(f"\n==== demo: tune.yml on a test-bed VM ({result}, {minutes:.0f} min)")
        report = latest_run(artifacts, "demo", "verify.json")
        if report:
            rows = json.loads(report.read_text())["rows"]
            print("\nPer-setting report (expected, actual, status):")
            print("\n".join(verify_table(rows)))
        summary = latest_run(artifacts, "demo", "summary.json")
        if summary:
            print("\nReference gRPC service, before and after tune.yml (microseconds):")
            print("\n".join(before_after(json.loads(summary.read_text()))))
        print(f"\nArtifacts (JSON, HdrHistogram log, plot, JUnit XML): {artifacts / 'demo'}")
        print("\n" + NOTE)
        if args.keep:
            ssh = f"ssh -i {guest['identity_file']} -p {guest['port']} root@{guest['address']}"
            print(f"\nThe guest is still running: {ssh}; inventory {inventory}")
        return tune.returncode
    finally:
        if not args.keep:
            stop_guests(vms)


if __name__ == "__main__":
    sys.exit(main())
