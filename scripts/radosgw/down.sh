#!/usr/bin/env bash
# scripts/radosgw/down.sh — stop a radosgw instance started by up.sh and delete its directory.
#
# Usage: down.sh RADOSGW_DIR
# Kills only the PIDs recorded in RADOSGW_DIR/pids (and only if that PID's command line still
# names RADOSGW_DIR, so a recycled PID is never hit): SIGTERM one by one (radosgw, osd, mon), up to 5 s grace each, then SIGKILL.
# Then `rm -rf RADOSGW_DIR` — only if it holds the .radosgw-test-dir marker written by up.sh.
# Needs nothing beyond bash/coreutils (same apt line as up.sh for the daemons themselves).
set -uo pipefail

DIR=${1:-${RADOSGW_DIR:-}}
[[ -n "$DIR" ]] || { echo "usage: $0 RADOSGW_DIR" >&2; exit 2; }
[[ -d "$DIR" ]] || { echo "radosgw-down: $DIR: no such directory (already down?)" >&2; exit 0; }
DIR=$(cd "$DIR" && pwd)
[[ -f "$DIR/.radosgw-test-dir" ]] || { echo "radosgw-down: $DIR was not made by up.sh; refusing" >&2; exit 2; }

ours() { # pid -> true if alive and its cmdline mentions $DIR
  [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$DIR/"
}

pids=()
if [[ -f "$DIR/pids" ]]; then
  # stop in reverse start order: rgw, osd, mon
  while read -r _name pid; do
    [[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid" && pids=("$pid" "${pids[@]}")
  done <"$DIR/pids"
fi

# one at a time (radosgw first, while the cluster can still answer its shutdown calls)
for pid in "${pids[@]}"; do
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do ours "$pid" || break; sleep 0.05; done   # up to 5 s grace
  if ours "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  for _ in $(seq 1 40); do ours "$pid" || break; sleep 0.05; done
done

rm -rf -- "$DIR"
echo "radosgw-down: stopped ${#pids[@]} process(es), removed $DIR" >&2
