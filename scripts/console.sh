#!/usr/bin/env bash
# Builds the web console (console/ → console/dist) so the next `cargo build` of kordon embeds it.
# scripts/standalone.sh and scripts/test.sh run this themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
build_console
log "console built: $(du -sh console/dist | cut -f1) in console/dist (rebuild kordon to embed it)"
