#!/usr/bin/env bash
# scripts/radosgw/up.sh — start a throwaway single-node Ceph RADOS Gateway (S3 API) on 127.0.0.1.
#
# Runs ceph-mon + one ceph-osd (memstore, i.e. in RAM) + radosgw (beast frontend) as plain
# background processes (no systemd). Everything — ceph.conf, data, logs, pid files, admin
# sockets — lives under ONE directory; /etc/ceph and /var/lib/ceph are never touched, so
# several instances can run side by side. Stop it with scripts/radosgw/down.sh "$RADOSGW_DIR".
# `npm test` runs it once per test run (test/helpers/global-setup.ts); .ci/run installs the packages.
#
# Needs (Debian 12, Ceph 16.2.x):
#   apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common curl
#
# Usage:  up.sh [DIR [PORT]]       (or env RADOSGW_DIR / RADOSGW_PORT)
#   DIR   empty or missing directory to use (default: mktemp -d /tmp/radosgw.XXXXXX)
#   PORT  S3 port on 127.0.0.1 (default: a free port)
#   env RADOSGW_DEADLINE  seconds to wait for everything to come up (default 180)
#   env RADOSGW_KEEP_ON_FAIL=1  on failure keep DIR (logs) instead of removing it
#   env RADOSGW_ACCESS_KEY, RADOSGW_SECRET_KEY  the S3 user's keys (default bbtest / bbtestsecret)
# stdout (eval-able, e.g. `set -a; eval "$(scripts/radosgw/up.sh)"; set +a`):
#   S3_ENDPOINT=http://127.0.0.1:PORT  S3_ACCESS_KEY_ID=<access key>  S3_SECRET_ACCESS_KEY=<secret key>
#   S3_REGION=us-east-1  S3_FORCE_PATH_STYLE=true  RADOSGW_DIR=/tmp/radosgw.XXXXXX
# Progress and errors go to stderr; exit status is non-zero if anything fails to come up.
#
# Measured (2-core Debian 12 VM, Ceph 16.2.15, warm page cache): start to ready 2.3-3.2 s
# (9 runs incl. two instances started in parallel); RSS idle ~127 MiB (mon 35, osd 47, rgw 45),
# ~205 MiB after a 10 MiB multipart smoke test; down.sh takes ~0.4 s.
# Data lives in the OSD's RAM (memstore): OSD RSS grows with what the tests store.
set -euo pipefail

DEADLINE_S=${RADOSGW_DEADLINE:-180}
DIR=${1:-${RADOSGW_DIR:-}}
S3_PORT=${2:-${RADOSGW_PORT:-}}
ACCESS_KEY=${RADOSGW_ACCESS_KEY:-bbtest}
SECRET_KEY=${RADOSGW_SECRET_KEY:-bbtestsecret}
T0=$(date +%s.%N)

