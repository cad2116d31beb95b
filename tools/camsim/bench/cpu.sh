#!/usr/bin/env bash
# CPU of the camera simulator while N clients pull 1080p main streams (one client per camera).
#
#   tools/camsim/bench/cpu.sh [clients=50] [seconds=20] [protocol=tcp|udp] [codec=h264|h265]
#
# Builds and starts the `camsim` example (release), starts one
# `gst-launch-1.0 rtspsrc ! fakesink` process per camera, lets them settle, then reads the
# simulator's own user+system CPU time from /proc/<pid>/stat over the measuring window.
# Environment: STREAM=main|sub (default main), CACHE_DIR (encode cache), WARMUP (seconds, 5),
# RTSP_PORT/CONTROL_PORT (18654/18655). A timing figure, not a test: nothing is asserted.
set -euo pipefail

CLIENTS=${1:-50}
SECONDS_MEASURED=${2:-20}
PROTOCOL=${3:-tcp}
CODEC=${4:-h264}
RTSP_PORT=${RTSP_PORT:-18654}
CONTROL_PORT=${CONTROL_PORT:-18655}
WARMUP=${WARMUP:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)/target}

cd "$(dirname "$0")/../../.."
cargo build --release -q -p kordon-camsim --example camsim
SIM="$CARGO_TARGET_DIR/release/examples/camsim"

LOG=$(mktemp)
"$SIM" --cameras "$CLIENTS" --codec "$CODEC" --listen "127.0.0.1:$RTSP_PORT" \
    --control-listen "127.0.0.1:$CONTROL_PORT" ${CACHE_DIR:+--cache-dir "$CACHE_DIR"} >"$LOG" 2>&1 &
SIM_PID=$!
CLIENT_PIDS=()
cleanup() {
    for pid in "${CLIENT_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    kill "$SIM_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -f "$LOG"
}
trap cleanup EXIT

# Ready once the control endpoint answers (the first run encodes the clip first).
for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$CONTROL_PORT/cameras" >/dev/null && break
    kill -0 "$SIM_PID" 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 0.5
done

for i in $(seq 1 "$CLIENTS"); do
    gst-launch-1.0 -q rtspsrc location="rtsp://127.0.0.1:$RTSP_PORT/cam$i/${STREAM:-main}" \
        protocols="$PROTOCOL" ! fakesink >/dev/null 2>&1 &
    CLIENT_PIDS+=($!)
done
sleep "$WARMUP"

ticks() { awk '{print $14 + $15}' "/proc/$SIM_PID/stat"; }
HZ=$(getconf CLK_TCK)
before=$(ticks)
sleep "$SECONDS_MEASURED"
after=$(ticks)

served=$(curl -sf "http://127.0.0.1:$CONTROL_PORT/cameras" |
    grep -o "\"kind\":\"${STREAM:-main}\"[^}]*\"clients\":[0-9]*" | grep -o '[0-9]*$' | awk '{s += $1} END {print s + 0}')
threads=$(ls "/proc/$SIM_PID/task" | wc -l)
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$SIM_PID/status")
awk -v t=$((after - before)) -v hz="$HZ" -v s="$SECONDS_MEASURED" -v n="$CLIENTS" \
    -v served="$served" -v stream="${STREAM:-main}" -v proto="$PROTOCOL" -v codec="$CODEC" -v threads="$threads" -v rss="$rss_kb" 'BEGIN {
    core = t / hz / s
    printf "clients=%d served=%d stream=%s protocol=%s codec=%s window=%ds\n", n, served, stream, proto, codec, s
    printf "camsim cpu: %.1f%% of one core (%.2f%% per stream), %d threads, %.0f MiB RSS\n", core * 100, core * 100 / n, threads, rss / 1024
    printf "=> about %d %s streams per core\n", n / core, stream
}'
