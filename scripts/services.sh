#!/usr/bin/env bash
# Kordon's real test services, on 127.0.0.1 only, without systemd (CI and developers):
#
#   scripts/services.sh start-rgw       # single-node Ceph (mon + osd) and RGW on 127.0.0.1:7480
#   scripts/services.sh stop-rgw        # stops the daemons, keeps the data
#   scripts/services.sh start-postgres  # private PostgreSQL 15 cluster on 127.0.0.1:5433
#   scripts/services.sh stop-postgres
#   scripts/services.sh start | stop    # both of the above
#   scripts/services.sh status
#   scripts/services.sh check-rgw       # S3 smoke test: PUT/GET and Object Lock refusing a delete
#   eval "$(scripts/services.sh env)"   # the variables the test suite reads
#
# Ports: KORDON_RGW_PORT (7480), KORDON_CEPH_MON_PORT (6789), KORDON_PG_PORT (5433).
# State lives in ${KORDON_CACHE:-$HOME/.cache/kordon}/{ceph,postgres} and is reused: a second start
# only restarts what is not running (~6 s for Ceph), and does nothing when all is up. Daemons run
# detached (setsid, pid files), so they outlive this script and the terminal. Progress goes to
# stderr; `env` prints only `export` lines to stdout.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/lib.sh"

# ---- fixed test endpoints and credentials -------------------------------------------------------
# Ports can be moved (a second checkout, a port already taken); the defaults are what CI uses.
RGW_PORT="${KORDON_RGW_PORT:-7480}"
MON_PORT="${KORDON_CEPH_MON_PORT:-6789}"
PG_PORT="${KORDON_PG_PORT:-5433}"
S3_ENDPOINT="http://127.0.0.1:$RGW_PORT"
S3_ACCESS_KEY="kordon-test"
S3_SECRET_KEY="kordon-test-secret"
S3_BUCKET="kordon-test"
S3_WORM_BUCKET="kordon-test-worm"
# RGW checks a SigV4 signature against whatever region the client signed for (us-east-1, default,
# eu-west-1 all pass). Its zonegroup's api_name is "default": a CreateBucket without a
# LocationConstraint (what us-east-1 clients send) works, an explicit "us-east-1" one is refused
# with 400 InvalidLocationConstraint (as AWS does).
S3_REGION="us-east-1"
PG_USER="kordon"
PG_DB="kordon"

CEPH_DIR="$KORDON_CACHE/ceph"
CEPH_CONF="$CEPH_DIR/ceph.conf"
PG_DIR="$KORDON_CACHE/postgres"
CEPH_PACKAGES=(radosgw ceph-mon ceph-osd)
# Sparse: the file only takes the space that objects really use.
CEPH_BLOCK_SIZE=$((16 * 1024 * 1024 * 1024))
# ceph-mon shuts itself down at mon_data_avail_crit (5 % free); refuse a little before that.
MIN_FREE_PERCENT=6

START_TIME="$(date +%s.%N)"
step() { log "[$(awk -v s="$START_TIME" -v n="$(date +%s.%N)" 'BEGIN{printf "%5.1fs", n-s}')] $*"; }
die() { printf '\033[1;31merror: %s\033[0m\n' "$*" >&2; exit 1; }

# Installs Debian packages that are missing; `apt-get update` only when the plain install fails.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    step "apt-get install failed; running apt-get update and retrying"
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  step "installed ${missing[*]}"
}

check_free_disk() {
  local dir="$1" line size avail pct
  mkdir -p "$dir"
  line="$(df -Pk "$dir" | awk 'NR==2{print $2, $4}')"
  size="${line% *}"; avail="${line#* }"
  pct=$((avail * 100 / size))
  if [ "$pct" -lt "$MIN_FREE_PERCENT" ]; then
    die "only ${pct}% ($((avail / 1024 / 1024)) GiB) free on the filesystem of $dir; ceph-mon stops \
below 5% free. Free some space (e.g. cargo clean) and retry."
  fi
  step "disk: ${pct}% ($((avail / 1024 / 1024)) GiB) free under $dir"
}

