#!/usr/bin/env bash
# Kordon's detector beside Python onnxruntime, in one run: the same model, frames (the first
# FRAMES of bikes.mp4 at 2 frames/s), thread count and work (letterbox pre-processing, session
# call, decode and NMS). Prints frames/s for each and Kordon batch 1 vs 4 vs 8.
# A benchmark, not a test: run it on a quiet machine.
#
#   crates/infer/bench/compare.sh   # THREADS=2 FRAMES=16 SECONDS_EACH=10 ROUNDS=3 by default
set -euo pipefail
cd "$(dirname "$0")/../../.."
source scripts/lib.sh
install_python_tools

THREADS="${THREADS:-2}"
FRAMES="${FRAMES:-16}"
SECONDS_EACH="${SECONDS_EACH:-10}"
ROUNDS="${ROUNDS:-3}"
MODEL=assets/models/nanodet-m-416-dynbatch.onnx

log "building the benchmark (release)"
cargo build --release -q -p kordon-infer --example bench_detector
BENCH="$CARGO_TARGET_DIR/release/examples/bench_detector"

common=(--frames "$FRAMES" --threads "$THREADS" --seconds "$SECONDS_EACH")
python() {
  "$KORDON_VENV/bin/python" crates/infer/bench/reference.py --model "$MODEL" \
    --footage assets/footage/bikes.mp4 "${common[@]}" --batch "$1"
}
kordon() { "$BENCH" "${common[@]}" --batch "$1"; }
fps() { sed -E 's/.*: ([0-9.]+) frames\/s.*/\1/'; }

# Interleaved rounds, medians reported: on a shared machine the load moves between runs.
declare -A runs
for round in $(seq "$ROUNDS"); do
  for who in python:1 kordon:1 kordon:4 kordon:8 python:8; do
    line=$("${who%%:*}" "${who##*:}")
    echo "round $round: $line"
    runs[$who]+="$(fps <<<"$line") "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
p1=$(median <<<"${runs[python:1]}"); p8=$(median <<<"${runs[python:8]}")
k1=$(median <<<"${runs[kordon:1]}"); k4=$(median <<<"${runs[kordon:4]}"); k8=$(median <<<"${runs[kordon:8]}")
echo "medians over $ROUNDS rounds ($THREADS threads, frames/s): python b1 $p1, b8 $p8; kordon b1 $k1, b4 $k4, b8 $k8"
# The same, run at the same time: both runners then see the same load from everything else on
# the machine (and from each other), so their ratio holds up on a busy machine too.
ratios=""
for round in $(seq "$ROUNDS"); do
  python 1 >"$CARGO_TARGET_DIR/compare-python.txt" &
  kordon 1 >"$CARGO_TARGET_DIR/compare-kordon.txt"
  wait
  pl=$(cat "$CARGO_TARGET_DIR/compare-python.txt"); kl=$(cat "$CARGO_TARGET_DIR/compare-kordon.txt")
  echo "round $round, side by side: $pl | $kl"
  ratios+="$(awk -v k="$(fps <<<"$kl")" -v p="$(fps <<<"$pl")" 'BEGIN { printf "%.3f", k / p }') "
done
echo "kordon / python at batch 1, run at the same time: median $(median <<<"$ratios")x"
awk -v k="$k1" -v p="$p1" -v k4="$k4" -v k8="$k8" \
  'BEGIN {
     printf "kordon / python at batch 1: %.2fx (target >= 0.9x)\n", k / p
     printf "kordon batch 1 : 4 : 8 = 1.00 : %.2f : %.2f\n", k4 / k, k8 / k
   }'