log() { printf 'radosgw-up: %s\n' "$*" >&2; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool uuidgen curl; do
  command -v "$bin" >/dev/null 2>&1 || {
    log "missing '$bin'; install: apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common curl"
    exit 2
  }
done
[[ -x /usr/bin/python3 ]] || { log "missing /usr/bin/python3 (used to find free ports); install: apt-get install -y python3"; exit 2; }

if [[ -z "$DIR" ]]; then
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/radosgw.XXXXXX")
else
  mkdir -p "$DIR"
  if [[ -n "$(ls -A "$DIR")" ]]; then log "directory $DIR is not empty"; exit 2; fi
fi
DIR=$(cd "$DIR" && pwd)
touch "$DIR/.radosgw-test-dir"        # marker checked by down.sh before rm -rf
mkdir -p "$DIR"/{mon,osd,rgw,run,log,crash}
: >"$DIR/pids"

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
listens_on() { # pid port: true if that pid owns a listening TCP socket on 127.0.0.1:port
  /usr/bin/python3 - "$1" "$2" <<'PY'
import os, sys
pid, port = sys.argv[1], int(sys.argv[2])
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if link.startswith("socket:["):
        inodes.add(link[8:-1])
for line in open("/proc/net/tcp").readlines()[1:]:
    f = line.split()
    if f[3] == "0A" and int(f[1].split(":")[1], 16) == port and f[9] in inodes:
        sys.exit(0)
sys.exit(1)
PY
}
port_is_free() {
  /usr/bin/python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" 2>/dev/null
}

cleanup_on_fail() {
  local rc=$?
  trap - EXIT
  if [[ $rc -ne 0 ]]; then
    log "FAILED after $(elapsed)s (exit $rc); last log lines:"
    for f in "$DIR"/log/*.log; do
      [[ -f "$f" ]] || continue
      echo "---- $f" >&2; tail -n 15 "$f" >&2 || true
    done
    if [[ -n "${RADOSGW_KEEP_ON_FAIL:-}" ]]; then
      # kill our daemons but keep the directory for inspection
      while read -r _n pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$DIR/pids"
      log "kept $DIR (RADOSGW_KEEP_ON_FAIL set)"
    else
      "$(dirname "$0")/down.sh" "$DIR" >&2 || true
    fi
  fi
  exit $rc
}
trap cleanup_on_fail EXIT

deadline_left() { awk -v a="$T0" -v b="$(date +%s.%N)" -v d="$DEADLINE_S" 'BEGIN{exit !(b-a < d)}'; }

MON_PORT=$(free_port)
if [[ -n "$S3_PORT" ]]; then
  port_is_free "$S3_PORT" || { log "port 127.0.0.1:$S3_PORT is already in use"; exit 1; }
else
  S3_PORT=$(free_port)
fi
FSID=$(uuidgen)
CONF="$DIR/ceph.conf"

cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon_initial_members = a
mon_host = [v2:127.0.0.1:$MON_PORT]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_msgr2 = true
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# with auth none, "secure" msgr2 mode is impossible; radosgw defaults to it for the mon link
ms_mon_client_mode = crc
ms_client_mode = crc
ms_mon_cluster_mode = crc
ms_mon_service_mode = crc
ms_cluster_mode = crc
ms_service_mode = crc
keyring = $DIR/keyring
run_dir = $DIR/run
pid_file = $DIR/run/\$name.pid
log_file = $DIR/log/\$name.log
crash_dir = $DIR/crash
mon_cluster_log_file = $DIR/log/cluster.log
log_to_stderr = false
err_to_stderr = true
# single OSD, no replication
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_delete = true
mon_data_avail_warn = 2
mon_data_avail_crit = 1
# faster paxos commits (pool creation at rgw start)
paxos_propose_interval = 0.1
# small memory
mon_memory_target = 268435456
rocksdb_cache_size = 67108864

[mon]
mon_data = $DIR/mon
admin_socket = $DIR/run/\$cluster-\$name.asok

[osd]
osd_data = $DIR/osd
admin_socket = $DIR/run/\$cluster-\$name.asok
osd_objectstore = memstore
memstore_device_bytes = 4294967296
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1

[client.rgw]
admin_socket = $DIR/run/\$cluster-\$name.asok
rgw_data = $DIR/rgw
rgw_frontends = beast endpoint=127.0.0.1:$S3_PORT
rgw_thread_pool_size = 32
rgw_dynamic_resharding = false
rgw_enable_usage_log = false
rgw_enable_ops_log = false
EOF

start_daemon() { # name, cmd...
  local name=$1; shift
  nohup "$@" -f </dev/null >>"$DIR/log/$name.stdout" 2>&1 &
  echo "$name $!" >>"$DIR/pids"
  eval "PID_$name=$!"
}
wait_tick() { # name: fail if the daemon died or the deadline passed, else sleep a bit
  local pid_var="PID_$1"
  kill -0 "${!pid_var}" 2>/dev/null || { log "$1 (pid ${!pid_var}) exited during start-up (log tails below)"; exit 1; }
  deadline_left || { log "$1 did not come up within ${DEADLINE_S}s (log tails below)"; exit 1; }
  sleep 0.25
}

# --- monitor
log "mon on 127.0.0.1:$MON_PORT, s3 on 127.0.0.1:$S3_PORT, dir $DIR"
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" >"$DIR/log/mon-mkfs.log" 2>&1
start_daemon mon ceph-mon -c "$CONF" -i a

C=(ceph -c "$CONF" --connect-timeout 10)
until "${C[@]}" mon stat >/dev/null 2>&1; do wait_tick mon; done
log "mon up after $(elapsed)s"

# --- one OSD (memstore)
OSD_UUID=$(uuidgen)
OSD_ID=$("${C[@]}" osd new "$OSD_UUID")
ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/osd-mkfs.log" 2>&1
start_daemon osd ceph-osd -c "$CONF" -i "$OSD_ID"
until "${C[@]}" osd dump 2>/dev/null | grep -q "^osd.$OSD_ID up *in"; do wait_tick osd; done
log "osd up after $(elapsed)s"

# --- radosgw
start_daemon rgw radosgw -c "$CONF" -n client.rgw
# our radosgw must own the listener (not some other process that grabbed the port), then answer HTTP
until listens_on "$PID_rgw" "$S3_PORT" 2>/dev/null && curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$S3_PORT/"; do
  wait_tick rgw
done
log "radosgw answering after $(elapsed)s"

radosgw-admin -c "$CONF" user create --uid=bbtest --display-name="bbtest" \
  --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >"$DIR/log/user-create.json" 2>"$DIR/log/user-create.log"
log "ready after $(elapsed)s"

trap - EXIT
cat <<EOF
S3_ENDPOINT=http://127.0.0.1:$S3_PORT
S3_ACCESS_KEY_ID=$ACCESS_KEY
S3_SECRET_ACCESS_KEY=$SECRET_KEY
S3_REGION=us-east-1
S3_FORCE_PATH_STYLE=true
RADOSGW_DIR=$DIR
EOF