# alive PID: the process exists and is not a zombie (a detached daemon's parent is init, which in a
# container may reap it late).
alive() {
  local state
  state="$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null)"
  [ -n "$state" ] && [ "$state" != Z ]
}

# pid_alive PIDFILE COMM: the pid in PIDFILE runs a program named COMM.
pid_alive() {
  local pid
  [ -s "$1" ] || return 1
  pid="$(head -n 1 "$1")"
  [ -n "$pid" ] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

# stop_pid PIDFILE COMM WHAT: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
  local pidfile="$1" comm="$2" what="$3" pid i
  if ! pid_alive "$pidfile" "$comm"; then
    rm -f "$pidfile"
    return 0
  fi
  pid="$(cat "$pidfile")"
  kill -TERM "$pid"
  for i in $(seq 1 300); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$what (pid $pid) did not stop in 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  step "stopped $what (pid $pid)"
}

tail_log() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -n 30 "$f" >&2
  done
}

# ==== Ceph + RGW =================================================================================
export CEPH_CONF
ceph_cli() { timeout 60 ceph --connect-timeout 30 "$@"; }

write_ceph_conf() {
  local fsid d="$CEPH_DIR"
  fsid="$(cat "$d/fsid")"
  cat >"$CEPH_CONF.tmp" <<EOF
# Written by scripts/services.sh (rewritten on every start): a single-node test cluster on loopback.
[global]
fsid = $fsid
mon_host = [v1:127.0.0.1:$MON_PORT]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr2 = false
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $d/run
crash_dir = $d/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
# Warn late; the monitor still stops at mon_data_avail_crit (5 % free).
mon_data_avail_warn = 10
osd_crush_chooseleaf_type = 0

[mon]
mon_data = $d/mon/\$cluster-\$id
mon_cluster_log_file = $d/log/cluster.log
log_file = $d/log/\$name.log
pid_file = $d/run/\$name.pid

[osd]
osd_data = $d/osd/\$cluster-\$id
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = $CEPH_BLOCK_SIZE
osd_memory_target = 1073741824
# At init the OSD would send "osd crush set-device-class" / "create-or-move"; under load 16.2.15
# can send them before it has the monmap ("wrong fsid", zero fsid) and the OSD exits. The cluster
# is created with osd.0 already in the CRUSH map, so the OSD needs neither.
osd_class_update_on_start = false
osd_crush_update_on_start = false
log_file = $d/log/\$name.log
pid_file = $d/run/\$name.pid

[client.rgw.local]
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_data = $d/rgw
rgw_thread_pool_size = 64
log_file = $d/log/\$name.log
pid_file = $d/run/\$name.pid
EOF
  mv "$CEPH_CONF.tmp" "$CEPH_CONF"
}

# Daemons: name (ceph's $name), program (its /proc comm) and arguments.
MON_NAME="mon.a";             MON_PROG="ceph-mon"; MON_ARGS=(-i a)
OSD_NAME="osd.0";             OSD_PROG="ceph-osd"; OSD_ARGS=(-i 0)
RGW_NAME="client.rgw.local";  RGW_PROG="radosgw";  RGW_ARGS=(-n client.rgw.local)

ceph_running() { pid_alive "$CEPH_DIR/run/$1.pid" "$2"; }

# start_ceph_daemon NAME PROG ARGS...: detached from this script and the terminal (own session,
# stdin from /dev/null, the lock's fd closed), with -f so that the pid is the daemon's.
start_ceph_daemon() {
  local name="$1" prog="$2"; shift 2
  mkdir -p "$CEPH_DIR/run" "$CEPH_DIR/log"
  setsid nohup "$prog" -f -c "$CEPH_CONF" "$@" \
    </dev/null >>"$CEPH_DIR/log/$name.out" 2>&1 9>&- &
  echo $! >"$CEPH_DIR/run/$name.pid"
  step "started $prog ($name, pid $!)"
}

