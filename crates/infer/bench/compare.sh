#!/usr/bin/env bash
# Kordon's detector beside Python onnxruntime, in one run: the same model, frames (the first
# FRAMES of bikes.mp4 at 2 frames/s), thread count and work (letterbox pre-processing, session
# call, decode and NMS). Prints frames/s for each and Kordon batch 1 vs 4 vs 8.
# A benchmark, not a test: run it on a quiet machine.
#
#   crates/infer/bench/compare.sh            # THREADS=2 FRAMES=32 SECONDS_EACH=10 by default
set -euo pipefail
cd "$(dirname "$0")/../../.."
source scripts/lib.sh
install_python_tools

THREADS="${THREADS:-2}"
FRAMES="${FRAMES:-32}"
SECONDS_EACH="${SECONDS_EACH:-10}"
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

py1=$(python 1);  echo "$py1"
k1=$(kordon 1);   echo "$k1"
k4=$(kordon 4);   echo "$k4"
k8=$(kordon 8);   echo "$k8"
py8=$(python 8);  echo "$py8"

awk -v k="$(fps <<<"$k1")" -v p="$(fps <<<"$py1")" -v k4="$(fps <<<"$k4")" -v k8="$(fps <<<"$k8")" \
  'BEGIN {
     printf "kordon / python at batch 1: %.2fx (target >= 0.9x)\n", k / p
     printf "kordon batch 1 : 4 : 8 = 1.00 : %.2f : %.2f\n", k4 / k, k8 / k
   }'
