#!/usr/bin/env bash
# Kordon's test command (the README's second quick-start command): installs what is missing,
# then formatting, lints, unit and integration tests, and the end-to-end checks.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

install_apt_packages
install_rust_components
install_python_tools
install_external_rtsp_servers
install_browser
# The web console, embedded in the kordon binary built below (and tested in a real browser).
build_console

log "starting the real test services: Ceph RGW and PostgreSQL on 127.0.0.1"
bash scripts/services.sh start
eval "$(bash scripts/services.sh env)"

log "starting a private Kubernetes API server (etcd + kube-apiserver on 127.0.0.1; built once)"
bash scripts/kube.sh start
eval "$(bash scripts/kube.sh env)"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo build"
cargo build --workspace --locked --bins

results="$(mktemp)"
trap 'rm -f "$results"' EXIT

log "end-to-end: every service answers health and reflection to Python grpcio"
"$KORDON_VENV/bin/python" e2e/grpc_smoke.py --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: footage get, evidence export/verify and audit through the CLI"
"$KORDON_VENV/bin/python" e2e/evidence_check.py --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: the web console in Chromium (Selenium) — sign in, cameras recording, a reason asked before footage, near-live and timeline playback (the video's currentTime advances), an alert acknowledged, an evidence export downloaded and verified, the access log and its chain, Bulgarian and Turkish"
"$KORDON_VENV/bin/python" e2e/console_check.py --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: the console's Partners page between two installations (Burgas, Edirne) in Chromium — a footage request from one console, approved with a note in the other, downloaded and verified; a second refused; both access logs"
"$KORDON_VENV/bin/python" e2e/console_partners_check.py --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: recording from RTSP servers that are not Kordon's (Perl, Node; UDP only, B-frames)"
"$KORDON_VENV/bin/python" e2e/external_rtsp.py --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: detections through the CLI (people and vehicles, track lifecycles, zone, line crossings' direction, snapshot read logged, watch replay)"
"$KORDON_VENV/bin/python" e2e/detection_check.py --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: alerts from the real clip to a gRPC subscriber, a webhook receiver (standardwebhooks) and MQTT (Mosquitto); receiver down 60 s; ack/hold/resolve; dead letters; restart"
"$KORDON_VENV/bin/python" e2e/alert_check.py --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: two partner installations (Burgas, Edirne) with their own CAs and keys: agreement mismatch and acceptance, a wrong CA refused, shared alerts with only the allowed fields, joint acknowledgement, footage request/approval/verified download, refusal, expiry, both access logs"
"$KORDON_VENV/bin/python" e2e/partner_check.py --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: transcode — a 2-minute range to a 360p rendition played by ffprobe/ffmpeg over storage's HLS, automatic thumbnails, an evidence bundle with a viewer copy (time burned in, mask, people blurred) verified offline, a job SIGKILLed mid-way resuming to the same bytes"
"$KORDON_VENV/bin/python" e2e/transcode_check.py --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: authorisation matrix — every RPC (from reflection) as nobody, forged and expired tokens, each role of the right and of another site, and service certificates, over mTLS with the development identity off; denied calls change nothing; playback and bundle URLs tampered, expired or replayed are refused"
"$KORDON_VENV/bin/python" e2e/authz_matrix.py --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: abuse — hostile names in every naming field of every RPC (nothing outside the key layout), oversized and deeply nested messages, 4,400 watch streams (served or RESOURCE_EXHAUSTED naming the limit, memory bounded, freed on close)"
"$KORDON_VENV/bin/python" e2e/abuse.py --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: the fault campaign (--quick) — camera flapping, Ceph and PostgreSQL down, ingest SIGKILLed, the spool's disk full, storage and Ceph restarted during an export, storage SIGKILLed during retention, the wall clock stepped +1 h and back; every segment checked with curl and ffprobe (private Ceph and PostgreSQL on other ports)"
"$KORDON_VENV/bin/python" e2e/faults.py --quick --kordon "$CARGO_TARGET_DIR/debug/kordon" | tee -a "$results"

log "end-to-end: the image — the Containerfile built by scripts/image.sh (buildah, chroot isolation) into an OCI archive; its config and libraries; kordon standalone run from it as a pod runs it (read-only root, uid 65532, no capabilities): cameras record, the detector loads its ONNX Runtime, SIGTERM exits 0"
image_archive="$KORDON_CACHE/image/kordon-e2e.oci.tar"
"$KORDON_VENV/bin/python" e2e/image_check.py --out "$image_archive" | tee -a "$results"

log "end-to-end: two installations on the kube-apiserver, every pod run from that image by a small kubelet (e2e/kubelet.py) — helm install per namespace, kubectl apply of the Sites and eight Cameras, kubectl get shows them Ready and Recording, footage listed; kubectl scale site/burgas --replicas=3 with no gap longer than a segment; an ingest pod SIGKILLed and restarted"
"$KORDON_VENV/bin/python" e2e/cluster_check.py --archive "$image_archive" | tee -a "$results"

log "cargo test"
cargo test --workspace --locked 2>&1 | tee -a "$results"

# One closing line over everything that ran (cargo's last line is often an empty doc-test run).
awk '/^test result:/ {p+=$4; f+=$6} /^e2e: / {p+=$2; f+=$4}
     END {printf "tests: %d passed, %d failed\n", p, f}' "$results"