# wait_for SECONDS NAME PROG WHAT COMMAND...: until COMMAND succeeds; fails early, with the
# daemon's log, when the daemon exits.
wait_for() {
  local secs="$1" name="$2" prog="$3" what="$4" deadline
  shift 4
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ! ceph_running "$name" "$prog"; then
      tail_log "$CEPH_DIR/log/$name.out" "$CEPH_DIR/log/$name.log"
      die "$prog ($name) exited while starting (logs in $CEPH_DIR/log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail_log "$CEPH_DIR/log/$name.out" "$CEPH_DIR/log/$name.log"
      die "$what not ready after ${secs} s (logs in $CEPH_DIR/log)"
    fi
    sleep 0.5
  done
  step "$what ready"
}

mon_ready() { ceph_cli mon stat; }
# The daemon's own view: after an unclean stop the osdmap still says "up" for the old instance.
osd_up() {
  timeout 10 ceph --admin-daemon "$CEPH_DIR/run/ceph-osd.0.asok" status | grep -q '"state": "active"'
}
rgw_answers() { [ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$S3_ENDPOINT/")" = 200 ]; }

start_mon() {
  ceph_running "$MON_NAME" "$MON_PROG" && return 0
  start_ceph_daemon "$MON_NAME" "$MON_PROG" "${MON_ARGS[@]}"
  wait_for 60 "$MON_NAME" "$MON_PROG" "ceph-mon" mon_ready
}
start_osd() {
  ceph_running "$OSD_NAME" "$OSD_PROG" && return 0
  start_ceph_daemon "$OSD_NAME" "$OSD_PROG" "${OSD_ARGS[@]}"
  wait_for 120 "$OSD_NAME" "$OSD_PROG" "ceph-osd" osd_up
}
start_rgw_daemon() {
  if ! ceph_running "$RGW_NAME" "$RGW_PROG"; then
    if rgw_answers; then
      die "something else answers on 127.0.0.1:$RGW_PORT; stop it first"
    fi
    start_ceph_daemon "$RGW_NAME" "$RGW_PROG" "${RGW_ARGS[@]}"
  fi
  wait_for 180 "$RGW_NAME" "$RGW_PROG" "radosgw on $S3_ENDPOINT" rgw_answers
}

# Creates the cluster: monitor map and store, one BlueStore OSD on a sparse file.
init_ceph() {
  local d="$CEPH_DIR" fsid uuid id out
  step "creating a single-node Ceph cluster in $d"
  rm -rf "$d"
  mkdir -p "$d"/{run,log,mon/ceph-a,osd,rgw,crash}
  cat /proc/sys/kernel/random/uuid >"$d/fsid"
  fsid="$(cat "$d/fsid")"
  write_ceph_conf
  ceph-authtool --create-keyring "$d/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --clobber --addv a "[v1:127.0.0.1:$MON_PORT]" --fsid "$fsid" "$d/monmap" >/dev/null
  ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$d/monmap" --keyring "$d/mon.keyring" \
    >>"$d/log/mkfs.log" 2>&1 || { tail_log "$d/log/mkfs.log"; die "ceph-mon --mkfs failed"; }
  start_mon
  uuid="$(cat /proc/sys/kernel/random/uuid)"
  id="$(ceph_cli osd new "$uuid")"
  [ "$id" = 0 ] || die "expected OSD id 0, got '$id'"
  out="$(ceph_cli osd crush add osd.0 1.0 root=default 2>&1)" || die "ceph osd crush add: $out"
  mkdir -p "$d/osd/ceph-0"
  ceph-osd -c "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$uuid" >>"$d/log/mkfs.log" 2>&1 \
    || { tail_log "$d/log/mkfs.log" "$d/log/osd.0.log"; die "ceph-osd --mkfs failed"; }
  step "OSD 0 created (BlueStore on a sparse $((CEPH_BLOCK_SIZE >> 30)) GiB file)"
  start_osd
  touch "$d/initialised"
}

