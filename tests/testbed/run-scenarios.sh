#!/usr/bin/env bash
# Run molecule scenarios on the QEMU test bed, several at a time, and print
# how long each took. Used by `make molecule`; run from the repository root.
#
#   tests/testbed/run-scenarios.sh [SCENARIO...]   (default: every molecule/*/molecule.yml)
#
# MOLECULE_JOBS (default 2) scenarios run side by side: a TCG guest runs the
# one Python process Ansible starts in it on one host core, so a second
# scenario uses the other core instead of leaving it idle. Each scenario's
# output goes to .cache/testbed/logs/molecule-NAME.log and is printed whole
# when the scenario ends, so the outputs do not interleave.
set -euo pipefail

repo=$(pwd -P)
[ -f "$repo/galaxy.yml" ] || { echo "run-scenarios.sh: run it from the repository root" >&2; exit 2; }
jobs=${MOLECULE_JOBS:-2}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "run-scenarios.sh: MOLECULE_JOBS must be a positive integer, got '$jobs'" >&2; exit 2; }
logs=$repo/.cache/testbed/logs
mkdir -p "$logs"

if [ $# -gt 0 ]; then
  scenarios=("$@")
else
  scenarios=()
  for file in molecule/*/molecule.yml; do scenarios+=("$(basename "$(dirname "$file")")"); done
fi
for name in "${scenarios[@]}"; do
  [ -f "molecule/$name/molecule.yml" ] || { echo "run-scenarios.sh: no scenario molecule/$name" >&2; exit 2; }
done

# Molecule's prerun installs the collection into ~/.ansible/collections before
# each scenario, replacing the copy another scenario is running from. It skips
# that when the installed collection is a symlink to the project: make it one.
collections=${ANSIBLE_HOME:-$HOME/.ansible}/collections/ansible_collections/lowlatency
mkdir -p "$collections"
if [ "$(readlink "$collections/tuning" || true)" != "$repo" ]; then
  rm -rf "$collections/tuning"
  ln -s "$repo" "$collections/tuning"
fi

guests=()
for name in "${scenarios[@]}"; do guests+=(--name "$name-*"); done
cleanup() { python3 tests/testbed/vm.py --state-dir "${TESTBED_STATE_DIR:-.cache/testbed/vms}" stop "${guests[@]}" >/dev/null 2>&1 || true; }
trap cleanup EXIT

start=$SECONDS
tests/testbed/image/build-image.sh >/dev/null
image_time=$((SECONDS - start))

run_one() {
  local name=$1 begin=$SECONDS result=passed
  # Each line stamped with the time of day: where a scenario's time goes.
  molecule test -s "$name" 2>&1 | while IFS= read -r line; do printf '%(%T)T %s\n' -1 "$line"; done >"$logs/molecule-$name.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || result=FAILED
  {
    printf '===== molecule scenario %s: %s in %ss =====\n' "$name" "$result" $((SECONDS - begin))
    cat "$logs/molecule-$name.log"
  } | flock "$logs/.print.lock" cat
  printf '%-16s %-7s %5ss\n' "$name" "$result" $((SECONDS - begin)) >>"$logs/times"
}
export -f run_one
export logs

: >"$logs/times"
printf '%s\n' "${scenarios[@]}" >"$logs/.queue"
# xargs in a process group of its own (job control), so that a TERM or INT
# to this script stops it with every scenario it runs instead of leaving it
# to start the next ones; the EXIT trap then stops the guests.
set -m
xargs -a "$logs/.queue" -P "$jobs" -I{} bash -c 'run_one "$1"' _ {} &
runner=$!
set +m
trap 'kill -TERM -- "-$runner" 2>/dev/null; wait "$runner"; exit 143' TERM INT
wait "$runner" || true
trap - TERM INT
echo "molecule scenario times ($jobs at a time, $((SECONDS - start))s in all):"
printf '%-16s %-7s %5ss\n' image ready "$image_time"
cat "$logs/times"
# CI keeps only the end of the output: say there why each failed scenario
# failed (the failing step, its first fatal task, the guest's last console lines).
status=0
for name in $(awk '$2 == "FAILED" {print $1}' "$logs/times"); do
  status=1
  echo "----- $name failed:"
  plain=$(sed 's/\x1b\[[0-9;]*m//g' "$logs/molecule-$name.log")
  grep -o '[a-z_]* ➜ [a-z_]*: Executed: Failed' <<<"$plain" | sort -u | sed 's/^/  step: /' || true
  # Fatal lines that Ansible went on to ignore are followed by "...ignoring".
  awk 'after > 0 {print "  " substr($0, 1, 200); if (--after == 0 && n == 3) exit; next}
       /TASK \[/ {task = $0}
       /fatal: |UNREACHABLE!|FAILED! =>|ERROR!|Idempotence test failed/ {
         n++; print "  " task; print "  " substr($0, 1, 600); after = 1
         if (/Idempotence/) after = 4 }' <<<"$plain"
  for serial in "$logs/$name"-*.serial.log; do
    [ -f "$serial" ] || continue
    echo "  console $(basename "$serial"), last lines:"
    tail -n 6 "$serial" | cut -c1-200 | sed 's/^/    /'
  done
done
exit $status