# s3 METHOD PATH [CURL ARGS...]: a SigV4-signed request to RGW; prints the body, then the HTTP
# status on the last line.
s3() {
  local method="$1" path="$2" how; shift 2
  how=(-X "$method")
  [ "$method" = HEAD ] && how=(--head) # -X HEAD would wait for a body
  curl -sS -m 30 "${how[@]}" --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    -w '\n%{http_code}' "$@" "$S3_ENDPOINT$path"
}
s3_status() { s3 "$@" | tail -n 1; }

ensure_s3_user() {
  if radosgw-admin user info --uid="$S3_ACCESS_KEY" >/dev/null 2>&1; then
    return 0
  fi
  radosgw-admin user create --uid="$S3_ACCESS_KEY" --display-name="Kordon tests" \
    --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null
  step "S3 user $S3_ACCESS_KEY created"
}

# ensure_bucket NAME [CURL ARGS for the creation...]
ensure_bucket() {
  local name="$1" code; shift
  code="$(s3_status HEAD "/$name")"
  case "$code" in
    200) return 0 ;;
    404) ;;
    *) die "HEAD /$name answered HTTP $code" ;;
  esac
  code="$(s3_status PUT "/$name" "$@")"
  [ "$code" = 200 ] || die "creating bucket $name answered HTTP $code"
  step "bucket $name created"
}

ensure_s3_fixtures() {
  local out
  # A signed request tells whether the user exists without the slower radosgw-admin.
  case "$(s3_status HEAD "/$S3_BUCKET")" in
    200|404) ;;
    *) ensure_s3_user ;;
  esac
  ensure_bucket "$S3_BUCKET"
  ensure_bucket "$S3_WORM_BUCKET" -H "x-amz-bucket-object-lock-enabled: true"
  out="$(s3 GET "/$S3_WORM_BUCKET?object-lock=")"
  grep -q '<ObjectLockEnabled>Enabled</ObjectLockEnabled>' <<<"$out" \
    || die "bucket $S3_WORM_BUCKET has no Object Lock: $out"
}

start_rgw() {
  exec 9>"$KORDON_CACHE/.ceph.lock"
  flock 9
  ensure_packages "${CEPH_PACKAGES[@]}"
  command -v curl >/dev/null || ensure_packages curl
  check_free_disk "$CEPH_DIR"
  if [ -f "$CEPH_DIR/initialised" ] && [ -f "$CEPH_DIR/fsid" ]; then
    if ceph_running "$MON_NAME" "$MON_PROG" && ceph_running "$OSD_NAME" "$OSD_PROG" \
      && ceph_running "$RGW_NAME" "$RGW_PROG" && rgw_answers; then
      step "Ceph and RGW already running"
    else
      step "restarting the Ceph cluster in $CEPH_DIR"
      write_ceph_conf
      start_mon
      start_osd
    fi
  else
    # A half-made cluster (interrupted first start): stop what runs from it and start over.
    stop_ceph_daemons
    init_ceph
  fi
  start_rgw_daemon
  ensure_s3_fixtures
  step "RGW ready on $S3_ENDPOINT (buckets $S3_BUCKET, $S3_WORM_BUCKET with Object Lock)"
}

stop_ceph_daemons() {
  stop_pid "$CEPH_DIR/run/$RGW_NAME.pid" "$RGW_PROG" radosgw
  stop_pid "$CEPH_DIR/run/$OSD_NAME.pid" "$OSD_PROG" ceph-osd
  stop_pid "$CEPH_DIR/run/$MON_NAME.pid" "$MON_PROG" ceph-mon
}

stop_rgw() {
  exec 9>"$KORDON_CACHE/.ceph.lock"
  flock 9
  stop_ceph_daemons
  step "Ceph stopped (data kept in $CEPH_DIR)"
}

# Smoke test against the running RGW: PUT/GET in the plain bucket, and a COMPLIANCE-locked object
# version whose deletion is refused (its retention is 2 minutes, so the bucket does not fill up).
check_rgw() {
  local key body out code vid until
  key="services-check/$(date +%s%N)"
  body="kordon $(date -u +%FT%TZ)"
  code="$(s3_status PUT "/$S3_BUCKET/$key" --data-binary "$body")"
  [ "$code" = 200 ] || die "PUT /$S3_BUCKET/$key answered HTTP $code"
  out="$(s3 GET "/$S3_BUCKET/$key")"
  [ "$(head -n 1 <<<"$out")" = "$body" ] || die "GET returned something else: $out"
  s3_status DELETE "/$S3_BUCKET/$key" >/dev/null
  step "PUT/GET/DELETE in $S3_BUCKET ok"

  until="$(date -u -d '+2 min' +%Y-%m-%dT%H:%M:%SZ)"
  out="$(s3 PUT "/$S3_WORM_BUCKET/$key" --data-binary "$body" -D - \
    -H "x-amz-object-lock-mode: COMPLIANCE" -H "x-amz-object-lock-retain-until-date: $until")"
  [ "$(tail -n 1 <<<"$out")" = 200 ] || die "locked PUT answered: $out"
  vid="$(tr -d '\r' <<<"$out" | awk -F': ' 'tolower($1)=="x-amz-version-id"{print $2}')"
  [ -n "$vid" ] || die "locked PUT returned no x-amz-version-id: $out"
  out="$(s3 DELETE "/$S3_WORM_BUCKET/$key?versionId=$vid")"
  code="$(tail -n 1 <<<"$out")"
  [ "$code" = 403 ] && grep -q AccessDenied <<<"$out" \
    || die "deleting a COMPLIANCE-locked version answered: $out"
  step "Object Lock ok: DELETE of version $vid (COMPLIANCE until $until) refused with 403 AccessDenied"
}

# ==== PostgreSQL =================================================================================
pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$dir" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
  echo "$dir"
}

# as_pg COMMAND...: postgres refuses to run as root, so the cluster belongs to the postgres user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@" 9>&-)
  else
    (cd / && "$@" 9>&-)
  fi
}

# The postgres user must be able to reach $PG_DIR: grant search-only permission (o+x, not read)
# on the ancestors that deny it (e.g. /root, mode 700).
ensure_pg_reachable() {
  local d="$PG_DIR" parts=() p
  [ "$(id -u)" -eq 0 ] || return 0
  while [ "$d" != / ]; do
    d="$(dirname "$d")"
    parts=("$d" "${parts[@]}")
  done
  for p in "${parts[@]}"; do
    if ! runuser -u postgres -- test -x "$p"; then
      chmod o+x "$p"
      step "granted search permission (o+x) on $p so that the postgres user reaches $PG_DIR"
    fi
  done
}

pg_psql() {
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

start_postgres() {
  local data="$PG_DIR/data"
  exec 9>"$KORDON_CACHE/.postgres.lock"
  flock 9
  [ -x /usr/lib/postgresql/15/bin/postgres ] || ensure_packages postgresql
  PGBIN="$(pg_bin)"
  check_free_disk "$PG_DIR"
  mkdir -p "$PG_DIR"
  ensure_pg_reachable
  if [ ! -f "$data/PG_VERSION" ]; then
    step "initdb $data"
    rm -rf "$data"
    mkdir -p "$data" "$PG_DIR/run"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$data" "$PG_DIR/run"
    chmod 700 "$data"
    as_pg "$PGBIN/initdb" -D "$data" --username=postgres --auth=trust --encoding=UTF8 \
      --no-locale >"$PG_DIR/initdb.log" 2>&1 || { tail_log "$PG_DIR/initdb.log"; die "initdb failed"; }
  fi
  if ! grep -q "^include_if_exists = 'kordon.conf'" "$data/postgresql.conf"; then
    echo "include_if_exists = 'kordon.conf'" | as_pg tee -a "$data/postgresql.conf" >/dev/null
  fi
  # Rewritten on every start, like ceph.conf. Loopback only; test data needs no durability.
  as_pg tee "$data/kordon.conf" >/dev/null <<EOF
# Kordon test cluster (written by scripts/services.sh on every start)
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR/run'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  if pid_alive "$data/postmaster.pid" postgres; then
    step "PostgreSQL already running"
  else
    # A postmaster killed without cleaning up leaves its pid file; postgres (and pg_ctl) would take
    # the pid for alive while init has not reaped the zombie yet.
    rm -f "$data/postmaster.pid" "$PG_DIR/run/.s.PGSQL.$PG_PORT" "$PG_DIR/run/.s.PGSQL.$PG_PORT.lock"
    mkdir -p "$PG_DIR/run"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PG_DIR/run"
    [ "$(id -u)" -eq 0 ] && { touch "$PG_DIR/postgres.log"; chown postgres:postgres "$PG_DIR/postgres.log"; }
    as_pg "$PGBIN/pg_ctl" start -D "$data" -l "$PG_DIR/postgres.log" -w -t 60 -s \
      || { tail_log "$PG_DIR/postgres.log"; die "PostgreSQL did not start"; }
    step "PostgreSQL started"
  fi
  local i
  for i in $(seq 1 60); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres && break
    [ "$i" = 60 ] && { tail_log "$PG_DIR/postgres.log"; die "pg_isready fails on 127.0.0.1:$PG_PORT"; }
    sleep 0.5
  done
  if [ -z "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" ]; then
    pg_psql -d postgres -c "CREATE ROLE $PG_USER LOGIN CREATEDB"
    step "role $PG_USER created"
  fi
  if [ -z "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" ]; then
    pg_psql -d postgres -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
    step "database $PG_DB created"
  fi
  step "PostgreSQL ready: postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"
}

stop_postgres() {
  local data="$PG_DIR/data"
  exec 9>"$KORDON_CACHE/.postgres.lock"
  flock 9
  PGBIN="$(pg_bin)"
  if [ -f "$data/PG_VERSION" ] && pid_alive "$data/postmaster.pid" postgres; then
    as_pg "$PGBIN/pg_ctl" stop -D "$data" -m fast -w -s
    step "PostgreSQL stopped (data kept in $PG_DIR)"
  else
    step "PostgreSQL is not running"
  fi
}

# ==== the rest ===================================================================================
print_env() {
  cat <<EOF
export KORDON_TEST_S3_ENDPOINT=$S3_ENDPOINT
export KORDON_TEST_S3_ACCESS_KEY_ID=$S3_ACCESS_KEY
export KORDON_TEST_S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export KORDON_TEST_S3_BUCKET=$S3_BUCKET
export KORDON_TEST_S3_WORM_BUCKET=$S3_WORM_BUCKET
export KORDON_TEST_S3_REGION=$S3_REGION
export KORDON_TEST_POSTGRES_URL=postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB
export AWS_ALLOW_HTTP=true
EOF
}

status() {
  local n p
  for n in "$MON_NAME:$MON_PROG" "$OSD_NAME:$OSD_PROG" "$RGW_NAME:$RGW_PROG"; do
    p="$CEPH_DIR/run/${n%%:*}.pid"
    if pid_alive "$p" "${n#*:}"; then
      echo "${n#*:}: running (pid $(cat "$p"), RSS $(awk '/VmRSS/{print $2, $3}' "/proc/$(cat "$p")/status"))"
    else
      echo "${n#*:}: stopped"
    fi
  done
  rgw_answers && echo "rgw: answers on $S3_ENDPOINT" || echo "rgw: no answer on $S3_ENDPOINT"
  if [ -d /usr/lib/postgresql ] && "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres; then
    echo "postgres: accepting connections on 127.0.0.1:$PG_PORT"
  else
    echo "postgres: not answering on 127.0.0.1:$PG_PORT"
  fi
}

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  start-rgw) start_rgw ;;
  stop-rgw) stop_rgw ;;
  start-postgres) start_postgres ;;
  stop-postgres) stop_postgres ;;
  start) start_rgw; start_postgres ;;
  stop) stop_rgw; stop_postgres ;;
  check-rgw) check_rgw ;;
  status) status ;;
  env) print_env ;;
  *) usage ;;
esac
